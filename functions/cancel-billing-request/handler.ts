/** Lambda: cancel a GoCardless billing request (POST /v1/gocardless/billing-requests/{billingRequestId}/cancel). */
import * as z from 'zod/mini';
import { needs } from '#shared/config.ts';
import { TaskContext } from '#shared/core/items.ts';
import { defineCancelHandler, IdempotencyHeaders, WhyFields, whyFromTask } from '#shared/handler/cancel-handler.ts';
import { cancelBillingRequest } from '#shared/providers/gocardless/cancel-billing-request.ts';
import { BillingRequestId, GoCardlessItem, GoCardlessMetadata } from '#shared/providers/gocardless/items.ts';

needs('IDEMPOTENCY_TABLE', 'LEDGER_TABLE', 'RATE_BUDGET_TABLE');

export const Api = z.object({
  path: z.object({ billingRequestId: BillingRequestId }),
  headers: IdempotencyHeaders,
  body: z.optional(z.strictObject({ metadata: z.optional(GoCardlessMetadata), ...WhyFields })),
});
const Task = z.strictObject({ item: GoCardlessItem, ...TaskContext });

export const handler = defineCancelHandler({
  name: 'cancel-billing-request',
  provider: 'gocardless',
  operation: cancelBillingRequest,
  api: {
    schema: Api,
    toInput: (p) => ({
      cancel: { billingRequestId: p.path.billingRequestId, ...(p.body?.metadata ? { metadata: p.body.metadata } : {}) },
      why: { idempotencyKey: p.headers['idempotency-key'], reason: p.body?.reason, requestedBy: p.body?.requestedBy },
    }),
  },
  task: {
    schema: Task,
    toInput: (p) => ({
      cancel: { billingRequestId: p.item.billingRequestId, ...(p.item.metadata ? { metadata: p.item.metadata } : {}) },
      why: whyFromTask(p),
    }),
  },
});
