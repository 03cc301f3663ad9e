/**
 * What identifies a batch item and its task: the provider's target (its module's `targetFields`), the item's
 * identity (two items with the same one are the same cancellation), and a task's idempotency key, stable for an
 * execution.
 */
import { createHash } from 'node:crypto';
import type { Operation, Provider } from '#shared/core/outcome.ts';
import { type BatchItem, providerModule } from '#shared/providers/index.ts';

/** The operation a provider's batch tasks run: its cancel function. */
export function operationOf(provider: Provider): Operation {
  return providerModule(provider).functions[0].fn;
}

/** The target of an item: its provider's target fields. */
export function targetOf(item: BatchItem | (Record<string, unknown> & { provider: Provider })): Record<string, string> {
  const fields = providerModule(item.provider).targetFields;
  return Object.fromEntries(fields.map((f) => [f, String((item as Record<string, unknown>)[f] ?? '')]));
}

/** What makes two items the same cancellation. */
export function identity(item: BatchItem): string {
  return `${item.provider}:${Object.values(targetOf(item)).join('/')}`;
}

/** A task's idempotency key: stable for this execution and this item (or chunk). */
export const keyFor = (executionId: string, what: string) =>
  `batch-${createHash('sha256').update(`${executionId}\n${what}`).digest('hex').slice(0, 40)}`;
