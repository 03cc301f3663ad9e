/** What the outbound HTTP client (./client.ts) takes and gives: requests, answers, and the options of a send. */

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
  pace?: Pace;
}

/** How a send is paced (SendOptions.pace). */
export interface Pace {
  key: string;
  perSecond: number;
  shared?: SharedPace | undefined;
  /** With `shared`: how long after its slot a request may still leave. Later, it could share one of the provider's
   * windows with as many later slots as the window holds; it takes another slot instead. */
  lateLimitMs?: number | undefined;
}

/** A budget shared beyond this process (shared/aws/rate-budget.ts): takes the next slot for `key` from `at` on and
 * says how long after `at` it begins, or undefined (taking nothing) when the queue reaches further than `horizonMs`
 * past `at`; `late` pushes the slots after it back, for a request that left later than its slot. */
export interface SharedPace {
  reserve(key: string, perSecond: number, horizonMs: number, at?: number): Promise<number | undefined>;
  late(key: string, ms: number): Promise<void>;
}

/** The retry budget per origin (./retry.ts): a token bucket, as in the AWS SDKs' standard retry mode. */
export interface RetryBudgetConfig {
  capacity: number;
  retryCost: number;
  timeoutCost: number;
  successRefund: number;
}

export interface HttpClientOptions {
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  maxResponseBytes?: number;
  retry?: Partial<RetryPolicy>;
  budget?: RetryBudgetConfig;
  /** Injectable for tests of the backoff arithmetic. */
  random?: () => number;
}
