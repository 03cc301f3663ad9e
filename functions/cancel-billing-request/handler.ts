/** Lambda: cancel a GoCardless billing request (POST /v1/gocardless/billing-requests/{billingRequestId}/cancel). */
import * as z from 'zod/mini';
import { TaskContext } from '#shared/core/items.ts';
import {
  cancelRun,
  IdempotencyHeaders,
  outcomeReply,
  taskResult,
  type Why,
  WhyFields,
  whyFromTask,
} from '#shared/handler/cancel-handler.ts';
import { defineHandler } from '#shared/handler/middleware.ts';
import {
  type CancelBillingRequestInput,
  cancelBillingRequest,
} from '#shared/providers/gocardless/cancel-billing-request.ts';
import { BillingRequestId, GoCardlessItem, GoCardlessMetadata } from '#shared/providers/gocardless/items.ts';

type Input = { cancel: CancelBillingRequestInput; why: Why };

export const Api = z.object({
  path: z.object({ billingRequestId: BillingRequestId }),
  headers: IdempotencyHeaders,
  body: z.optional(z.strictObject({ metadata: z.optional(GoCardlessMetadata), ...WhyFields })),
});
const Task = z.strictObject({ item: GoCardlessItem, ...TaskContext });

export const handler = defineHandler<Input, Awaited<ReturnType<typeof cancelBillingRequest>>>({
  name: 'cancel-billing-request',
  api: {
    schema: Api,
    toInput: (p: z.infer<typeof Api>) => ({
      cancel: { billingRequestId: p.path.billingRequestId, ...(p.body?.metadata ? { metadata: p.body.metadata } : {}) },
      why: { idempotencyKey: p.headers['idempotency-key'], reason: p.body?.reason, requestedBy: p.body?.requestedBy },
    }),
  },
  task: {
    schema: Task,
    toInput: (p: z.infer<typeof Task>) => ({
      cancel: { billingRequestId: p.item.billingRequestId, ...(p.item.metadata ? { metadata: p.item.metadata } : {}) },
      why: whyFromTask(p),
    }),
  },
  idempotent: true,
  run: cancelRun(cancelBillingRequest, 'gocardless'),
  reply: outcomeReply,
  taskResult,
});
