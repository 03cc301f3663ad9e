/**
 * The one outbound HTTP client for every provider: `send` makes attempts (./transport.ts) until one gives a
 * definitive answer, paced (./pacing.ts) and retried (./retry.ts) by these rules, in the order they apply to each
 * attempt:
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
 *
 * Transport: Node's own `node:http`/`node:https` with a keep-alive agent. (We measured the npm `undici` package at
 * +732 KB / +70 ms import, and built-in fetch offers no connect timeout without it; see the issue note and `bench/`.)
 */
import { RateLimitedError, TransientError } from '#shared/core/errors.ts';
import { log } from '#shared/observability/log.ts';
import { Pacer } from './pacing.ts';
import {
  backoffDelay,
  DEFAULT_BUDGET,
  DEFAULT_RETRY,
  isTransientStatus,
  parseRequestedWait,
  RetryBudget,
} from './retry.ts';
import { sleep } from './sleep.ts';
import { type SendHooks, sendOnce, TransportError, type TransportLimits } from './transport.ts';
import type {
  HttpClientOptions,
  HttpRequest,
  HttpResponse,
  RawResponse,
  RetryBudgetConfig,
  RetryPolicy,
  SendOptions,
} from './types.ts';

export class HttpClient {
  private readonly limits: TransportLimits;
  private readonly retry: RetryPolicy;
  private readonly budgetConfig: RetryBudgetConfig;
  private readonly budgets = new Map<string, RetryBudget>();
  private readonly pacer = new Pacer();
  private readonly random: () => number;

  constructor(options: HttpClientOptions = {}) {
    this.limits = {
      connectTimeoutMs: options.connectTimeoutMs ?? 3_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
      maxResponseBytes: options.maxResponseBytes ?? 1024 * 1024,
    };
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
      const pace = options.pace;
      const slot = pace
        ? await this.pacer.turn(pace, policy, deadline, attempt - 1, ambiguous, options.signal)
        : undefined;
      let response: RawResponse | undefined;
      let failure: TransportError | undefined;
      // A paced request's slot counts from when it actually left, not from when the slot was taken: a container
      // the machine did not run for a while between the two would otherwise send its next request too soon after.
      // A shared budget's slot is checked once the connection is open, right before the request is written.
      const hooks: SendHooks =
        pace && slot !== undefined
          ? {
              beforeWrite: () => this.pacer.leave(pace, slot, policy, deadline, attempt - 1, ambiguous, options.signal),
            }
          : pace
            ? { onSent: (at: number) => this.pacer.sent(pace.key, pace.perSecond, at) }
            : {};
      try {
        response = await sendOnce(url, request, deadline, this.limits, options.signal, hooks);
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
}
