/**
 * The core every provider operation runs in: the same dependencies, deadline and pacing for all, and one place
 * that turns transient trouble into a `failed` outcome and keeps "exactly once in effect" honest.
 */

import { DynamoLedger } from '#shared/aws/ledger-table.ts';
import { DynamoRateBudget } from '#shared/aws/rate-budget.ts';
import { type SecretStore, secretStore } from '#shared/aws/secrets.ts';
import { config, optionalTable, table } from '#shared/config.ts';
import { HttpClient } from '#shared/http/client.ts';
import type { SendOptions, SharedPace } from '#shared/http/types.ts';
import { log, scrub } from '#shared/observability/log.ts';
import type { answerFields, Classification } from '#shared/providers/common.ts';
import { type CircuitStore, DynamoCircuitStore } from './circuit.ts';
import { RateLimitedError, TransientError } from './errors.ts';
import { type Ledger, MemoryLedger, targetKey } from './ledger.ts';
import type { Operation, Outcome, Provider } from './outcome.ts';

export interface OperationContext {
  signal: AbortSignal;
  /** Epoch ms by which provider calls must be over. */
  deadline: number;
  /** Stable per logical cancellation (the API's Idempotency-Key, or the batch item's key). */
  idempotencyKey?: string;
  reason?: string;
  requestedBy?: string;
  /** A probe of an open circuit (shared/core/circuit.ts): one attempt, no retries. */
  probe?: boolean;
  /** The batch execution a task belongs to: its earlier attempts are ours (an Auco chunk's key changes when a round
   * sends only its failed codes again). */
  executionId?: string;
}

export interface Deps {
  http: HttpClient;
  secrets: SecretStore;
  ledger: Ledger;
  /** The providers' budgets shared across containers (RATE_BUDGET_TABLE); without it, each process paces alone. */
  budget?: SharedPace;
  /** The providers' circuits (CIRCUIT_TABLE); without them, batch tasks call providers without a circuit. */
  circuits?: CircuitStore;
}

let shared: Deps | undefined;

/** One HTTP client, secret store and ledger per process (per warm Lambda), so connections and caches are reused. */
export function defaultDeps(): Deps {
  const budget = optionalTable('RATE_BUDGET_TABLE');
  const circuits = optionalTable('CIRCUIT_TABLE');
  let ledger: Ledger | undefined;
  shared ??= {
    http: new HttpClient(),
    secrets: secretStore(),
    // Built on first use: a function that keeps no ledger (the lookup) needs no LEDGER_TABLE.
    get ledger(): Ledger {
      if (!ledger) {
        const name = table('LEDGER_TABLE');
        ledger = name ? new DynamoLedger(name) : new MemoryLedger();
      }
      return ledger;
    },
    ...(budget ? { budget: new DynamoRateBudget(budget) } : {}),
    ...(circuits ? { circuits: new DynamoCircuitStore(circuits) } : {}),
  };
  return shared;
}

/** Replaces the process-wide dependencies (tests, the local runner). */
export function setDefaultDeps(deps: Deps | undefined): void {
  shared = deps;
}

/** A provider's request budget per second, with its name: each provider's adapter says its own (PROVIDERS.md), and
 * its operations pace with it. */
export interface RateLimit {
  readonly provider: Provider;
  readonly perSecond: number;
  /** The window the provider counts in: perSecond × windowSeconds requests per window. */
  readonly windowSeconds: number;
}

/** The share of each budget we pace to: 95 %, so timing jitter between us and the provider's counter does not turn
 * into 429s. */
export const RATE_MARGIN = 0.95;

/** The rate requests to a provider are spaced to: `<PROVIDER>_RATE_PER_SECOND`, else the default. In AWS it is this
 * container's share of the provider's budget (limit × margin ÷ reserved concurrency), or, where several functions
 * share the budget through RATE_BUDGET_TABLE, the budget's whole rate, metered across containers (infra/budget.ts).
 * Nothing saying otherwise (a single process: the CLI's tests, a script), the limit × margin. */
export function rateFor(limit: RateLimit): number {
  return config().ratePerSecond[limit.provider] ?? limit.perSecond * RATE_MARGIN;
}

/** The share of a window's slack (lateLimitMs) a request may spend leaving late; the rest is for its way there. */
const LATE_SHARE = 0.5;

/**
 * How long after its slot of a shared budget a request may still leave. The provider allows N = limit × window requests
 * per window; slots are 1/perSecond apart, so N + 1 consecutive slots span N/perSecond, longer than the window by
 * N/perSecond × (1 − margin) when perSecond is the limit × margin: 52.6 ms for mycreditapp, Auco and Truework at their
 * budgets. The provider counts arrivals, not departures, so that slack must also cover the way there: a request
 * delayed on it more than the ones after it arrives closer to them. The sender takes half (26.3 ms; 2.6 ms at the
 * benches' 10x), spent on a late timer, a starved thread or the budget's round trip, never on a burst; the other half
 * is left for the difference in delay on the way. With all of it at the sender, Truework's simulator saw 11 arrivals
 * in a window in about one storm in ten, and came within 0–20 ms of it in three storms at 10x, against 30–40 ms with
 * half (README, Performance, storm).
 */
export function lateLimitMs(limit: RateLimit, perSecond: number): number {
  return ((limit.perSecond * limit.windowSeconds * 1000) / perSecond) * (1 - RATE_MARGIN) * LATE_SHARE;
}

export function sendOptions(
  limit: RateLimit,
  ctx: OperationContext,
  deps: Pick<Deps, 'budget'>,
  extra: SendOptions = {},
): SendOptions {
  const perSecond = rateFor(limit);
  return {
    signal: ctx.signal,
    deadline: ctx.deadline,
    pace: {
      key: limit.provider,
      perSecond,
      ...(deps.budget ? { shared: deps.budget, lateLimitMs: lateLimitMs(limit, perSecond) } : {}),
    },
    ...extra,
    ...(ctx.probe ? { retry: { ...extra.retry, maxAttempts: 1 } } : {}),
  };
}

export type OutcomeBase = Pick<Outcome, 'provider' | 'operation' | 'target'>;

/** What an operation reports before the core stamps duration and settles ambiguity. */
export type Settled = Omit<Outcome, 'durationMs' | keyof OutcomeBase> & {
  /** An earlier attempt of this request may have taken effect before its answer was lost. */
  ambiguous?: boolean;
  /** The provider may answer a repeated cancel like a first one (`canceled`) or like a refusal that names no
   * state (`not_cancelable`): the ledger tells whether an earlier request of ours already cancelled it. */
  uncertainRepeat?: boolean;
};

/** An outcome from an adapter's last word: a decision as it stands (a `failed` one is transient); an answer still
 * unauthorized after the refresh, or still undecided, is `rejected` with what the provider said. */
export function fromClassification(
  common: ReturnType<typeof answerFields>,
  classification: Classification & { uncertainRepeat?: boolean },
): Settled {
  if (classification.kind !== 'decided') return { ...common, outcome: 'rejected', message: classification.message };
  const { kind: _, ...fields } = classification;
  return { ...common, ...fields, ...(fields.outcome === 'failed' ? { failure: 'transient' } : {}) };
}

export function base(provider: Provider, operation: Operation, target: Record<string, string>): OutcomeBase {
  return { provider, operation, target };
}

/** A `failed` outcome for transient trouble that outlasted the budget: 503 (or 504 for timeouts) with the wait. */
export function failedOutcome(error: RateLimitedError | TransientError): Settled {
  if (error instanceof RateLimitedError) {
    return {
      outcome: 'failed',
      failure: 'rate_limited',
      httpStatus: 429,
      attempts: error.attempts,
      ...(error.retryAfterMs !== undefined ? { retryAfterSeconds: Math.ceil(error.retryAfterMs / 1000) } : {}),
      message: error.message,
      ambiguous: error.ambiguous,
    };
  }
  return {
    outcome: 'failed',
    failure: error.timeout ? 'timeout' : 'transient',
    ...(error.status !== undefined ? { httpStatus: error.status } : {}),
    attempts: error.attempts,
    message: error.message,
    ambiguous: error.ambiguous,
  };
}

/**
 * Runs an operation and settles its outcome:
 * - transient trouble becomes `failed` (configuration errors and bugs propagate);
 * - `already_canceled` after an attempt of ours that may have taken effect is reported `canceled`: the resource
 *   was still in flight when this request began, and our own lost attempt cancelled it. The attempt may be one of
 *   this invocation's, or an earlier invocation's with the same idempotency key: a `failed` outcome whose attempt
 *   may have taken effect says so in `details.mayHaveTakenEffect`, which the ledger keeps;
 * - an answer that a repeat could also have produced (`uncertainRepeat`) is checked against the ledger: a target
 *   an earlier, different request already cancelled is `already_canceled`;
 * - secret values are scrubbed from every string, and the duration is stamped (from `started`, by default now:
 *   work shared by several outcomes, such as one Auco call for many codes, counts from its own start).
 */
export async function settle(
  outcomeBase: OutcomeBase,
  work: () => Promise<Settled>,
  {
    repeat,
    started = Date.now(),
  }: {
    repeat?: { ledger: Ledger; idempotencyKey: string | undefined; executionId?: string | undefined };
    started?: number;
  } = {},
): Promise<Outcome> {
  const { ambiguous, uncertainRepeat, ...rest } = await catchTransient(work);
  // The outcome right after the target, so records read the same way everywhere.
  const { outcome: kind, ...fields } = rest;
  const outcome: Outcome = { ...outcomeBase, outcome: kind, ...fields, durationMs: 0 };
  if (ambiguous && outcome.outcome === 'failed') {
    // Kept with the outcome (and so in the audit ledger): a later attempt of this request, in another invocation
    // or a batch's retry, must know that this one may have cancelled the target before its answer was lost.
    outcome.details = { ...outcome.details, mayHaveTakenEffect: true };
    outcome.message = `${outcome.message ?? ''} (an attempt may have taken effect at the provider)`.trim();
  }
  // A refusal that names no state (`uncertainRepeat` and no `providerStatus`) may answer our own lost cancel too.
  const stateless = uncertainRepeat === true && outcome.outcome === 'not_cancelable' && !outcome.providerStatus;
  // A retry or a round after a lost answer (shared/batch/rounds.ts): the same request's earlier attempt, recorded
  // `canceled`, or `failed` in a way that may have reached the provider, cancelled it (or may have, for a refusal
  // that names no state).
  const earlier =
    !ambiguous &&
    (outcome.outcome === 'already_canceled' || stateless) &&
    (repeat?.idempotencyKey !== undefined || repeat?.executionId !== undefined)
      ? await ourEarlierAttempt(repeat.ledger, outcomeBase, repeat)
      : undefined;
  // Our own earlier attempt is recorded `canceled`: a refusal that names no state is its repeat.
  const ours = earlier?.outcome === 'canceled' && stateless;
  if (((ambiguous || earlier) && outcome.outcome === 'already_canceled') || ours) {
    outcome.outcome = 'canceled';
    const at = earlier ? ` at ${earlier.at}` : '';
    outcome.message =
      `${outcome.message ?? ''} (our earlier attempt of this request took effect${at}${earlier?.outcome === 'canceled' ? '' : '; its answer was lost'})`.trim();
  }
  if (
    uncertainRepeat &&
    !ambiguous &&
    !earlier &&
    (outcome.outcome === 'canceled' || outcome.outcome === 'not_cancelable') &&
    repeat
  ) {
    const prior = await repeat.ledger.lastCancellation(outcomeBase.provider, outcomeBase.target).catch((error) => {
      log.warn('ledger unreadable; a repeated cancel may be reported as canceled', { error });
      return undefined;
    });
    if (prior && (repeat.idempotencyKey === undefined || prior.idempotencyKey !== repeat.idempotencyKey)) {
      outcome.outcome = 'already_canceled';
      outcome.message = `Already cancelled by an earlier request at ${prior.at} (audit ledger); the provider answered this repeat like a first cancel`;
    }
  }
  if (stateless && (ambiguous || earlier) && outcome.outcome === 'not_cancelable') {
    // Our lost attempt may have cancelled it, or it completed or expired: the refusal does not say which, and
    // nothing documented reads the state back. Not final: retried, and `failed` if it never settles.
    outcome.outcome = 'failed';
    outcome.failure = 'transient';
    outcome.details = { ...outcome.details, mayHaveTakenEffect: true };
    outcome.message = `${outcome.message ?? ''}; an earlier attempt of this request may have cancelled it (its answer was lost), so this refusal, which names no state, does not settle it`;
  }
  return finish(outcome, started);
}

/** An earlier attempt of the same request (same idempotency key, or same batch execution) that cancelled the
 * target or may have: `failed` after an attempt that may have reached the provider (`details.mayHaveTakenEffect`),
 * or in any way but a 429 refusal (a crash, a timeout). An unreadable ledger finds none. */
async function ourEarlierAttempt(
  ledger: Ledger,
  outcomeBase: OutcomeBase,
  ours: { idempotencyKey?: string | undefined; executionId?: string | undefined },
) {
  const { entries } = await ledger
    .query({ provider: outcomeBase.provider, target: targetKey(outcomeBase.target), limit: 25 })
    .catch((error) => {
      log.warn('ledger unreadable; a cancel by our own lost attempt may be reported as already_canceled', { error });
      return { entries: [] };
    });
  return entries.find(
    (e) =>
      ((ours.idempotencyKey !== undefined && e.idempotencyKey === ours.idempotencyKey) ||
        (ours.executionId !== undefined && e.executionId === ours.executionId)) &&
      (e.outcome === 'canceled' ||
        (e.outcome === 'failed' && (e.details?.mayHaveTakenEffect === true || e.failure !== 'rate_limited'))),
  );
}

/** Runs provider work; transient trouble that outlasted the budget becomes a `failed` result. */
export async function catchTransient<T>(work: () => Promise<T>): Promise<T | Settled> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof RateLimitedError || error instanceof TransientError) return failedOutcome(error);
    throw error;
  }
}

/** Stamps the duration and scrubs secret values from every string of the outcome (ids, statuses, details, the
 * message): a provider that echoes a credential anywhere does not put it in an answer, a record or a log. */
export function finish(outcome: Outcome, started: number): Outcome {
  outcome.durationMs = Date.now() - started;
  return scrub(outcome);
}
