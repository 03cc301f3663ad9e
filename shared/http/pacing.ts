/**
 * Pacing: requests to a provider are spaced to a rate, in this process or, with a shared budget
 * (shared/aws/rate-budget.ts), across every container that shares it; after a 429 every caller of the provider is
 * held back until its reset. A wait too long for the invocation is not slept: it becomes a RateLimitedError, as a
 * 429 would, for Step Functions to retry later.
 */
import { RateLimitedError, TransientError } from '#shared/core/errors.ts';
import { log } from '#shared/observability/log.ts';
import { sleep } from './sleep.ts';
import type { Pace, RetryPolicy, SharedPace } from './types.ts';

/** Spaces request starts per key, and holds every caller of a key back after a 429 until the provider's reset. */
export class Pacer {
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

  /** Waits for this caller's turn: first any hold the provider imposed with a 429, then the pacing slot.
   * A wait too long for this invocation is not slept: it becomes a RateLimitedError, as a 429 would. */
  async turn(
    pace: Pace,
    policy: RetryPolicy,
    deadline: number,
    attempts: number,
    ambiguous: boolean,
    signal?: AbortSignal,
  ): Promise<void> {
    const held = this.held(pace.key);
    if (held > policy.maxWaitMs || Date.now() + held >= deadline) {
      throw new RateLimitedError({ retryAfterMs: held, status: 429, attempts, ambiguous });
    }
    if (held > 0) await sleep(held, signal);
    const asked = Date.now();
    const wait = pace.shared
      ? await sharedSlot(pace.shared, pace, Math.min(policy.maxWaitMs, deadline - Date.now()), attempts, ambiguous)
      : this.reserve(pace.key, pace.perSecond);
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
}

/** A slot of the shared budget. Its queue too long for this invocation, or the budget unreadable: nothing is sent
 * (no request may go out unmetered), and the caller is told to come back later. */
async function sharedSlot(
  shared: SharedPace,
  pace: Pace,
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
