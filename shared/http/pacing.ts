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
  /** The round trip to each shared budget, smoothed: a slot is asked for that far ahead, so the request can leave on
   * time rather than a round trip after its slot. */
  private readonly roundTrips = new Map<string, number>();
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

  /** Waits for this caller's turn: first any hold the provider imposed with a 429, then the pacing slot. With a
   * shared budget, returns the slot: the request must still be on time for it when it is written (`leave`).
   * A wait too long for this invocation is not slept: it becomes a RateLimitedError, as a 429 would. */
  async turn(
    pace: Pace,
    policy: RetryPolicy,
    deadline: number,
    attempts: number,
    ambiguous: boolean,
    signal?: AbortSignal,
  ): Promise<number | undefined> {
    const held = this.held(pace.key);
    if (held > policy.maxWaitMs || Date.now() + held >= deadline) {
      throw new RateLimitedError({ retryAfterMs: held, status: 429, attempts, ambiguous });
    }
    if (held > 0) await sleep(held, signal);
    if (pace.shared) return this.sharedTurn(pace, pace.shared, policy, deadline, attempts, ambiguous, signal);
    const wait = this.reserve(pace.key, pace.perSecond);
    if (Date.now() + wait >= deadline)
      throw new RateLimitedError({ retryAfterMs: wait, status: 429, attempts, ambiguous });
    // Timers do not fire sooner than 1 ms: a shorter wait is spent by the time the request is on the wire.
    if (wait >= 1) await sleep(wait, signal);
    return undefined;
  }

  /**
   * Right before a request of a shared budget is written, its connection open: the request leaves in its slot `at`
   * only if it is on time for it: never before it, and not too late. Slots are spaced 1/perSecond apart; the
   * provider counts requests per window, and a request that leaves more than `pace.lateLimitMs` after its slot could,
   * with some delay on its way, share a window with as many later slots as the window holds (other containers hold
   * those), one too many (lateLimitMs, shared/core/cancel.ts: half the window's slack, the rest for the way). So such
   * a request does not leave: it gives its slot up and takes another, as often as it takes. Checked here, after the
   * connection is open, and not when the slot's wait ends: a new connection's handshake (a cold container's first
   * request) would otherwise make the request late after the check. A request a little late pushes the later slots
   * back instead.
   */
  async leave(
    pace: Pace,
    at: number,
    policy: RetryPolicy,
    deadline: number,
    attempts: number,
    ambiguous: boolean,
    signal?: AbortSignal,
  ): Promise<void> {
    const shared = pace.shared;
    if (!shared) return;
    for (let slot = at; ; ) {
      // A timer may fire up to a millisecond early, and a wait under one is not slept: never before the slot.
      while (Date.now() < slot) await sleep(1, signal);
      const lateness = Date.now() - slot;
      if (pace.lateLimitMs === undefined || lateness <= pace.lateLimitMs) {
        // Later than the slot by more than a tenth of the spacing: the slots after it move back by as much, so the
        // requests actually sent stay spaced. Not awaited: the request leaves now, not a round trip later, right
        // next to the slot after it (traced in the storm at 10x: two sends 0.1 ms apart, 11 in one window). The late
        // limit alone bounds what leaves; this slack absorbs the jitter on the way to the provider (measured without
        // it: 11 in a window at the simulator in 3 of 5 storms; at most 10 in every one with it), for about 2 % of the
        // budget's rate.
        if (lateness > 100 / pace.perSecond)
          shared.late(pace.key, lateness).catch((error) => {
            log.warn('shared rate budget not pushed back', { key: pace.key, error: (error as Error).message });
          });
        return;
      }
      log.debug('shared rate budget slot missed: taking another', { key: pace.key, lateMs: lateness });
      slot = await this.sharedTurn(pace, shared, policy, deadline, attempts, ambiguous, signal);
    }
  }

  /** Takes a slot of the shared budget, asked a smoothed round trip ahead, and waits for it: returns the slot. */
  private async sharedTurn(
    pace: Pace,
    shared: SharedPace,
    policy: RetryPolicy,
    deadline: number,
    attempts: number,
    ambiguous: boolean,
    signal?: AbortSignal,
  ): Promise<number> {
    const asked = Date.now();
    const lead = Math.ceil(2 * (this.roundTrips.get(pace.key) ?? 0));
    const slot = asked + lead;
    const wait = await sharedSlot(shared, pace, Math.min(policy.maxWaitMs, deadline - slot), attempts, ambiguous, slot);
    const answered = Date.now();
    const trip = answered - asked;
    this.roundTrips.set(pace.key, 0.8 * (this.roundTrips.get(pace.key) ?? trip) + 0.2 * trip);
    const at = slot + wait;
    if (at >= deadline) throw new RateLimitedError({ retryAfterMs: at - answered, status: 429, attempts, ambiguous });
    if (at - answered >= 1) await sleep(at - answered, signal);
    return at;
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
  at: number,
): Promise<number> {
  let wait: number | undefined;
  try {
    wait = await shared.reserve(pace.key, pace.perSecond, Math.max(0, horizonMs), at);
  } catch (error) {
    throw new TransientError(`the shared rate budget of ${pace.key} is unreachable (${(error as Error).message})`, {
      attempts,
      ambiguous,
    });
  }
  if (wait === undefined) throw new RateLimitedError({ retryAfterMs: horizonMs, status: 429, attempts, ambiguous });
  return wait;
}
