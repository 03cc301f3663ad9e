/**
 * Prepare (DESIGN.md 3.3): a validated batch made into the state machine's tasks, duplicates removed, Auco codes
 * chunked, every task given its idempotency key and the batch its deadline. Pure: the I/O is in
 * `functions/batch-prepare`.
 */
import { InvalidInputError } from '#shared/core/errors.ts';
import type { StartedBy } from '#shared/core/execution-starts.ts';
import type { AucoItem, BatchItem } from '#shared/core/items.ts';
import type { Provider } from '#shared/core/outcome.ts';
import {
  type BatchRequest,
  DEFAULT_DEADLINE_MS,
  DEFAULT_SKIP_IF_STATUS_IN,
  type Guard,
  MAX_DEADLINE_MS,
} from './input.ts';
import { identity, keyFor } from './keys.ts';

/** A task of the state machine: one item (or a chunk of Auco codes), its place in the input, its key. */
export interface PreparedTask {
  item: Record<string, unknown> & { provider: Provider };
  /** Input position of a single item. */
  index?: number;
  /** Input positions of an Auco chunk's codes, in the order of `item.codes`. */
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

/**
 * Prepares a validated batch for the state machine: duplicates removed (the first occurrence wins), Auco codes
 * chunked per (message, email) to at most `aucoChunk` per call, every task given its idempotency key.
 */
export function prepareBatch(
  request: BatchRequest,
  items: BatchItem[],
  executionId: string,
  mode: Prepared['mode'],
  aucoChunk: number,
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
  const groups: Record<Provider, PreparedTask[]> = { mycreditapp: [], auco: [], truework: [], gocardless: [] };
  const seen = new Map<string, number>();
  const duplicates: [number, number][] = [];
  const aucoGroups = new Map<string, { message: string; email: string; codes: string[]; indexes: number[] }>();

  items.forEach((item, index) => {
    const id = identity(item);
    const first = seen.get(id);
    if (first !== undefined) {
      duplicates.push([index, first]);
      return;
    }
    seen.set(id, index);
    if (item.provider === 'auco') {
      const auco = item as AucoItem;
      const message = auco.message ?? request.reason;
      const email = auco.email ?? request.requestedBy ?? '';
      const key = `${message}\n${email}`;
      const group = aucoGroups.get(key) ?? { message, email, codes: [], indexes: [] };
      group.codes.push(auco.code);
      group.indexes.push(index);
      aucoGroups.set(key, group);
      return;
    }
    groups[item.provider].push({ item, index, idempotencyKey: keyFor(executionId, id) });
  });

  for (const { message, email, codes, indexes } of aucoGroups.values()) {
    for (let i = 0; i < codes.length; i += aucoChunk) {
      const chunkCodes = codes.slice(i, i + aucoChunk);
      groups.auco.push({
        item: { provider: 'auco', codes: chunkCodes, message, email },
        indexes: indexes.slice(i, i + aucoChunk),
        idempotencyKey: keyFor(executionId, `auco:${chunkCodes.join(',')}`),
      });
    }
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
