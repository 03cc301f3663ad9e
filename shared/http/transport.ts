/**
 * One attempt on the wire: Node's own `node:http`/`node:https` with a keep-alive agent, so connections are reused per
 * origin at no bundle cost, a connect timeout and a request timeout, both cut short by the caller's deadline and
 * AbortSignal, and a cap on the answer's size. A failure without an HTTP answer is a TransportError.
 */
import http from 'node:http';
import https from 'node:https';
import type { HttpRequest, RawResponse } from './types.ts';

/** A failed attempt that produced no HTTP answer. `sent` is false only when the request never left (connect failed). */
export class TransportError extends Error {
  override readonly name = 'TransportError';
  readonly code: 'connect_timeout' | 'timeout' | 'aborted' | 'network' | 'too_large';
  readonly sent: boolean;
  constructor(code: TransportError['code'], message: string, sent: boolean) {
    super(message);
    this.code = code;
    this.sent = sent;
  }
}

export interface TransportLimits {
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  maxResponseBytes: number;
}

const agents = {
  'http:': new http.Agent({ keepAlive: true, maxSockets: 64 }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: 64 }),
};

export interface SendHooks {
  /** Told the moment the whole request was handed to the operating system. */
  onSent?: (at: number) => void;
  /** Awaited once the connection is open (a new one connected, TLS included; a kept-alive one at once), right before
   * the request is written: nothing is written until it resolves, and if it throws, nothing is sent and the attempt
   * fails with its error (a shared rate budget: shared/http/pacing.ts `leave`). */
  beforeWrite?: () => Promise<void>;
}

export function sendOnce(
  url: URL,
  request: HttpRequest,
  deadline: number,
  limits: TransportLimits,
  signal?: AbortSignal,
  { onSent, beforeWrite }: SendHooks = {},
): Promise<RawResponse> {
  return new Promise<RawResponse>((resolve, reject) => {
    if (signal?.aborted) return reject(new TransportError('aborted', 'aborted before sending (deadline)', false));
    const remaining = deadline - Date.now();
    if (remaining <= 0) return reject(new TransportError('aborted', 'deadline reached before sending', false));
    const transport = url.protocol === 'https:' ? https : http;
    const agent = agents[url.protocol as keyof typeof agents];
    if (!agent) return reject(new TransportError('network', `unsupported protocol ${url.protocol}`, false));

    const headers: Record<string, string> = { ...request.headers };
    if (request.body !== undefined) headers['content-length'] = String(Buffer.byteLength(request.body));
    let connected = false;
    // Whether the request may have reached the provider: connected, and written (at once without `beforeWrite`).
    let written = !beforeWrite;
    const sent = () => connected && written;
    let settled = false;
    const timers: NodeJS.Timeout[] = [];
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const fail = (error: Error) => {
      finish(() => reject(error));
      req.destroy();
    };
    const onAbort = () => fail(new TransportError('aborted', 'aborted by the invocation deadline', sent()));

    const req = transport.request(url, { method: request.method, headers, agent });
    // 'finish': the whole request was handed to the operating system, the moment it left as far as we can tell.
    if (onSent) req.once('finish', () => onSent(Date.now()));
    const requestTimeout = Math.min(limits.requestTimeoutMs, remaining);
    timers.push(
      setTimeout(
        () =>
          fail(
            requestTimeout < limits.requestTimeoutMs
              ? new TransportError(
                  'timeout',
                  `no complete answer before the invocation deadline (${requestTimeout} ms)`,
                  sent(),
                )
              : new TransportError('timeout', `no complete answer within ${requestTimeout} ms`, sent()),
          ),
        requestTimeout,
      ),
    );
    signal?.addEventListener('abort', onAbort, { once: true });

    req.on('socket', (socket) => {
      if (!socket.connecting) {
        connected = true;
        return;
      }
      const connectTimer = setTimeout(
        () =>
          fail(new TransportError('connect_timeout', `could not connect within ${limits.connectTimeoutMs} ms`, false)),
        limits.connectTimeoutMs,
      );
      timers.push(connectTimer);
      socket.once('connect', () => {
        connected = true;
        clearTimeout(connectTimer);
      });
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      fail(new TransportError('network', `${error.code ?? 'network error'}: ${error.message}`, sent()));
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > limits.maxResponseBytes) {
          fail(new TransportError('too_large', `response larger than ${limits.maxResponseBytes} bytes`, true));
          return;
        }
        chunks.push(chunk);
      });
      res.on('aborted', () => fail(new TransportError('network', 'connection closed before the response ended', true)));
      res.on('error', (error) => fail(new TransportError('network', `response error: ${error.message}`, true)));
      res.on('end', () => {
        if (!res.complete) {
          fail(new TransportError('network', 'connection closed before the response ended (truncated body)', true));
          return;
        }
        const headersOut: Record<string, string | undefined> = {};
        for (const [k, v] of Object.entries(res.headers)) headersOut[k] = Array.isArray(v) ? v.join(', ') : v;
        finish(() =>
          resolve({ status: res.statusCode ?? 0, headers: headersOut, body: Buffer.concat(chunks).toString('utf8') }),
        );
      });
    });
    if (!beforeWrite) req.end(request.body);
    else
      req.once('socket', (socket) => {
        const write = () =>
          beforeWrite().then(
            () => {
              if (settled) return;
              written = true;
              req.end(request.body);
            },
            (error: Error) => fail(error),
          );
        if (!socket.connecting) void write();
        else socket.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => void write());
      });
  });
}
