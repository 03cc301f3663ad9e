/** Lambda: cancel a mycreditapp document request
 * (POST /v1/mycreditapp/organizations/{orgId}/document-requests/{requestId}/cancel). */
import * as z from 'zod/mini';
import { TaskContext, Uuid } from '#shared/core/items.ts';
import type { Outcome } from '#shared/core/outcome.ts';
import {
  cancelRun,
  MyCreditAppHeaders,
  outcomeReply,
  taskResult,
  type Why,
  WhyFields,
  whyFromTask,
} from '#shared/handler/cancel-handler.ts';
import { defineHandler } from '#shared/handler/middleware.ts';
import {
  type CancelDocumentRequestInput,
  cancelDocumentRequest,
} from '#shared/providers/mycreditapp/cancel-document-request.ts';
import { MyCreditAppItem } from '#shared/providers/mycreditapp/items.ts';

type Input = { cancel: CancelDocumentRequestInput; why: Why };

export const Api = z.object({
  path: z.object({ orgId: Uuid, requestId: Uuid }),
  headers: MyCreditAppHeaders,
  body: z.optional(z.strictObject(WhyFields)),
});
const Task = z.strictObject({ item: MyCreditAppItem, ...TaskContext });

export const handler = defineHandler<Input, Outcome>({
  name: 'cancel-document-request',
  api: {
    schema: Api,
    toInput: (p: z.infer<typeof Api>) => ({
      cancel: {
        orgId: p.path.orgId,
        requestId: p.path.requestId,
        requesterOrganizationId: p.headers['requester-organization-id'],
        targetOrganizationId: p.headers['target-organization-id'],
      },
      why: { idempotencyKey: p.headers['idempotency-key'], reason: p.body?.reason, requestedBy: p.body?.requestedBy },
    }),
  },
  task: {
    schema: Task,
    toInput: ({ item, ...p }: z.infer<typeof Task>) => ({
      cancel: {
        orgId: item.orgId,
        requestId: item.requestId,
        requesterOrganizationId: item.requesterOrganizationId,
        targetOrganizationId: item.targetOrganizationId,
      },
      why: whyFromTask(p),
    }),
  },
  idempotent: true,
  run: cancelRun(cancelDocumentRequest, 'mycreditapp'),
  reply: outcomeReply,
  taskResult,
});
