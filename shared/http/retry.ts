/**
 * When to retry and how long to wait: which statuses are transient, the wait a provider asks for (`Retry-After`,
 * `RateLimit-Reset`), capped exponential backoff with full jitter, and the retry budget per origin that stops retries
 * when most calls fail, so a broken provider is not hammered.
 */
import type { RawResponse, RetryBudgetConfig, RetryPolicy } from './types.ts';

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 2_000, maxWaitMs: 5_000 };
export const DEFAULT_BUDGET: RetryBudgetConfig = { capacity: 100, retryCost: 5, timeoutCost: 10, successRefund: 1 };

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

/** One origin's retry budget: a retry costs tokens (a timeout more), a success refunds one. */
export class RetryBudget {
  private tokens: number;
  private readonly config: RetryBudgetConfig;
  constructor(config: RetryBudgetConfig) {
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
