/**
 * What the cancel handlers share, and the factory that builds one (`defineCancelHandler`): each handler file holds
 * only what differs (its schemas, its operation, how a validated request or task becomes the operation's input).
 * The rest is here: the common API headers, the audit ledger and the provider's circuit around the operation, the
 * reply for one outcome or several, and the task result that hands a `failed` outcome back to Step Functions as a
 * retryable error.
 */
import * as z from 'zod/mini';
import { type Deps, defaultDeps, type OperationContext } from '#shared/core/cancel.ts';
import { type CircuitState, CLOSED_READ_REUSE_MS, unreachable } from '#shared/core/circuit.ts';
import { CircuitOpenError, RETRYABLE_ERROR_NAME, TaskRetryableError } from '#shared/core/errors.ts';
import { text } from '#shared/core/items.ts';
import { type LedgerEntry, recordOrLog } from '#shared/core/ledger.ts';
import { httpStatusFor, httpStatusForAll, type Outcome, type Provider } from '#shared/core/outcome.ts';
import { log } from '#shared/observability/log.ts';
import { emitCircuitMetrics, emitOutcomeMetrics } from '#shared/observability/metrics.ts';
import { defineHandler, type Invocation, type Reply, scopedIdempotencyKey } from './middleware.ts';

/** `Idempotency-Key`: a retried API call with the same key returns the first outcome. */
export const IdempotencyHeaders = z.looseObject({
  'idempotency-key': z.optional(
    z.string().check(z.regex(/^[\x21-\x7e]{1,255}$/, 'must be 1 to 255 printable ASCII characters without spaces')),
  ),
});

/** Who asked and why, optional on every cancel body: recorded with the outcome. */
export const WhyFields = {
  reason: z.optional(text(1000)),
  requestedBy: z.optional(z.string().check(z.minLength(1), z.maxLength(320))),
};

/** Who asked, why, and the keys that tie a cancellation to its batch. */
export interface Why {
  idempotencyKey?: string | undefined;
  reason?: string | undefined;
  requestedBy?: string | undefined;
  creditApplicationId?: string | undefined;
  /** A batch item's input position(s): the task result carries them back to Summarize. */
  index?: number | undefined;
  indexes?: number[] | undefined;
}

/** The why of a task input: its own fields, else its batch's. */
export function whyFromTask(
  p: Why & { batch?: Pick<Why, 'reason' | 'requestedBy' | 'creditApplicationId'> | undefined },
): Why {
  return {
    idempotencyKey: p.idempotencyKey,
    reason: p.reason ?? p.batch?.reason,
    requestedBy: p.requestedBy ?? p.batch?.requestedBy,
    creditApplicationId: p.creditApplicationId ?? p.batch?.creditApplicationId,
    index: p.index,
    indexes: p.indexes,
  };
}

export function operationContext(invocation: Invocation, fields: Why): OperationContext {
  const { requestedBy } = fields;
  return {
    signal: invocation.signal,
    deadline: invocation.deadline,
    ...(fields.idempotencyKey
      ? { idempotencyKey: scopedIdempotencyKey(invocation.caller, fields.idempotencyKey) }
      : {}),
    ...(fields.reason ? { reason: fields.reason } : {}),
    ...(requestedBy ? { requestedBy } : {}),
    ...(invocation.executionId ? { executionId: invocation.executionId } : {}),
  };
}

/**
 * The circuit's gate for a batch task (shared/core/circuit.ts): through when closed; when open, only the probe this
 * call claims, else `Provider.CircuitOpen` before any request. A circuit that cannot be read lets the call through:
 * an unreadable table must not stop cancellations.
 */
async function admit(deps: Deps, provider: Provider): Promise<{ probe: boolean; before?: CircuitState }> {
  const circuits = deps.circuits;
  if (!circuits) return { probe: false };
  const before = await circuits.get(provider, CLOSED_READ_REUSE_MS).catch((error) => {
    log.warn('circuit unreadable; calling the provider', { provider, error });
    return undefined;
  });
  if (before?.state !== 'open') return { probe: false, ...(before ? { before } : {}) };
  emitCircuitMetrics(provider, before);
  if (await circuits.claimProbe(provider).catch(() => false)) {
    log.info('circuit open: probing', { provider });
    return { probe: true, before };
  }
  const since = before.openedAt ? new Date(before.openedAt).toISOString() : 'recently';
  const next = before.probeAt ? `; next probe after ${new Date(before.probeAt).toISOString()}` : '';
  throw new CircuitOpenError(
    `${provider} is unreachable (circuit open since ${since}${next}): not called; the batch retries it in its next round. Last failure: ${before.lastFailure ?? 'unknown'}`,
  );
}

/**
 * A batch task's call through its provider's circuit: admitted (or refused, `Provider.CircuitOpen`), made as the
 * probe when it claimed one (`ctx.probe`: a single attempt), and what it found counted (`down`: the outcome that
 * found the provider unreachable, if any). Batch cancels and a batch's guard go through it.
 */
export async function throughCircuit<R>(
  deps: Deps,
  provider: Provider,
  ctx: OperationContext,
  call: () => Promise<R>,
  down: (result: R) => Pick<Outcome, 'message' | 'failure'> | undefined,
): Promise<R> {
  const gate = await admit(deps, provider);
  if (gate.probe) ctx.probe = true;
  const result = await call();
  await observe(deps, provider, down(result), gate.before);
  return result;
}

/** The provider's circuit after a call: `down` (an outcome that found it unreachable) counts a failure; otherwise
 * it answered, which closes the circuit. */
async function observe(
  deps: Deps,
  provider: Provider,
  down: Pick<Outcome, 'message' | 'failure'> | undefined,
  before: CircuitState | undefined,
) {
  const circuits = deps.circuits;
  if (!circuits) return;
  try {
    if (down) {
      const after = await circuits.failure(provider, down.message ?? down.failure ?? 'transient');
      if (after.state === 'open' && before?.state !== 'open') log.warn('circuit opened', { provider, circuit: after });
      emitCircuitMetrics(provider, after);
    } else if (before && (before.state === 'open' || before.failures > 0)) {
      const was = await circuits.success(provider);
      if (was?.state === 'open') log.info('circuit closed: the provider answers again', { provider });
      emitCircuitMetrics(provider, { state: 'closed' });
    }
  } catch (error) {
    log.warn('circuit not updated', { provider, error });
  }
}

/**
 * The `run` of a cancel handler: the operation, then every outcome written to the audit ledger with who called
 * (the platform's word), who asked (the caller's), why and when. A ledger write that fails does not undo a cancellation that happened: the outcome is still
 * returned, and the whole entry goes to the error log so it is not lost. A batch task goes through its provider's
 * circuit (`provider`).
 */
export function cancelRun<C, R extends Outcome | Outcome[]>(
  operation: (cancel: C, ctx: OperationContext, deps: Deps) => Promise<R>,
  provider?: Provider,
) {
  return async (input: { cancel: C; why: Why }, invocation: Invocation): Promise<R> => {
    const deps = defaultDeps();
    const ctx = operationContext(invocation, input.why);
    const call = () => operation(input.cancel, ctx, deps);
    const result =
      provider !== undefined && invocation.source === 'task'
        ? await throughCircuit(deps, provider, ctx, call, (r) => (Array.isArray(r) ? r : [r]).find(unreachable))
        : await call();
    const at = new Date().toISOString();
    const entries: LedgerEntry[] = (Array.isArray(result) ? result : [result]).map((outcome) => ({
      ...outcome,
      at,
      source: invocation.source,
      caller: invocation.caller,
      requestId: invocation.requestId,
      ...(invocation.executionId ? { executionId: invocation.executionId } : {}),
      ...(ctx.idempotencyKey ? { idempotencyKey: ctx.idempotencyKey } : {}),
      ...(ctx.requestedBy ? { requestedBy: ctx.requestedBy } : {}),
      ...(ctx.reason ? { reason: ctx.reason } : {}),
      ...(input.why.creditApplicationId ? { creditApplicationId: input.why.creditApplicationId } : {}),
    }));
    await recordOrLog(deps.ledger, entries);
    for (const entry of entries) log.info('cancellation outcome', { outcome: entry });
    emitOutcomeMetrics(entries);
    return result;
  };
}

function retryAfter(outcomes: readonly Outcome[]): Record<string, string> {
  const waits = outcomes.map((o) => o.retryAfterSeconds).filter((s): s is number => s !== undefined);
  return waits.length ? { 'retry-after': String(Math.max(...waits)) } : {};
}

export function outcomeReply(outcome: Outcome): Reply {
  return {
    statusCode: httpStatusFor(outcome),
    body: outcome,
    headers: outcome.outcome === 'failed' ? retryAfter([outcome]) : {},
  };
}

/** Several outcomes answered together (one call naming several targets): the shared status, or 207 when they
 * differ. */
export function outcomesReply(outcomes: Outcome[], extra: Record<string, unknown> = {}): Reply {
  const statusCode = httpStatusForAll(outcomes);
  const shared = new Set(outcomes.map((o) => o.outcome));
  return {
    statusCode,
    body: { ...extra, ...(shared.size === 1 ? { outcome: outcomes[0]?.outcome } : {}), outcomes },
    headers: outcomes.some((o) => o.outcome === 'failed') ? retryAfter(outcomes) : {},
  };
}

/**
 * The task result: the outcome(s), or, when any failed transiently, a `Provider.*` error whose message is the
 * JSON of every outcome, so Step Functions retries with backoff and, once retries are spent, its Catch still
 * holds each item's outcome. A batch task gets its input position(s) back beside its outcome(s).
 */
export function taskResult<T extends Outcome | Outcome[]>(result: T, input?: { why: Why }) {
  const outcomes: Outcome[] = Array.isArray(result) ? result : [result];
  const failed = outcomes.find((o) => o.outcome === 'failed');
  if (failed) {
    // The error lands in the batch's state, once per item: messages are cut short to keep it small (256 KB).
    const short = (o: Outcome) =>
      o.message && o.message.length > 300 ? { ...o, message: `${o.message.slice(0, 300)}…` } : o;
    const carried = Array.isArray(result) ? result.map(short) : short(result as Outcome);
    throw new TaskRetryableError(RETRYABLE_ERROR_NAME[failed.failure ?? 'transient'], JSON.stringify(carried));
  }
  const why = input?.why;
  if (why?.indexes && Array.isArray(result)) return { indexes: why.indexes, outcomes: result };
  if (why?.index !== undefined && !Array.isArray(result)) return { index: why.index, outcome: result };
  return result;
}

/** A cancel handler's input: what the operation cancels, and who asked and why. */
export interface CancelInput<C> {
  cancel: C;
  why: Why;
}

/** What one cancel handler says; everything else is `defineCancelHandler`'s. */
interface CancelHandlerBase<C, R extends Outcome | Outcome[], Api extends z.ZodMiniType, Task extends z.ZodMiniType> {
  /** The function (its folder under functions/), which is also the operation's name in its outcomes. */
  name: string;
  provider: Provider;
  operation: (cancel: C, ctx: OperationContext, deps: Deps) => Promise<R>;
  /** The route's schema (path, headers, query, body) and the input it gives. */
  api: { schema: Api; toInput: (parsed: z.output<Api>) => CancelInput<C> };
  /** A batch task's schema and the input it gives. */
  task: { schema: Task; toInput: (parsed: z.output<Task>) => CancelInput<C> };
}

/**
 * One outcome per call (the default), or several: an operation that cancels several targets in one call gives
 * one outcome each, answered together at the API (`outcomesReply`: the shared status, or 207).
 */
export type CancelHandlerSpec<
  C,
  R extends Outcome | Outcome[],
  Api extends z.ZodMiniType,
  Task extends z.ZodMiniType,
> = CancelHandlerBase<C, R, Api, Task> &
  (R extends Outcome[] ? { outcomesPerCall: 'several' } : { outcomesPerCall?: 'one' });

/** A cancel handler: validated input, once per idempotency key, the operation through the ledger and circuit
 * (`cancelRun`), the outcome(s) as the API's reply or the task's result. */
export function defineCancelHandler<
  C,
  R extends Outcome | Outcome[],
  Api extends z.ZodMiniType,
  Task extends z.ZodMiniType,
>(spec: CancelHandlerSpec<C, R, Api, Task>) {
  const several = spec.outcomesPerCall === 'several';
  return defineHandler<CancelInput<C>, R>({
    name: spec.name,
    api: { schema: spec.api.schema, toInput: spec.api.toInput as (parsed: never) => CancelInput<C> },
    task: { schema: spec.task.schema, toInput: spec.task.toInput as (parsed: never) => CancelInput<C> },
    idempotent: true,
    run: cancelRun(spec.operation, spec.provider),
    reply: several
      ? (outcomes) => outcomesReply(outcomes as Outcome[], { provider: spec.provider, operation: spec.name })
      : (outcome) => outcomeReply(outcome as Outcome),
    taskResult,
  });
}
