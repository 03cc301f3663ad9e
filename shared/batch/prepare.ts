/**
 * Prepare (DESIGN.md 3.3): a validated batch made into the state machine's tasks, duplicates removed, the targets of
 * a provider that takes many per call chunked (its module's `chunk` hook), every task given its idempotency key and the batch its deadline. Pure: the I/O is in
 * `functions/batch-prepare`.
 */
import { InvalidInputError } from '#shared/core/errors.ts';
import type { StartedBy } from '#shared/core/execution-starts.ts';
import type { Provider } from '#shared/core/outcome.ts';
import { type BatchItem, providerModule, REGISTRY } from '#shared/providers/index.ts';
import {
  type BatchRequest,
  DEFAULT_DEADLINE_MS,
  DEFAULT_SKIP_IF_STATUS_IN,
  type Guard,
  MAX_DEADLINE_MS,
} from './input.ts';
import { identity, keyFor } from './keys.ts';

/** A task of the state machine: one item (or a chunk of a provider's targets), its place in the input, its key. */
export interface PreparedTask {
  item: Record<string, unknown> & { provider: Provider };
  /** Input position of a single item. */
  index?: number;
  /** Input positions of a chunk's targets, in its order (Auco: `item.codes`). */
  indexes?: number[];
  /** Stable for this execution and this item: a retried state reuses it, so nothing is cancelled twice. */
  idempotencyKey: string;
}

export interface BatchContext {
  reason: string;
  requestedBy?: string;
  creditApplicationId?: string;
  executionId: string;
  /** What started the execution (Prepare, from shared/core/execution-starts.ts): the ledger's `caller` of every task. */
  startedBy?: StartedBy;
}

export interface Prepared {
  mode: 'inline' | 'manifest';
  batch: BatchContext;
  /** ISO time until which transient failures are retried in rounds. */
  deadline: string;
  guard?: Guard & { skipIfStatusIn: string[] };
  total: number;
  unique: number;
  /** [index, index of the first occurrence] for every duplicate removed. */
  duplicates: [number, number][];
  groups: Record<Provider, PreparedTask[]>;
}

/** The batch's deadline: its own (never more than MAX_DEADLINE_MS after the start), else 24 h after the start. */
export function batchDeadline(request: Pick<BatchRequest, 'deadline'>, startedAt: number): string {
  if (!request.deadline) return new Date(startedAt + DEFAULT_DEADLINE_MS).toISOString();
  const at = Date.parse(request.deadline);
  if (at > startedAt + MAX_DEADLINE_MS)
    throw new InvalidInputError([
      { path: 'deadline', message: `must be at most ${MAX_DEADLINE_MS / 86_400_000} days after the start` },
    ]);
  return new Date(at).toISOString();
}

/** One empty task list per provider. */
export function emptyGroups(): Record<Provider, PreparedTask[]> {
  return Object.fromEntries(REGISTRY.map((p) => [p.name, []])) as unknown as Record<Provider, PreparedTask[]>;
}

/**
 * Prepares a validated batch for the state machine: duplicates removed (the first occurrence wins), the targets of
 * a provider with a `chunk` hook grouped into its calls, every task given its idempotency key.
 */
export function prepareBatch(
  request: BatchRequest,
  items: BatchItem[],
  executionId: string,
  mode: Prepared['mode'],
  startedAt: number = Date.now(),
): Prepared {
  const deadline = batchDeadline(request, startedAt);
  const creditApplicationId = request.creditApplicationId ?? request.guard?.creditApplicationId;
  const batch: BatchContext = {
    reason: request.reason,
    ...(request.requestedBy ? { requestedBy: request.requestedBy } : {}),
    ...(creditApplicationId ? { creditApplicationId } : {}),
    executionId,
  };
  const groups = emptyGroups();
  const seen = new Map<string, number>();
  const duplicates: [number, number][] = [];
  const toChunk = new Map<Provider, { item: BatchItem; index: number }[]>();

  items.forEach((item, index) => {
    const id = identity(item);
    const first = seen.get(id);
    if (first !== undefined) {
      duplicates.push([index, first]);
      return;
    }
    seen.set(id, index);
    if (providerModule(item.provider).chunk) {
      toChunk.set(item.provider, [...(toChunk.get(item.provider) ?? []), { item, index }]);
      return;
    }
    groups[item.provider].push({ item, index, idempotencyKey: keyFor(executionId, id) });
  });

  for (const [provider, mine] of toChunk) {
    const chunk = providerModule(provider).chunk;
    if (chunk)
      groups[provider].push(
        ...(chunk.tasks(mine, request, chunk.size(), (what) => keyFor(executionId, what)) as PreparedTask[]),
      );
  }
  return {
    mode,
    batch,
    deadline,
    ...(request.guard
      ? { guard: { ...request.guard, skipIfStatusIn: request.guard.skipIfStatusIn ?? [...DEFAULT_SKIP_IF_STATUS_IN] } }
      : {}),
    total: items.length,
    unique: seen.size,
    duplicates,
    groups,
  };
}
