/** Lambda: cancel a Truework verification order (POST /v1/truework/orders/{orderId}/cancel). */
import * as z from 'zod/mini';
import { needs } from '#shared/config.ts';
import { TaskContext } from '#shared/core/items.ts';
import { defineCancelHandler, IdempotencyHeaders, WhyFields, whyFromTask } from '#shared/handler/cancel-handler.ts';
import { cancelVerificationOrder } from '#shared/providers/truework/cancel-verification-order.ts';
import { TrueworkItem, TrueworkReason } from '#shared/providers/truework/items.ts';

needs('IDEMPOTENCY_TABLE', 'LEDGER_TABLE', 'RATE_BUDGET_TABLE');

export const Api = z.object({
  path: z.object({ orderId: TrueworkItem.shape.orderId }),
  headers: IdempotencyHeaders,
  body: z.strictObject({
    /** Truework's cancellation reason (validated here, before anything is sent). */
    reason: TrueworkReason,
    details: z.optional(z.nullable(z.string().check(z.maxLength(1000)))),
    requestedBy: WhyFields.requestedBy,
  }),
});
const Task = z.strictObject({ item: TrueworkItem, ...TaskContext });

export const handler = defineCancelHandler({
  name: 'cancel-verification-order',
  provider: 'truework',
  operation: cancelVerificationOrder,
  api: {
    schema: Api,
    toInput: (p) => ({
      cancel: {
        orderId: p.path.orderId,
        reason: p.body.reason,
        ...(p.body.details !== undefined ? { details: p.body.details } : {}),
      },
      why: {
        idempotencyKey: p.headers['idempotency-key'],
        reason: p.body.details ?? undefined,
        requestedBy: p.body.requestedBy,
      },
    }),
  },
  task: {
    schema: Task,
    // In a batch the reason defaults to "other", with the batch's reason as the details.
    toInput: (p) => ({
      cancel: {
        orderId: p.item.orderId,
        reason: p.item.reason ?? 'other',
        details: p.item.details ?? p.reason ?? p.batch?.reason ?? null,
      },
      why: whyFromTask(p),
    }),
  },
});
