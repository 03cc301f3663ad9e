/**
 * Summarize (DESIGN.md 3.3): the iterations of the provider maps made into one outcome per input item, in input
 * order, with the counts. Pure: the S3 and ledger I/O is in `functions/batch-summarize`.
 */
import { RETRYABLE_ERROR_NAME } from '#shared/core/errors.ts';
import {
  countOutcomes,
  type Failure,
  type Outcome,
  type OutcomeKind,
  PROVIDERS,
  type Provider,
} from '#shared/core/outcome.ts';
import { redact } from '#shared/observability/log.ts';
import { providerModule } from '#shared/providers/index.ts';
import { operationOf, targetOf } from './keys.ts';
import type { Prepared, PreparedTask } from './prepare.ts';
import type { RoundsReport } from './rounds.ts';

/** What one iteration of a provider map gives back: a task result, or the input plus the error it was caught with. */
export type IterationResult =
  | { index: number; outcome: Outcome }
  | { indexes: number[]; outcomes: Outcome[] }
  | (PreparedTask & { error: { Error: string; Cause?: string } });

export interface ItemResult extends Outcome {
  index: number;
  /** Set on a duplicate: the index of the first occurrence, whose outcome it shares. */
  duplicateOf?: number;
}

export interface BatchSummary {
  total: number;
  unique: number;
  duplicates: number;
  /** Items that ended without an outcome: always 0 unless something is badly wrong (then the batch has failures). */
  lost: number;
  byProvider: Partial<Record<Provider, Record<OutcomeKind, number>>>;
  byOutcome: Record<OutcomeKind, number>;
}

export interface BatchResult {
  status: 'completed' | 'completed_with_failures';
  summary: BatchSummary;
  results: ItemResult[];
  /** Rounds run, the deadline, and why items still failing were given up (shared/batch/rounds.ts). */
  rounds?: RoundsReport;
}

/**
 * The message of a caught error: Step Functions gives a Lambda error's Cause as the JSON
 * `{"errorType", "errorMessage", "trace"}`; other errors give plain text.
 */
export function causeMessage(cause: string | undefined): string {
  if (!cause) return '';
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: unknown };
    if (typeof parsed?.errorMessage === 'string') return parsed.errorMessage;
  } catch {
    // plain text
  }
  return cause;
}

/** The failure a caught error stands for: ours by name, a task timeout as `timeout`, anything else `transient`. */
const FAILURE_OF_ERROR: Record<string, Failure> = {
  ...Object.fromEntries(Object.entries(RETRYABLE_ERROR_NAME).map(([failure, name]) => [name, failure])),
  'States.Timeout': 'timeout',
  'Lambda.Unknown': 'timeout',
  'Lambda.TooManyRequestsException': 'rate_limited',
};

/** The outcomes a caught `Provider.*` error carries as its message (its Lambda's answer), if any. */
function carriedOutcomes(error: { Error: string }, message: string): Outcome[] | undefined {
  if (!error.Error.startsWith('Provider.')) return undefined;
  try {
    const parsed = JSON.parse(message) as Outcome | Outcome[];
    const carried = Array.isArray(parsed) ? parsed : [parsed];
    // Outcomes only: a message that merely parses as JSON (a quoted string, a number) carries none.
    return carried.every((o) => typeof o?.outcome === 'string') ? carried : undefined;
  } catch {
    return undefined;
  }
}

/** A caught error in a sentence: its name and what its outcome says (or its cause), scrubbed of credentials. */
export function caughtMessage(error: { Error: string; Cause?: string }): string {
  const message = causeMessage(error.Cause);
  const said = carriedOutcomes(error, message)?.[0]?.message;
  return redact(`${error.Error}: ${said ?? message}`).slice(0, 1000);
}

/** The outcomes a caught task stands for: the ones its `Provider.*` error carries, else `failed` for each item. */
export function caughtOutcomes(
  task: PreparedTask & { error: { Error: string; Cause?: string } },
): { index: number; outcome: Outcome }[] {
  const message = causeMessage(task.error.Cause);
  const carried = carriedOutcomes(task.error, message);
  const provider = task.item.provider;
  const failure = FAILURE_OF_ERROR[task.error.Error] ?? 'transient';
  const failed = (target: Record<string, string>): Outcome => ({
    provider,
    operation: operationOf(provider),
    target,
    outcome: 'failed',
    failure,
    attempts: 0,
    durationMs: 0,
    // Scrubbed before the cut, so the cut cannot keep a credential's prefix.
    message: redact(`${task.error.Error}: ${message}`).slice(0, 1000),
  });
  if (task.indexes) {
    const targets = chunkTargets(task);
    return task.indexes.map((index, i) => ({ index, outcome: carried?.[i] ?? failed(targets[i] ?? {}) }));
  }
  return [{ index: task.index ?? -1, outcome: carried?.[0] ?? failed(targetOf(task.item)) }];
}

/** The target of each of a chunk task's items (its provider's `chunk` hook). */
export function chunkTargets(task: PreparedTask): Record<string, string>[] {
  return providerModule(task.item.provider).chunk?.targets(task) ?? [];
}

/** Flattens iteration results into one outcome per input index. */
export function collectOutcomes(iterations: readonly IterationResult[]): Map<number, Outcome> {
  const byIndex = new Map<number, Outcome>();
  for (const it of iterations) {
    if ('error' in it) for (const { index, outcome } of caughtOutcomes(it)) byIndex.set(index, outcome);
    else if ('outcomes' in it) {
      for (const [i, index] of it.indexes.entries()) {
        const outcome = it.outcomes[i];
        if (outcome) byIndex.set(index, outcome);
      }
    } else byIndex.set(it.index, it.outcome);
  }
  return byIndex;
}

/** Outcomes in input order, duplicates sharing their first occurrence's outcome, and the counts. */
export function summarize(
  prepared: Pick<Prepared, 'total' | 'unique' | 'duplicates'>,
  byIndex: Map<number, Outcome>,
): BatchResult {
  const duplicateOf = new Map(prepared.duplicates);
  const results: ItemResult[] = [];
  const unique: Outcome[] = [];
  for (let index = 0; index < prepared.total; index++) {
    const first = duplicateOf.get(index);
    const outcome = byIndex.get(first ?? index);
    if (!outcome) continue;
    results.push({ index, ...(first !== undefined ? { duplicateOf: first } : {}), ...outcome });
    if (first === undefined) unique.push(outcome);
  }
  const byProvider: BatchSummary['byProvider'] = {};
  for (const provider of PROVIDERS) {
    const mine = unique.filter((o) => o.provider === provider);
    if (mine.length) byProvider[provider] = countOutcomes(mine);
  }
  const byOutcome = countOutcomes(unique);
  const lost = prepared.unique - unique.length;
  const failures = byOutcome.failed + byOutcome.rejected + lost;
  return {
    status: failures === 0 ? 'completed' : 'completed_with_failures',
    summary: {
      total: prepared.total,
      unique: prepared.unique,
      duplicates: prepared.duplicates.length,
      lost,
      byProvider,
      byOutcome,
    },
    results,
  };
}
