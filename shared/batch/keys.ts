/**
 * What identifies a batch item and its task: the provider's target, the item's identity (two items with the same one
 * are the same cancellation), and the idempotency key of a task, stable for an execution.
 */
import { createHash } from 'node:crypto';
import type { BatchItem } from '#shared/core/items.ts';
import type { Operation, Provider } from '#shared/core/outcome.ts';
import type { PreparedTask } from './prepare.ts';

export const OPERATION_OF: Record<Provider, Operation> = {
  mycreditapp: 'cancel-document-request',
  auco: 'cancel-signing-processes',
  truework: 'cancel-verification-order',
  gocardless: 'cancel-billing-request',
};

/** What makes two items the same cancellation. */
export function identity(item: BatchItem): string {
  switch (item.provider) {
    case 'mycreditapp':
      return `mycreditapp:${item.orgId}/${item.requestId}`;
    case 'auco':
      return `auco:${item.code}`;
    case 'truework':
      return `truework:${item.orderId}`;
    case 'gocardless':
      return `gocardless:${item.billingRequestId}`;
  }
}

export function targetOf(item: BatchItem | PreparedTask['item']): Record<string, string> {
  const i = item as Record<string, string>;
  switch (item.provider) {
    case 'mycreditapp':
      return { orgId: i.orgId ?? '', requestId: i.requestId ?? '' };
    case 'auco':
      return { code: i.code ?? '' };
    case 'truework':
      return { orderId: i.orderId ?? '' };
    case 'gocardless':
      return { billingRequestId: i.billingRequestId ?? '' };
  }
}

/** A task's idempotency key: stable for this execution and this item (or chunk). */
export const keyFor = (executionId: string, what: string) =>
  `batch-${createHash('sha256').update(`${executionId}\n${what}`).digest('hex').slice(0, 40)}`;
