/**
 * The one outbound HTTP client for every provider.
 *
 * Transport: Node's own `node:http`/`node:https` with a keep-alive agent, so connections are reused per origin
 * at no bundle cost. (We measured the npm `undici` package at +732 KB / +70 ms import, and built-in fetch
 * offers no connect timeout without it; see the issue note and `bench/`.)
 *
 * Rules, in the order they apply to each attempt:
 * - a connect timeout and a request timeout, both cut short by the caller's deadline and AbortSignal;
 * - transient failures (network errors, resets, timeouts, 5xx, 429, or what the caller's `isTransient` names,
 *   such as a malformed body) are retried; any other 4xx is returned at once and never retried;
 * - the wait before a retry is the provider's `Retry-After` (seconds or HTTP-date) or `RateLimit-Reset`
 *   (GoCardless: an HTTP-date), else capped exponential backoff with full jitter;
 * - a wait longer than `maxWaitMs` (or past the deadline) is not slept: a `RateLimitedError` carrying the wait
 *   goes back to the caller, for Step Functions to retry later;
 * - a retry budget per origin (a token bucket, as in the AWS SDKs' standard retry mode) stops retries when
 *   most calls fail, so a broken provider is not hammered;
 * - an optional pacer spaces requests to an origin to a rate, and holds every caller back after a 429.
 */
import http from 'node:http';
import https from 'node:https';
import { RateLimitedError, TransientError } from './errors.ts';
import { log } from './log.ts';

export interface HttpRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH';
  url: string;
  headers?: Record<string, string>;
  body?: string;
}

/** What one attempt received. Header names are lower-case. */
export interface RawResponse {
  status: number;
  headers: Record<string, string | undefined>;
  body: string;
}

export interface HttpResponse extends RawResponse {
  /** Attempts made, the last one included. */
  attempts: number;
  durationMs: number;
  /** True when an earlier attempt may have reached the provider and taken effect before failing (5xx, reset). */
  ambiguous: boolean;
}

export interface RetryPolicy {
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** The longest wait the provider may ask for that is slept here; longer waits become a RateLimitedError. */
  maxWaitMs: number;
}

export interface SendOptions {
  /** Aborts the whole send, retries included: the handler's early-timeout signal. */
  signal?: AbortSignal;
  /** Epoch milliseconds by which the whole send must be over (the Lambda's remaining time, minus a margin). */
  deadline?: number;
  retry?: Partial<RetryPolicy>;
  /** Names a response that must be retried although its status says otherwise (a malformed body, maintenance). */
  isTransient?: (response: RawResponse) => string | undefined;
  /** Spaces requests sharing `key` to at most `perSecond`: in this process, or, with `shared`, across every
   * container that shares the budget. */
  pace?: { key: string; perSecond: number; shared?: SharedPace | undefined };
}

/** A budget shared beyond this process (shared/aws/rate-budget.ts): takes the next slot for `key` and says how long
 * to wait for it, or undefined (taking nothing) when the queue reaches further than `horizonMs`; `late` pushes the
 * slots after it back, for a request that left later than its slot. */
export interface SharedPace {
  reserve(key: string, perSecond: number, horizonMs: number): Promise<number | undefined>;
  late(key: string, ms: number): Promise<void>;
}

export interface HttpClientOptions {
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  maxResponseBytes?: number;
  retry?: Partial<RetryPolicy>;
  budget?: { capacity: number; retryCost: number; timeoutCost: number; successRefund: number };
  /** Injectable for tests of the backoff arithmetic. */
  random?: () => number;
}

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 2_000, maxWaitMs: 5_000 };
const DEFAULT_BUDGET = { capacity: 100, retryCost: 5, timeoutCost: 10, successRefund: 1 };

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

const agents = {
  'http:': new http.Agent({ keepAlive: true, maxSockets: 64 }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: 64 }),
};

/** Parses a wait the provider asked for: `Retry-After` (seconds or HTTP-date) or `RateLimit-Reset` (HTTP-date,
 * delta-seconds or epoch seconds). Dates are taken relative to the response's own `Date` header when present,
 * so a skewed local clock does not stretch or cut the wait. Returns milliseconds, or undefined. */
export function parseRequestedWait(
  headers: RawResponse['headers'],
  now = Date.now(),
  includeReset = true,
): number | undefined {
  const serverNow = headers.date ? Date.parse(headers.date) : Number.NaN;
  const reference = Number.isFinite(serverNow) ? serverNow : now;
  for (const name of includeReset ? ['retry-after', 'ratelimit-reset', 'x-ratelimit-reset'] : ['retry-after']) {
    const raw = headers[name]?.trim();
    if (!raw) continue;
    if (/^\d+(\.\d+)?$/.test(raw)) {
      const n = Number(raw);
      // Epoch seconds (GitHub-style) are far larger than any sensible delta.
      return n > 1_000_000_000 ? Math.max(0, n * 1000 - reference) : n * 1000;
    }
    // An HTTP-date has one-second precision (and so has the Date header it is compared with): the reset may be up
    // to a second later than it reads. Waiting that second is cheaper than a 429 for retrying too early.
    const date = Date.parse(raw);
    if (Number.isFinite(date)) return Math.max(0, date - reference) + 1000;
  }
  return undefined;
}

/** 429 and 5xx are transient, except 501 Not Implemented and 505 HTTP Version Not Supported, which never heal. */
export function isTransientStatus(status: number): boolean {
  return status === 429 || (status >= 500 && status !== 501 && status !== 505);
}

/** Full jitter: a random wait between 0 and the capped exponential step (AWS Architecture Blog, "Exponential
 * Backoff And Jitter"). `retry` is 1 for the first retry. */
export function backoffDelay(retry: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (retry - 1));
  return Math.floor(random() * cap);
}

class RetryBudget {
  private tokens: number;
  private readonly config: typeof DEFAULT_BUDGET;
  constructor(config: typeof DEFAULT_BUDGET) {
    this.config = config;
    this.tokens = config.capacity;
  }
  take(timeout: boolean): boolean {
    const cost = timeout ? this.config.timeoutCost : this.config.retryCost;
    if (this.tokens < cost) return false;
    this.tokens -= cost;
    return true;
  }
  refund(): void {
    this.tokens = Math.min(this.config.capacity, this.tokens + this.config.successRefund);
  }
  get available(): number {
    return this.tokens;
  }
}

/** Spaces request starts per key, and holds every caller of a key back after a 429 until the provider's reset. */
class Pacer {
  private readonly next = new Map<string, number>();
  private readonly holds = new Map<string, number>();
  /** Milliseconds every caller of `key` must still wait because the provider said so (0 when free). */
  held(key: string, now = Date.now()): number {
    return Math.max(0, (this.holds.get(key) ?? 0) - now);
  }
  holdUntil(key: string, until: number): void {
    if (until > (this.holds.get(key) ?? 0)) this.holds.set(key, until);
  }
  /** Reserves the next slot for `key` at `perSecond`; returns how long to wait for it. */
  reserve(key: string, perSecond: number, now = Date.now()): number {
    const slot = Math.max(now, this.next.get(key) ?? 0);
    this.next.set(key, slot + 1000 / perSecond);
    return slot - now;
  }
  /** A request that left later than its slot (a late timer, a busy event loop, a thread the machine did not run)
   * pushes the next slot back by as much, so the spacing holds between the requests actually sent, and no window sees
   * a burst. Told the moment each request was handed to the socket. */
  sent(key: string, perSecond: number, at = Date.now()): void {
    const next = at + 1000 / perSecond;
    if (next > (this.next.get(key) ?? 0)) this.next.set(key, next);
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export class HttpClient {
  private readonly connectTimeoutMs: number;
  private readonly requestTimeoutMs: number;
  private readonly maxResponseBytes: number;
  private readonly retry: RetryPolicy;
  private readonly budgetConfig: typeof DEFAULT_BUDGET;
  private readonly budgets = new Map<string, RetryBudget>();
  private readonly pacer = new Pacer();
  private readonly random: () => number;

  constructor(options: HttpClientOptions = {}) {
    this.connectTimeoutMs = options.connectTimeoutMs ?? 3_000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.maxResponseBytes = options.maxResponseBytes ?? 1024 * 1024;
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    this.budgetConfig = { ...DEFAULT_BUDGET, ...options.budget };
    this.random = options.random ?? Math.random;
  }

  /** Tokens left in the retry budget of an origin (for tests and diagnostics). */
  retryBudget(origin: string): number {
    return this.budget(origin).available;
  }

  private budget(origin: string): RetryBudget {
    let budget = this.budgets.get(origin);
    if (!budget) {
      budget = new RetryBudget(this.budgetConfig);
      this.budgets.set(origin, budget);
    }
    return budget;
  }

  /**
   * Sends a request, retrying transient failures. Resolves with any definitive answer (2xx-4xx except 429);
   * rejects with RateLimitedError (429s outlasted the budget, or a wait too long to sleep here) or
   * TransientError (5xx, network errors, timeouts or malformed answers outlasted the budget).
   */
  async send(request: HttpRequest, options: SendOptions = {}): Promise<HttpResponse> {
    const policy = { ...this.retry, ...options.retry };
    const url = new URL(request.url);
    const budget = this.budget(url.origin);
    const started = Date.now();
    const deadline = options.deadline ?? Number.POSITIVE_INFINITY;
    let ambiguous = false;

    for (let attempt = 1; ; attempt++) {
      if (options.pace) await this.pace(options.pace, policy, deadline, attempt - 1, ambiguous, options.signal);
      let response: RawResponse | undefined;
      let failure: TransportError | undefined;
      // A paced request's slot counts from when it actually left, not from when the slot was taken: a container
      // the machine did not run for a while between the two would otherwise send its next request too soon after.
      const pace = options.pace;
      const onSent = pace && !pace.shared ? (at: number) => this.pacer.sent(pace.key, pace.perSecond, at) : undefined;
      try {
        response = await this.attempt(url, request, deadline, options.signal, onSent);
      } catch (error) {
        if (!(error instanceof TransportError)) throw error;
        failure = error;
      }

      log.debug('provider call', {
        method: request.method,
        url: `${url.origin}${url.pathname}`,
        attempt,
        ...(response ? { status: response.status } : { error: failure?.message }),
      });
      const transientReason = failure
        ? failure.message
        : response && isTransientStatus(response.status)
          ? `HTTP ${response.status}`
          : response && options.isTransient?.(response);

      if (!transientReason && response) {
        budget.refund();
        return { ...response, attempts: attempt, durationMs: Date.now() - started, ambiguous };
      }

      const rateLimited = response?.status === 429;
      // GoCardless sends RateLimit-Reset on every answer: it is a wait only on a 429. Retry-After counts on 5xx too.
      const requestedWait = response ? parseRequestedWait(response.headers, Date.now(), rateLimited) : undefined;
      if (rateLimited && requestedWait !== undefined && options.pace) {
        this.pacer.holdUntil(options.pace.key, Date.now() + requestedWait);
      }
      const giveUp = (): never => {
        if (rateLimited)
          throw new RateLimitedError({ retryAfterMs: requestedWait, status: 429, attempts: attempt, ambiguous });
        const timeout =
          failure?.code === 'timeout' || failure?.code === 'connect_timeout' || failure?.code === 'aborted';
        throw new TransientError(`${transientReason} (after ${attempt} attempt(s))`, {
          status: response?.status,
          attempts: attempt,
          // This attempt too may have reached the provider: a 5xx or a reset after the request was written.
          ambiguous: ambiguous || (response ? response.status >= 500 : (failure?.sent ?? false)),
          timeout,
        });
      };

      if (failure?.code === 'aborted' || failure?.code === 'too_large') giveUp();
      // A wait the provider names that is too long to sleep here goes straight back to the caller.
      if (requestedWait !== undefined && requestedWait > policy.maxWaitMs) giveUp();
      if (attempt >= policy.maxAttempts) giveUp();
      const delay = requestedWait ?? backoffDelay(attempt, policy, this.random);
      if (Date.now() + delay >= deadline) giveUp();
      if (!budget.take(failure?.code === 'timeout' || failure?.code === 'connect_timeout')) giveUp();

      // From here on, an earlier attempt may have taken effect (unless it was refused with 429 or never sent).
      ambiguous ||= response
        ? response.status >= 500 || (!rateLimited && response.status < 400)
        : failure?.sent === true;
      try {
        await sleep(delay, options.signal);
      } catch {
        giveUp();
      }
    }
  }

  /** Waits for this caller's turn: first any hold the provider imposed with a 429, then the pacing slot.
   * A wait too long for this invocation is not slept: it becomes a RateLimitedError, as a 429 would. */
  private async pace(
    pace: NonNullable<SendOptions['pace']>,
    policy: RetryPolicy,
    deadline: number,
    attempts: number,
    ambiguous: boolean,
    signal?: AbortSignal,
  ): Promise<void> {
    const held = this.pacer.held(pace.key);
    if (held > policy.maxWaitMs || Date.now() + held >= deadline) {
      throw new RateLimitedError({ retryAfterMs: held, status: 429, attempts, ambiguous });
    }
    if (held > 0) await sleep(held, signal);
    const asked = Date.now();
    const wait = pace.shared
      ? await this.sharedSlot(pace.shared, pace, Math.min(policy.maxWaitMs, deadline - Date.now()), attempts, ambiguous)
      : this.pacer.reserve(pace.key, pace.perSecond);
    // The wait counts from when the slot was asked for (a shared budget's answer takes a round trip).
    const remaining = Math.max(0, asked + wait - Date.now());
    if (Date.now() + remaining >= deadline)
      throw new RateLimitedError({ retryAfterMs: remaining, status: 429, attempts, ambiguous });
    // Timers do not fire sooner than 1 ms: a shorter wait is spent by the time the request is on the wire.
    if (remaining >= 1) await sleep(remaining, signal);
    if (pace.shared) {
      // The slot began when it was asked for (plus its wait); the request leaves now. Leaving later than the slot by
      // more than a tenth of the spacing (the budget's own round trip, a late timer) pushes the next slots back by
      // as much, so the requests actually sent stay spaced. Rare where the round trip is a few milliseconds.
      const lateness = Date.now() - (asked + wait);
      if (lateness > 100 / pace.perSecond)
        await pace.shared.late(pace.key, lateness).catch((error) => {
          log.warn('shared rate budget not pushed back', { key: pace.key, error: (error as Error).message });
        });
    }
  }

  /** A slot of the shared budget. Its queue too long for this invocation, or the budget unreadable: nothing is sent
   * (no request may go out unmetered), and the caller is told to come back later. */
  private async sharedSlot(
    shared: SharedPace,
    pace: NonNullable<SendOptions['pace']>,
    horizonMs: number,
    attempts: number,
    ambiguous: boolean,
  ): Promise<number> {
    let wait: number | undefined;
    try {
      wait = await shared.reserve(pace.key, pace.perSecond, Math.max(0, horizonMs));
    } catch (error) {
      throw new TransientError(`the shared rate budget of ${pace.key} is unreachable (${(error as Error).message})`, {
        attempts,
        ambiguous,
      });
    }
    if (wait === undefined) throw new RateLimitedError({ retryAfterMs: horizonMs, status: 429, attempts, ambiguous });
    return wait;
  }

  private attempt(
    url: URL,
    request: HttpRequest,
    deadline: number,
    signal?: AbortSignal,
    onSent?: (at: number) => void,
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
      let settled = false;
      const timers: NodeJS.Timeout[] = [];
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        for (const t of timers) clearTimeout(t);
        signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const fail = (error: TransportError) => {
        finish(() => reject(error));
        req.destroy();
      };
      const onAbort = () => fail(new TransportError('aborted', 'aborted by the invocation deadline', connected));

      const req = transport.request(url, { method: request.method, headers, agent });
      // 'finish': the whole request was handed to the operating system, the moment it left as far as we can tell.
      if (onSent) req.once('finish', () => onSent(Date.now()));
      const requestTimeout = Math.min(this.requestTimeoutMs, remaining);
      timers.push(
        setTimeout(
          () =>
            fail(
              requestTimeout < this.requestTimeoutMs
                ? new TransportError(
                    'timeout',
                    `no complete answer before the invocation deadline (${requestTimeout} ms)`,
                    connected,
                  )
                : new TransportError('timeout', `no complete answer within ${requestTimeout} ms`, connected),
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
            fail(new TransportError('connect_timeout', `could not connect within ${this.connectTimeoutMs} ms`, false)),
          this.connectTimeoutMs,
        );
        timers.push(connectTimer);
        socket.once('connect', () => {
          connected = true;
          clearTimeout(connectTimer);
        });
      });
      req.on('error', (error: NodeJS.ErrnoException) => {
        fail(new TransportError('network', `${error.code ?? 'network error'}: ${error.message}`, connected));
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > this.maxResponseBytes) {
            fail(new TransportError('too_large', `response larger than ${this.maxResponseBytes} bytes`, true));
            return;
          }
          chunks.push(chunk);
        });
        res.on('aborted', () =>
          fail(new TransportError('network', 'connection closed before the response ended', true)),
        );
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
      req.end(request.body);
    });
  }
}
