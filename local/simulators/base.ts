/**
 * What every provider simulator shares: a real HTTP server on loopback, a log of the requests it received,
 * fault injection (status codes with and without headers, HTML and malformed bodies, delays, resets, truncated
 * answers), and a control surface under `/__sim/` so tests, the CLI and `npm start` users can drive it over HTTP.
 *
 * Control routes (every simulator):
 *   GET    /__sim/requests          the requests received (method, path, headers with secrets masked, body)
 *   GET    /__sim/stats             counts: requests, faults served, effective cancels per resource
 *   POST   /__sim/faults            queue a fault: {"fault": {...}, "times": 3, "path": "/orders", "method": "PUT", "probability": 0.3}
 *   DELETE /__sim/faults            clear queued faults
 *   POST   /__sim/reset             clear requests, faults and counters, restore the seeded data
 *   POST   /__sim/config            change simulator options (see each simulator's `options`)
 *   PUT    /__sim/resources/{id}    set a resource's state (provider-specific body)
 */
import http from 'node:http';
import { listenOnLoopback, withBody } from '#local/listen.ts';

export type Fault =
  | {
      kind: 'status';
      status: number;
      body?: unknown;
      headers?: Record<string, string>;
      html?: boolean;
      /** The Content-Type of a JSON body (default application/json); null sends none. */
      contentType?: string | null;
    }
  | { kind: 'delay'; ms: number }
  | { kind: 'reset' }
  | { kind: 'truncate' }
  | { kind: 'malformed' }
  /** The real answer with its JSON body altered after the fact (headers, signatures included, kept). */
  | { kind: 'tamper' }
  | { kind: 'hang' };

export interface FaultRule {
  fault: Fault;
  /** How many matching requests it applies to (default 1); Infinity for "until cleared". */
  times?: number;
  /** Applies with this probability per matching request (default 1). */
  probability?: number;
  method?: string;
  /** A path prefix, or a regular expression source when it starts with `^`. */
  path?: string;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: string;
  headers: Record<string, string>;
  body: string;
  at: number;
  /** What the simulator did: "ok", "fault:429", "reset", ... */
  served?: string;
  status?: number;
}

export interface SimRequest {
  method: string;
  path: string;
  url: URL;
  headers: http.IncomingHttpHeaders;
  rawBody: string;
  /** The body parsed as JSON, `undefined` when empty, the symbol INVALID when not JSON. */
  json: unknown;
}

export const INVALID_JSON = Symbol('invalid-json');

export interface SimResponse {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** Raw text instead of JSON. */
  text?: string;
  /** Content-Type of `text` (default text/plain). */
  type?: string;
}

export interface SimulatorBaseOptions {
  host?: string;
  port?: number;
  /** Speeds up time-based limits for benchmarks: a rate limit of R/s becomes R*timeScale/s. */
  timeScale?: number;
}

const MASK = /^(authorization|x-api-key)$/i;

/** What each simulator module (`local/simulators/<provider>.ts`) exports by these names: `npm start` loads a provider's
 * by its name (local/start.ts), so no table lists them. */
export interface SimulatorModule {
  /** A simulator seeded with the demo data. */
  create(): Simulator;
  /** What the demo secret adds to the simulator's own (`Simulator.demoSecret`). */
  readonly DEMO_SECRET?: Record<string, string>;
  /** The demo API calls and batch items `npm start` prints for it. */
  readonly DEMO_REQUESTS: { readonly calls: readonly DemoCall[]; readonly items: readonly unknown[] };
}

/** A demo API call: a POST of `body` to `path`. */
export interface DemoCall {
  readonly path: string;
  readonly body: unknown;
}

/** A provider simulator; `O` are its provider-specific options (PROVIDERS.md's unknowns among them). */
export abstract class Simulator<O extends object = object> {
  readonly requests: RecordedRequest[] = [];
  /** Cancels that changed state, per resource id: exactly one each is the invariant tests check. */
  readonly effectiveCancels = new Map<string, number>();
  private rules: (FaultRule & { remaining: number })[] = [];
  private closeServer: (() => Promise<void>) | undefined;
  private baseUrl = '';
  protected readonly timeScale: number;
  private limiter: TokenBucket | undefined;
  private readonly host: string;
  private readonly port: number;
  abstract readonly name: string;
  /** The options in force: the defaults, the constructor's, then control requests' (`POST /__sim/options`). */
  readonly options: O;
  private readonly initialOptions: O;

  constructor(defaults: O, options: Partial<O> & SimulatorBaseOptions = {}) {
    const { host, port, timeScale, ...rest } = options;
    this.host = host ?? '127.0.0.1';
    this.port = port ?? 0;
    this.timeScale = timeScale ?? 1;
    this.options = { ...defaults, ...(rest as Partial<O>) };
    this.initialOptions = { ...this.options };
  }

  /** The root URL clients use (some providers add a path, such as `/v1.5/ext`). */
  get url(): string {
    return this.baseUrl + this.rootPath;
  }

  /** The server's origin, where `/__sim/` lives. */
  get origin(): string {
    return this.baseUrl;
  }

  protected get rootPath(): string {
    return '';
  }

  /** The provider's behaviour for one request (after faults). Paths are relative to `rootPath`. */
  protected abstract handle(req: SimRequest): SimResponse | Promise<SimResponse>;
  /** Restores the seeded demo data. */
  abstract seed(): void;
  /** The provider secret that reaches this simulator with its demo credentials (once started). */
  abstract demoSecret(): Record<string, unknown>;
  /** Sets one resource's state from a control request; returns false when the id is unknown. */
  protected abstract setResource(id: string, body: unknown): boolean;
  /** Applies options from a control request; returns the options now in force. */
  protected configure(update: Record<string, unknown>): O {
    applyOptions(this.options, update);
    this.optionsChanged();
    return { ...this.options };
  }

  /** After the options change (a control request, a reset): rebuild what depends on them. */
  protected optionsChanged(): void {}

  async start(): Promise<string> {
    this.seed();
    const server = http.createServer(
      withBody((req, res, body) =>
        this.dispatch(req, res, body).catch((error) => {
          if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`simulator error: ${(error as Error).message}`);
        }),
      ),
    );
    server.keepAliveTimeout = 30_000;
    const { url, close } = await listenOnLoopback(server, this.port, this.host);
    this.closeServer = close;
    this.baseUrl = url;
    return this.url;
  }

  async stop(): Promise<void> {
    const close = this.closeServer;
    this.closeServer = undefined;
    await close?.();
  }

  /** Queues a fault (see FaultRule). */
  inject(rule: FaultRule): void {
    this.rules.push({ ...rule, remaining: rule.times ?? 1 });
  }

  clearFaults(): void {
    this.rules = [];
  }

  /** Restores the seeded data and the options the simulator started with, and forgets requests and faults. */
  reset(): void {
    this.limiter = undefined;
    Object.assign(this.options, this.initialOptions);
    this.optionsChanged();
    this.requests.length = 0;
    this.effectiveCancels.clear();
    this.clearFaults();
    this.seed();
  }

  /** Takes a request token at `perSecond` (times the time scale), up to `burst` at once. Returns undefined when the
   * request may go ahead, else the milliseconds until it could; a rate of 0 is no limit. */
  protected throttle(perSecond: number, burst = perSecond): number | undefined {
    if (!(perSecond > 0)) return undefined;
    const rate = perSecond * this.timeScale;
    if (this.limiter?.rate !== rate || this.limiter.burst !== burst) this.limiter = new TokenBucket(rate, burst);
    return this.limiter.take() ? undefined : this.limiter.waitMs();
  }

  /** Requests whose path (relative to the root) matches. */
  received(method: string, path: string | RegExp): RecordedRequest[] {
    return this.requests.filter(
      (r) => r.method === method && (typeof path === 'string' ? r.path === path : path.test(r.path)),
    );
  }

  protected countCancel(id: string): void {
    this.effectiveCancels.set(id, (this.effectiveCancels.get(id) ?? 0) + 1);
  }

  private matchFault(method: string, path: string): Fault | undefined {
    for (const rule of this.rules) {
      if (rule.remaining <= 0) continue;
      if (rule.method && rule.method.toUpperCase() !== method) continue;
      if (rule.path && !(rule.path.startsWith('^') ? new RegExp(rule.path).test(path) : path.startsWith(rule.path)))
        continue;
      if (rule.probability !== undefined && Math.random() >= rule.probability) continue;
      rule.remaining--;
      return rule.fault;
    }
    this.rules = this.rules.filter((r) => r.remaining > 0);
    return undefined;
  }

  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse, rawBody: string): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://sim');
    if (url.pathname.startsWith('/__sim/')) return this.control(req.method ?? 'GET', url, rawBody, res);

    const method = req.method ?? 'GET';
    const root = this.rootPath;
    const path = root && url.pathname.startsWith(root) ? url.pathname.slice(root.length) || '/' : url.pathname;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (v !== undefined) headers[k] = MASK.test(k) ? mask(String(v)) : String(v);
    }
    const record: RecordedRequest = { method, path, query: url.search, headers, body: rawBody, at: Date.now() };
    this.requests.push(record);

    const fault = this.matchFault(method, path);
    if (fault) {
      record.served = `fault:${fault.kind === 'status' ? fault.status : fault.kind}`;
      const handled = await this.serveFault(fault, req, res);
      if (handled) return;
    }
    if (root && !url.pathname.startsWith(root)) {
      return send(res, { status: 404, text: `Not Found: ${url.pathname} (this server's API root is ${root})` }, record);
    }
    let json: unknown;
    if (rawBody) {
      try {
        json = JSON.parse(rawBody);
      } catch {
        json = INVALID_JSON;
      }
    }
    const response = await this.handle({ method, path, url, headers: req.headers, rawBody, json });
    record.served ??= 'ok';
    if (fault?.kind === 'truncate') return truncate(res, response, record);
    if (fault?.kind === 'malformed')
      return send(res, { ...response, text: '{"malformed": tr', type: 'application/json' }, record);
    if (fault?.kind === 'tamper') {
      const body =
        response.body && typeof response.body === 'object' ? { ...response.body, tampered: true } : { tampered: true };
      return send(res, { ...response, text: JSON.stringify(body), type: 'application/json' }, record);
    }
    send(res, response, record);
  }

  /** Serves a fault; returns false when the request should still reach the provider logic (delays, and
   * truncate/malformed, which corrupt the real answer so the state change still happens). */
  private async serveFault(fault: Fault, req: http.IncomingMessage, res: http.ServerResponse): Promise<boolean> {
    switch (fault.kind) {
      case 'delay':
        await new Promise((r) => setTimeout(r, fault.ms));
        return false;
      case 'reset':
        req.socket.destroy();
        return true;
      case 'hang':
        return true;
      case 'truncate':
      case 'malformed':
      case 'tamper':
        return false;
      case 'status': {
        if (fault.html) {
          const html = `<!DOCTYPE html><html><head><title>Error: ${fault.status}</title></head><body><h1>${fault.status}</h1></body></html>`;
          res.writeHead(fault.status, { 'content-type': 'text/html', ...fault.headers });
          res.end(html);
        } else {
          const type = fault.contentType === undefined ? 'application/json' : fault.contentType;
          res.writeHead(fault.status, { ...(type ? { 'content-type': type } : {}), ...fault.headers });
          res.end(
            fault.body === undefined ? '' : typeof fault.body === 'string' ? fault.body : JSON.stringify(fault.body),
          );
        }
        return true;
      }
    }
  }

  private control(method: string, url: URL, rawBody: string, res: http.ServerResponse): void {
    const [status, body] = this.controlAnswer(method, url, rawBody);
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(status === 204 ? '' : JSON.stringify(body));
  }

  private controlAnswer(method: string, url: URL, rawBody: string): [number, unknown] {
    let body: Record<string, unknown> = {};
    try {
      body = rawBody ? (JSON.parse(rawBody) as Record<string, unknown>) : {};
    } catch {
      return [400, { error: 'control body must be JSON' }];
    }
    const route = `${method} ${url.pathname}`;
    if (route === 'GET /__sim/requests') return [200, { requests: this.requests }];
    if (route === 'GET /__sim/stats') {
      return [
        200,
        {
          provider: this.name,
          requests: this.requests.length,
          faultsServed: this.requests.filter((r) => r.served?.startsWith('fault')).length,
          rateLimited: this.requests.filter((r) => r.status === 429).length,
          effectiveCancels: Object.fromEntries(this.effectiveCancels),
        },
      ];
    }
    if (route === 'POST /__sim/faults') {
      if (!body.fault || typeof body.fault !== 'object') return [400, { error: 'give {"fault": {"kind": ...}}' }];
      this.inject(body as unknown as FaultRule);
      return [201, { queued: body }];
    }
    if (route === 'DELETE /__sim/faults') {
      this.clearFaults();
      return [204, {}];
    }
    if (route === 'POST /__sim/reset') {
      this.reset();
      return [200, { reset: true }];
    }
    if (route === 'POST /__sim/config') {
      try {
        return [200, { options: this.configure(body) }];
      } catch (error) {
        return [400, { error: (error as Error).message }];
      }
    }
    const resource = /^\/__sim\/resources\/([^/]+)$/.exec(url.pathname);
    if (resource && method === 'PUT') {
      const id = decodeURIComponent(resource[1] ?? '');
      return this.setResource(id, body) ? [200, { id, updated: true }] : [404, { error: `unknown resource ${id}` }];
    }
    return [404, { error: `unknown control route ${route}` }];
  }
}

/** Keeps the scheme and a recognisable prefix of a credential ("Bearer tw_sk_***"), never the rest. */
function mask(value: string): string {
  const [, scheme = '', credential = value] = /^(\w+ )?(.*)$/.exec(value) ?? [];
  return `${scheme}${credential.slice(0, Math.min(6, Math.floor(credential.length / 3)))}***`;
}

function send(res: http.ServerResponse, response: SimResponse, record: RecordedRequest): void {
  record.status = response.status;
  const text = response.text ?? (response.body === undefined ? '' : JSON.stringify(response.body));
  const type = response.text !== undefined ? (response.type ?? 'text/plain') : 'application/json';
  res.writeHead(response.status, {
    'content-type': type,
    'content-length': String(Buffer.byteLength(text)),
    ...response.headers,
  });
  res.end(text);
}

function truncate(res: http.ServerResponse, response: SimResponse, record: RecordedRequest): void {
  record.status = response.status;
  const text = response.text ?? JSON.stringify(response.body ?? {});
  res.writeHead(response.status, {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(text)),
    ...response.headers,
  });
  res.write(text.slice(0, Math.max(1, Math.floor(text.length / 2))));
  res.socket?.destroy();
}

/** A Retry-After value (whole seconds, at least 1) for a wait in milliseconds. */
export function retryAfterSeconds(waitMs: number): string {
  return String(Math.max(1, Math.ceil(waitMs / 1000)));
}

/** A token bucket: `rate` tokens per second, up to `burst`. */
class TokenBucket {
  private tokens: number;
  private updated = Date.now();
  rate: number;
  burst: number;
  constructor(rate: number, burst: number) {
    this.rate = rate;
    this.burst = burst;
    this.tokens = burst;
  }
  take(): boolean {
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.updated) / 1000) * this.rate);
    this.updated = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
  /** Milliseconds until a token is available. */
  waitMs(): number {
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) / this.rate) * 1000);
  }
}

/** A sliding window: at most `limit` requests in any `windowMs`. */
export class SlidingWindow {
  private readonly hits: number[] = [];
  limit: number;
  windowMs: number;
  constructor(limit: number, windowMs: number) {
    this.limit = limit;
    this.windowMs = windowMs;
  }
  private prune(now: number): void {
    while (this.hits.length && (this.hits[0] ?? 0) <= now - this.windowMs) this.hits.shift();
  }
  take(now = Date.now()): boolean {
    this.prune(now);
    if (this.hits.length >= this.limit) return false;
    this.hits.push(now);
    return true;
  }
  remaining(now = Date.now()): number {
    this.prune(now);
    return Math.max(0, this.limit - this.hits.length);
  }
  /** When the oldest request in the window leaves it (the window resets). */
  resetAt(now = Date.now()): number {
    this.prune(now);
    return (this.hits[0] ?? now) + this.windowMs;
  }
}

/** Applies option values from a control request; an unknown option is an error, so a typo fails loudly. */
export function applyOptions<T extends object>(current: T, update: Record<string, unknown>): T {
  const unknown = Object.keys(update).filter((k) => !(k in current));
  if (unknown.length)
    throw new Error(`unknown option(s) ${unknown.join(', ')}; known: ${Object.keys(current).join(', ')}`);
  Object.assign(current, update);
  return current;
}
