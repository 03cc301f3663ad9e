/**
 * The audit ledger: every outcome, from any entry point, with who asked, why and when. It also answers the one
 * question some providers cannot: "was this already cancelled by an earlier request of ours?" (mycreditapp and
 * Truework may answer a repeated cancel exactly like the first one, PROVIDERS.md 1.4 and 3.6).
 *
 * `MemoryLedger` serves tests and a local run without a table; `shared/aws/ledger-table.ts` is the DynamoDB one.
 */

import { log, scrub } from '#shared/observability/log.ts';
import { InvalidInputError } from './errors.ts';
import { isCanceled, type Outcome, type Provider } from './outcome.ts';

/**
 * Who called, as the platform says it (DESIGN.md 3.3): never read from a body, a header or an execution's input.
 * - `api`: the IAM principal API Gateway verified (absent only where the API has no IAM authorizer: `npm start`
 *   without IAM auth);
 * - `execution`: a batch execution, and what started it (shared/core/execution-starts.ts): the API (with its caller's
 *   principal), a schedule (with the principal who registered it), or the console or another StartExecution
 *   caller (`console`);
 * - `invoke`: a task input that belongs to no batch (the function was invoked directly; Lambda says by whom in
 *   CloudTrail, not to the function).
 */
export type Caller =
  | { via: 'api'; principal?: string; accountId?: string }
  | {
      via: 'execution';
      executionId: string;
      startedBy: 'api' | 'schedule' | 'console';
      principal?: string;
      schedule?: string;
    }
  | { via: 'invoke' };

/** The caller of a batch task: its execution (from Prepare, which read it from the context) and what started it. */
export function executionCaller(batch: { executionId?: unknown; startedBy?: unknown }): Caller {
  if (typeof batch.executionId !== 'string' || !batch.executionId) return { via: 'invoke' };
  const started = (batch.startedBy ?? {}) as { by?: unknown; principal?: unknown; schedule?: unknown };
  return {
    via: 'execution',
    executionId: batch.executionId,
    startedBy: started.by === 'api' || started.by === 'schedule' ? started.by : 'console',
    ...(typeof started.principal === 'string' ? { principal: started.principal } : {}),
    ...(typeof started.schedule === 'string' ? { schedule: started.schedule } : {}),
  };
}

/** A cursor that no page of this query returned (edited, cut short, or from another query): the caller's to fix. */
export function invalidCursor(): InvalidInputError {
  return new InvalidInputError([
    {
      path: 'query.cursor',
      message:
        'is not a cursor this query returned (pass `next` from the previous page unchanged, with the same query), or leave it out to start from the first page',
    },
  ]);
}

export interface LedgerEntry extends Outcome {
  /** ISO time the outcome was settled. */
  at: string;
  source: 'api' | 'task';
  /** Who called, as the platform says it; `requestedBy` is what the caller says. */
  caller?: Caller;
  requestId?: string;
  executionId?: string;
  idempotencyKey?: string;
  /** Who the caller says asked for it (a body's or a batch's `requestedBy`): recorded, never trusted. */
  requestedBy?: string;
  reason?: string;
  creditApplicationId?: string;
}

export interface LedgerQuery {
  provider?: Provider;
  /** With `provider`: one target, written as `targetKey` writes it (or the bare id). */
  target?: string;
  creditApplicationId?: string;
  limit?: number;
  cursor?: string;
}

/** A running batch's progress: targets with an outcome other than `failed` so far, per provider. */
export type Progress = Partial<Record<Provider, number>>;

export interface Ledger {
  record(entries: LedgerEntry[]): Promise<void>;
  /** Targets settled so far by one batch execution, per provider (attempts that failed and are retried excluded). */
  progress(executionId: string): Promise<Progress>;
  /** The latest `canceled` or `already_canceled` entry for a target, if any. */
  lastCancellation(provider: Provider, target: Record<string, string>): Promise<LedgerEntry | undefined>;
  query(query: LedgerQuery): Promise<{ entries: LedgerEntry[]; cursor?: string }>;
}

/** Records outcomes that already happened: a failed write must not undo them, so the entries go to the error
 * log in full instead, where they are not lost. Every string is scrubbed of secret values first: the caller's own
 * words (reason, requestedBy) may hold one as much as a provider's answer. */
export async function recordOrLog(ledger: Ledger, entries: LedgerEntry[]): Promise<void> {
  await ledger
    .record(scrub(entries))
    .catch((error) => log.error('audit ledger write failed; entries follow', { error, entries }));
}

/** Distinct targets per provider with an outcome other than `failed`. */
export function countSettled(entries: { provider: Provider; outcome: string; key: string }[]): Progress {
  const settled = new Map<Provider, Set<string>>();
  for (const e of entries) {
    if (e.outcome === 'failed') continue;
    const set = settled.get(e.provider) ?? new Set<string>();
    set.add(e.key);
    settled.set(e.provider, set);
  }
  return Object.fromEntries([...settled].map(([p, set]) => [p, set.size]));
}

/** A stable key for a target: its id fields in a fixed order ("billingRequestId=BRQ123"). */
export function targetKey(target: Record<string, string>): string {
  return Object.keys(target)
    .sort()
    .map((k) => `${k}=${target[k]}`)
    .join('&');
}

/** Whether a stored target matches a query's target: the full key, or any one of its id values. */
export function targetMatches(target: Record<string, string>, wanted: string): boolean {
  return targetKey(target) === wanted || Object.values(target).includes(wanted);
}

export class MemoryLedger implements Ledger {
  readonly entries: LedgerEntry[] = [];
  /** The latest `canceled`/`already_canceled` entry per provider and target, so the lookup is not a scan. */
  private readonly cancellations = new Map<string, LedgerEntry>();

  async record(entries: LedgerEntry[]): Promise<void> {
    for (const e of entries) {
      this.entries.push(e);
      if (isCanceled(e)) this.cancellations.set(`${e.provider} ${targetKey(e.target)}`, e);
    }
  }

  async progress(executionId: string): Promise<Progress> {
    return countSettled(
      this.entries
        .filter((e) => e.executionId === executionId)
        .map((e) => ({ provider: e.provider, outcome: e.outcome, key: targetKey(e.target) })),
    );
  }

  async lastCancellation(provider: Provider, target: Record<string, string>): Promise<LedgerEntry | undefined> {
    return this.cancellations.get(`${provider} ${targetKey(target)}`);
  }

  async query(query: LedgerQuery): Promise<{ entries: LedgerEntry[]; cursor?: string }> {
    const matches = this.entries
      .filter(
        (e) =>
          (!query.provider || e.provider === query.provider) &&
          (!query.target || targetMatches(e.target, query.target)) &&
          (!query.creditApplicationId || e.creditApplicationId === query.creditApplicationId),
      )
      .sort((a, b) => (a.at < b.at ? 1 : -1));
    if (query.cursor !== undefined && !/^\d{1,9}$/.test(query.cursor)) throw invalidCursor();
    const start = query.cursor ? Number(query.cursor) : 0;
    const limit = query.limit ?? 50;
    const page = matches.slice(start, start + limit);
    return { entries: page, ...(start + limit < matches.length ? { cursor: String(start + limit) } : {}) };
  }
}
