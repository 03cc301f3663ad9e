/**
 * Rounds: the items a round leaves `failed` for a transient reason are tried again after a Wait, with the same
 * task (and so the same idempotency key), until the batch's deadline; only then are they reported `failed`.
 * Final outcomes are final at once. A provider whose circuit is open (shared/core/circuit.ts) gets one item per round,
 * its probe; the others wait for a round in which the circuit is closed, which comes after 1 s once it has closed.
 *
 * The waits grow (30 s, doubling, at most 5 minutes) and never pass the deadline. The execution's history must stay
 * under Standard workflows' 25,000 events: a round costs about ROUNDS.eventsPerRound events, plus
 * ROUNDS.eventsPerInlineTask per item an inline round runs (a manifest round's items run in child executions), so
 * a deadline farther than the rounds left at 5 minutes each spaces the rounds out evenly until it (a 24 h deadline
 * fits at 5 minutes; 7 days waits about half an hour between rounds). With no room for another round, the items
 * still waiting are given up, saying so.
 */
import { RETRYABLE_ERROR_NAME } from '#shared/core/errors.ts';
import { type Outcome, PROVIDERS, type Provider } from '#shared/core/outcome.ts';
import { GUARD, providerModule } from '#shared/providers/index.ts';
import { keyFor, operationOf, targetOf } from './keys.ts';
import { emptyGroups, type Prepared, type PreparedTask } from './prepare.ts';
import { caughtOutcomes, chunkTargets, collectOutcomes, type IterationResult } from './summarize.ts';

/** A Lambda function at its reserved concurrency refuses the invocation before it runs. */
export const THROTTLED_ERROR = 'Lambda.TooManyRequestsException';
/** How often the definition retries a throttled task (infra/batch-state-machine.ts): 1 s doubling to 30 s, full
 * jitter, about 18 minutes of patience. */
export const THROTTLE_RETRIES = 40;

export const ROUNDS = {
  firstWaitSeconds: 30,
  factor: 2,
  maxWaitSeconds: 300,
  /** 25,000 events, less a margin for the start and the end. */
  historyEvents: 24_000,
  /** Summarize, the round's Choice and Wait, the mode's Choice, the Parallel and its four maps, probes. */
  eventsPerRound: 60,
  /** One inline item: its Map iteration, the task, a retry or two, a catch. */
  eventsPerInlineTask: 12,
  /** A task caught throttled (THROTTLED_ERROR) spent every throttle retry, each attempt three events (scheduled,
   * started, failed): with its Map iteration, its state's entry and exit and the catch, 6 + 3 × 41. A function at its
   * reservation for long (a reservation of 0: every attempt throttled) makes every round cost this per item, ten
   * times the usual; counted at that, an inline batch gives its items up when the history has no room, instead of
   * failing the execution at 25,000 events with no outcome for any of them. */
  eventsPerThrottledTask: 6 + 3 * (1 + THROTTLE_RETRIES),
  /** After Summarize reads the history: its own end and exit, the round's Choice and Wait, and a margin. */
  eventsAfterRead: 10,
} as const;

/** Caught errors that leave an item for the next round: the provider's transient failures, an open circuit, and
 * Lambda's own throttling and service errors. Anything else (a crash) ends the item `failed` at once. A batch's guard
 * waits out the same in rounds once its own retries are spent; anything else stops the batch. */
export const ROUND_RETRYABLE_ERRORS: ReadonlySet<string> = new Set([
  ...Object.values(RETRYABLE_ERROR_NAME),
  'Provider.CircuitOpen',
  THROTTLED_ERROR,
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.ClientExecutionTimeoutException',
  'Lambda.Unknown',
  'States.Timeout',
]);

type Caught = PreparedTask & { error: { Error: string; Cause?: string } };
type Settled = { index: number; outcome: Outcome };
/** A task to try again, with its latest outcomes; `throttled`: caught throttled, every throttle retry spent. */
type Retry = { task: PreparedTask; last: Settled[]; throttled?: boolean };

/** A round's iterations: final outcomes, tasks to try again (with their latest outcomes), and crashes. */
export function splitRound(
  iterations: readonly IterationResult[],
  executionId: string,
): { settled: Settled[]; retry: Retry[]; crashes: Caught[] } {
  const settled: Settled[] = [];
  const retry: Retry[] = [];
  const crashes: Caught[] = [];
  for (const it of iterations) {
    if (!('error' in it)) {
      for (const [index, outcome] of collectOutcomes([it])) settled.push({ index, outcome });
      continue;
    }
    const outcomes = caughtOutcomes(it);
    if (!ROUND_RETRYABLE_ERRORS.has(it.error.Error)) {
      settled.push(...outcomes);
      crashes.push(it);
      continue;
    }
    const failed = outcomes.filter((o) => o.outcome.outcome === 'failed');
    settled.push(...outcomes.filter((o) => o.outcome.outcome !== 'failed'));
    if (!failed.length) continue;
    const { error: _e, ...task } = it;
    if (!task.indexes || failed.length === outcomes.length) {
      retry.push({ task, last: failed, ...(it.error.Error === THROTTLED_ERROR ? { throttled: true } : {}) });
      continue;
    }
    // A chunk partly settled: only its failed targets go again, as a chunk of their own with its own key.
    const chunk = providerModule(task.item.provider).chunk;
    const again = failed.map((o) => ({ index: o.index, target: o.outcome.target }));
    retry.push({
      task: (chunk?.subset(task, again, (what) => keyFor(executionId, what)) ?? task) as PreparedTask,
      last: failed,
    });
  }
  return { settled, retry, crashes };
}

export interface RoundInfo {
  /** Rounds run so far. */
  number: number;
  /** History events the rounds have used so far (estimated, see ROUNDS). */
  events: number;
  /** Items (a chunk's targets counted one by one) still without a final outcome. */
  pending: number;
  /** Providers the batch waits for, with how many items, and their circuit when it is open; `guard`: the credit
   * application the batch's guard could not read yet (every item waits for it). */
  waitingFor: { provider: Provider; items: number; circuit?: 'open'; since?: string; guard?: string }[];
  waitSeconds: number;
  nextAttemptAt: string;
  /** The latest failure per provider: what the items still waiting would say. */
  lastFailure: Partial<Record<Provider, string>>;
}

export interface RoundsReport {
  count: number;
  deadline: string;
  /** Why the rounds ended: everything settled, the deadline passed, or the history had no room for another. */
  ended: 'settled' | 'deadline' | 'history';
  /** Said when items were given up: how many, and why. */
  message?: string;
}

/** An open circuit as Summarize reads it. */
export type OpenCircuits = Partial<Record<Provider, { since?: number }>>;

export type RoundDecision =
  | {
      kind: 'wait';
      groups: Record<Provider, PreparedTask[]>;
      held: PreparedTask[];
      round: RoundInfo;
    }
  | { kind: 'final'; failed: Settled[]; report: RoundsReport };

const itemsOf = (t: PreparedTask) => t.indexes?.length ?? 1;

/** `failed` outcomes for a task given up, with the reason. */
function givenUp(task: PreparedTask, last: Settled[] | undefined, why: string, fallback: string): Settled[] {
  const lastByIndex = new Map((last ?? []).map((s) => [s.index, s.outcome]));
  const indexes = task.indexes ?? [task.index ?? -1];
  const targets = task.indexes ? chunkTargets(task) : [];
  return indexes.map((index, i) => {
    const previous = lastByIndex.get(index);
    const target = task.indexes ? (targets[i] ?? {}) : targetOf(task.item);
    const outcome: Outcome = previous ?? {
      provider: task.item.provider,
      operation: operationOf(task.item.provider),
      target,
      outcome: 'failed',
      failure: 'transient',
      attempts: 0,
      durationMs: 0,
      message: fallback,
    };
    return { index, outcome: { ...outcome, message: `${outcome.message ?? ''} (${why})`.trim().slice(0, 1000) } };
  });
}

/**
 * Whether another round fits before the deadline and in the execution's history (`reserve`: events kept for a last
 * round), and the wait before it: growing from ROUNDS.firstWaitSeconds, never past the deadline, and spaced out
 * evenly when the history holds too few rounds of the longest wait until the deadline (a 7-day deadline).
 */
function roomForRound(
  deadline: string,
  now: number,
  number: number,
  events: number,
  reserve: number,
): { ended: 'deadline' | 'history' } | { ended?: undefined; waitSeconds: number } {
  const left = (Date.parse(deadline) - now) / 1000;
  const roundsLeft = Math.floor((ROUNDS.historyEvents - events - reserve) / ROUNDS.eventsPerRound);
  if (left <= 0) return { ended: 'deadline' };
  if (roundsLeft < 1) return { ended: 'history' };
  const step = Math.min(ROUNDS.maxWaitSeconds, ROUNDS.firstWaitSeconds * ROUNDS.factor ** (number - 1));
  const floor = left > roundsLeft * ROUNDS.maxWaitSeconds ? left / roundsLeft : 0;
  return { waitSeconds: Math.max(1, Math.ceil(Math.min(left, Math.max(step, floor)))) };
}

/**
 * After a round: the next one (what it runs, what it holds back, how long it waits), or the end, with the items
 * still failing given up as `failed` and the reason. Pure: `now` and the open circuits come from the caller.
 */
export function planNextRound(input: {
  mode: Prepared['mode'];
  deadline: string;
  now: number;
  /** The round just run: its number (1 for the first), the tasks it ran, and the execution's history as Summarize
   * read it (the latest event's number; absent when it could not be read). */
  round: { number: number; eventsBefore: number; ran: number; history?: number | undefined };
  retry: Retry[];
  held: PreparedTask[];
  open: OpenCircuits;
  lastFailure: Partial<Record<Provider, string>>;
}): RoundDecision {
  const { mode, deadline, now, round, retry, held, open } = input;
  const inline = mode === 'inline';
  // An inline round's items are in this execution's history (a manifest round's, in child executions'): a task
  // caught throttled spent every throttle retry, and is counted at that, as it would be again in the next round.
  // Read, the history is exact, and so is what an inline task of the round cost on average (a task throttled many
  // times, then answered, costs up to ten times the usual): the next round is reserved at that. Unread, both are
  // estimated.
  const throttled = retry.filter((r) => r.throttled).length;
  const extra = ROUNDS.eventsPerThrottledTask - ROUNDS.eventsPerInlineTask;
  const read = round.history;
  const events =
    read !== undefined
      ? read + ROUNDS.eventsAfterRead
      : round.eventsBefore +
        ROUNDS.eventsPerRound +
        (inline ? round.ran * ROUNDS.eventsPerInlineTask + throttled * extra : 0);
  const perTask =
    read !== undefined && round.ran > 0
      ? Math.max(ROUNDS.eventsPerInlineTask, Math.ceil((read - round.eventsBefore - ROUNDS.eventsPerRound) / round.ran))
      : ROUNDS.eventsPerInlineTask;
  const lastFailure = { ...input.lastFailure };
  for (const { task, last } of retry) {
    const message = last.at(-1)?.outcome.message;
    if (message) lastFailure[task.item.provider] = message;
  }
  const tasks = [...retry.map((r) => r.task), ...held];
  if (!tasks.length) return { kind: 'final', failed: [], report: { count: round.number, deadline, ended: 'settled' } };

  // Room kept in the history for one round that runs every item still pending.
  const reserve = inline ? tasks.length * perTask + throttled * extra : 0;
  const room = roomForRound(deadline, now, round.number, events, reserve);
  if (room.ended) {
    const why =
      room.ended === 'deadline'
        ? `still failing when the batch's deadline ${deadline} passed, after ${round.number} round(s)`
        : `given up after ${round.number} round(s): the execution's history has no room for another`;
    const lastOf = new Map(retry.map((r) => [r.task.idempotencyKey, r.last]));
    const failed = tasks.flatMap((t) =>
      givenUp(t, lastOf.get(t.idempotencyKey), why, lastFailure[t.item.provider] ?? 'not attempted again'),
    );
    const providers = [...new Set(tasks.map((t) => t.item.provider))];
    return {
      kind: 'final',
      failed,
      report: {
        count: round.number,
        deadline,
        ended: room.ended,
        message: `${failed.length} item(s) of ${providers.join(', ')} ${why}`,
      },
    };
  }

  const groups = emptyGroups();
  const nextHeld: PreparedTask[] = [];
  for (const task of tasks) {
    const provider = task.item.provider;
    // An open circuit gets one task per round: the probe (the cancel function claims it, or refuses it unsent).
    if (open[provider] && groups[provider].length >= 1) nextHeld.push(task);
    else groups[provider].push(task);
  }
  // Items held back for a circuit that has closed since (a probe got an answer): the provider is back, drain now.
  const recovered = held.some((t) => !open[t.item.provider]);
  const waitSeconds = recovered ? 1 : room.waitSeconds;
  const waitingFor = PROVIDERS.flatMap((provider) => {
    const mine = tasks.filter((t) => t.item.provider === provider);
    if (!mine.length) return [];
    const circuit = open[provider];
    return [
      {
        provider,
        items: mine.reduce((n, t) => n + itemsOf(t), 0),
        ...(circuit ? { circuit: 'open' as const } : {}),
        ...(circuit?.since ? { since: new Date(circuit.since).toISOString() } : {}),
      },
    ];
  });
  return {
    kind: 'wait',
    groups,
    held: nextHeld,
    round: {
      number: round.number,
      events,
      pending: tasks.reduce((n, t) => n + itemsOf(t), 0),
      waitingFor,
      waitSeconds,
      nextAttemptAt: new Date(now + waitSeconds * 1000).toISOString(),
      lastFailure,
    },
  };
}

export type GuardRoundDecision =
  | { kind: 'wait'; round: RoundInfo }
  | { kind: 'final'; report: RoundsReport; why: string; lastFailure: string };

/** A batch's every task given up (`failed`, with `why` after `lastFailure`): its guard never read its application. */
export function notAttempted(tasks: readonly PreparedTask[], why: string, lastFailure: string): Settled[] {
  return tasks.flatMap((t) => givenUp(t, undefined, why, lastFailure));
}

/**
 * After a guard that could not read its credit application for a reason that passes (ROUND_RETRYABLE_ERRORS): another
 * try after a round's wait, as a failing item gets, until the batch's deadline; then the end, every item `failed`
 * (not attempted: `notAttempted`), each saying why. Nothing is cancelled before the guard has read the application.
 * Pure: `now` comes from the caller.
 */
export function planGuardRound(input: {
  mode: Prepared['mode'];
  deadline: string;
  now: number;
  /** The rounds so far (guard rounds included), absent before the first. */
  round?: { number: number; events: number };
  /** Items the batch would cancel (after de-duplication). */
  items: number;
  creditApplicationId: string;
  failure: string;
  /** The guard was caught throttled (THROTTLED_ERROR): it spent every throttle retry, in this execution's history,
   * whichever the mode, and may again. */
  throttled?: boolean;
  /** The execution's history as Summarize read it (the latest event's number), when it could. */
  history?: number | undefined;
}): GuardRoundDecision {
  const { mode, deadline, now, items, creditApplicationId, failure } = input;
  const number = (input.round?.number ?? 0) + 1;
  const guard = input.throttled ? ROUNDS.eventsPerThrottledTask : 0;
  const events =
    input.history !== undefined
      ? input.history + ROUNDS.eventsAfterRead
      : (input.round?.events ?? 0) + ROUNDS.eventsPerRound + guard;
  const reserve = (mode === 'inline' ? items * ROUNDS.eventsPerInlineTask : 0) + guard;
  const room = roomForRound(deadline, now, number, events, reserve);
  const lastFailure = `${GUARD.title} guard: ${failure}`.slice(0, 1000);
  if (room.ended) {
    const when =
      room.ended === 'deadline'
        ? `before the batch's deadline ${deadline} passed`
        : "while the execution's history had room for another round";
    const why = `not attempted: the batch's guard could not read ${GUARD.title} credit application ${creditApplicationId} ${when}, after ${number} round(s)`;
    return {
      kind: 'final',
      why,
      lastFailure,
      report: {
        count: number,
        deadline,
        ended: room.ended,
        message: `${items} item(s) ${why}. Last failure: ${failure}`.slice(0, 2000),
      },
    };
  }
  return {
    kind: 'wait',
    round: {
      number,
      events,
      pending: items,
      waitingFor: [{ provider: GUARD.provider, items, guard: creditApplicationId }],
      waitSeconds: room.waitSeconds,
      nextAttemptAt: new Date(now + room.waitSeconds * 1000).toISOString(),
      lastFailure: { [GUARD.provider]: lastFailure },
    },
  };
}
