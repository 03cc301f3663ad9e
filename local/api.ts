/**
 * The HTTP API on loopback: every route of `shared/handler/routes.ts`, served by invoking the same Lambda handlers with
 * real API Gateway HTTP API (payload format 2.0) events, as API Gateway would: open by default, or (`auth`) with
 * every route IAM-authorized, its SigV4 signature verified and its principal passed on (local/sigv4.ts).
 * It also serves `GET /openapi.json` (open either way).
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { InvalidInputError } from '#shared/core/errors.ts';
import { invalidInputResponse } from '#shared/handler/events.ts';
import { matchPath, ROUTES } from '#shared/handler/routes.ts';
import { apiDeploymentName } from './functions.ts';
import { apiGatewayV2Event, lambdaContext } from './lambda-events.ts';
import { listenOnLoopback } from './listen.ts';
import type { IamPrincipal, IamVerifier } from './sigv4.ts';
import type { LocalLambda } from './state-machine.ts';

/** API Gateway's payload limit. */
const MAX_BODY_BYTES = 10 * 1024 * 1024;

export interface AccessLogLine {
  method: string;
  path: string;
  status: number;
  ms: number;
  summary?: string;
  /** The IAM principal (its ARN) the request was signed by. */
  caller?: string;
}

export interface LocalApiOptions {
  functions: Record<string, LocalLambda>;
  openapi: () => unknown;
  onRequest?: (line: AccessLogLine) => void;
  /** The Lambda timeout each invocation gets (25 s, as deployed). */
  timeoutMs?: number;
  /** IAM authorization on every route, as deployed: unsigned or badly signed requests get API Gateway's 403. */
  auth?: IamVerifier;
}

export class LocalApi {
  private readonly server: http.Server;
  private readonly options: LocalApiOptions;
  private readonly inFlight = new Set<Promise<unknown>>();
  url = '';

  constructor(options: LocalApiOptions) {
    this.options = options;
    this.server = http.createServer((req, res) => {
      const work = this.handle(req, res).catch(() => {
        // As API Gateway answers when the Lambda integration fails (a throttled function at its reserved
        // concurrency, a crash, a timeout): 500 and nothing about why; the caller retries with backoff.
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ message: 'Internal Server Error' }));
      });
      this.inFlight.add(work);
      void work.finally(() => this.inFlight.delete(work));
    });
  }

  async listen(port: number, host = '127.0.0.1'): Promise<string> {
    // Its own close (below) lets requests in flight finish first.
    this.url = (await listenOnLoopback(this.server, port, host)).url;
    return this.url;
  }

  /** Stops accepting requests and waits (a bounded time) for those in flight. */
  async close(graceMs = 5_000): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((r) => setTimeout(r, graceMs))]);
    this.server.closeAllConnections();
    await closed;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const started = Date.now();
    const url = new URL(req.url ?? '/', 'http://local');
    const method = req.method ?? 'GET';
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(body === undefined ? undefined : JSON.stringify(body));
      this.options.onRequest?.({ method, path: url.pathname, status, ms: Date.now() - started });
    };
    if (method === 'GET' && url.pathname === '/openapi.json') return send(200, this.options.openapi());

    let candidates: { route: (typeof ROUTES)[number]; params: Record<string, string> | undefined }[];
    try {
      candidates = ROUTES.map((route) => ({ route, params: matchPath(route.path, url.pathname) })).filter(
        (c) => c.params,
      );
    } catch (error) {
      if (!(error instanceof InvalidInputError)) throw error;
      // What the function would answer for bad input (shared/handler/events.ts), without invoking it.
      const answer = invalidInputResponse(error.issues, randomUUID(), error.issueCount);
      return send(400, JSON.parse(answer.body as string));
    }
    const match = candidates.find((c) => c.route.method === method);
    if (!match?.params) {
      if (candidates.length) {
        const allow = candidates.map((c) => c.route.method).join(', ');
        return send(
          405,
          { error: 'method_not_allowed', message: `${method} is not allowed on ${url.pathname}; use ${allow}` },
          { allow },
        );
      }
      return send(404, {
        error: 'not_found',
        message: `No route for ${method} ${url.pathname}; the API is described at /openapi.json`,
      });
    }

    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY_BYTES)
        return send(413, { error: 'payload_too_large', message: `The body exceeds ${MAX_BODY_BYTES} bytes` });
      chunks.push(chunk);
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers))
      if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(',') : v;
    const body = Buffer.concat(chunks);
    // Where API Gateway authorizes: the route matched, before the integration.
    let iam: IamPrincipal | undefined;
    if (this.options.auth) {
      const verdict = await this.options.auth.verify({ method, target: req.url ?? '/', headers, body });
      if (!verdict.ok)
        return send(
          403,
          { message: verdict.message },
          verdict.errorType ? { 'x-amzn-errortype': verdict.errorType } : {},
        );
      iam = verdict.principal;
    }
    const event = apiGatewayV2Event({
      method,
      routeKey: `${match.route.method} ${match.route.path}`,
      path: url.pathname,
      pathParameters: match.params,
      headers,
      query: url.searchParams,
      body: body.toString('utf8'),
      sourceIp: req.socket.remoteAddress ?? '127.0.0.1',
      ...(iam ? { authorizer: { iam } } : {}),
    });
    // The route's function: its operation's API deployment where it has one, as the stack routes it.
    const api = apiDeploymentName(match.route.function);
    const name = this.options.functions[api] ? api : match.route.function;
    const handler = this.options.functions[name];
    if (!handler) return send(500, { error: 'internal_error', message: `no local function ${name}` });
    const result = (await handler(
      event as never,
      lambdaContext(name, this.options.timeoutMs ?? 25_000),
    )) as APIGatewayProxyStructuredResultV2;
    const status = result.statusCode ?? 200;
    res.writeHead(status, { 'content-type': 'application/json', ...(result.headers as Record<string, string>) });
    res.end(result.body);
    const summary = parseSummary(result.body);
    this.options.onRequest?.({
      method,
      path: url.pathname,
      status,
      ms: Date.now() - started,
      ...(summary ? { summary } : {}),
      ...(iam ? { caller: iam.userArn } : {}),
    });
  }
}

/** A word on what happened, for the access log: the outcome(s), the batch status, or the error. */
function parseSummary(body: string | undefined): string | undefined {
  if (!body) return undefined;
  try {
    const json = JSON.parse(body) as {
      outcome?: string;
      outcomes?: { outcome: string }[];
      status?: string;
      error?: string;
    };
    if (json.outcomes) return json.outcomes.map((o) => o.outcome).join(',');
    return json.outcome ?? json.status ?? json.error;
  } catch {
    return undefined;
  }
}
