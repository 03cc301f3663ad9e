/** Lambda: cancel a mycreditapp document request
 * (POST /v1/mycreditapp/organizations/{orgId}/document-requests/{requestId}/cancel). */
import * as z from 'zod/mini';
import { needs } from '#shared/config.ts';
import { TaskContext, Uuid } from '#shared/core/items.ts';
import { defineCancelHandler, IdempotencyHeaders, WhyFields, whyFromTask } from '#shared/handler/cancel-handler.ts';
import { cancelDocumentRequest } from '#shared/providers/mycreditapp/cancel-document-request.ts';
import { MyCreditAppItem } from '#shared/providers/mycreditapp/items.ts';

/** mycreditapp's organization headers, passed through to it (DESIGN.md 3.3). */
export const MyCreditAppHeaders = z.looseObject({
  ...IdempotencyHeaders.shape,
  'requester-organization-id': z.guid('must be a uuid (your organization)'),
  'target-organization-id': z.guid('must be a uuid (the organization the request targets)'),
});

needs('IDEMPOTENCY_TABLE', 'LEDGER_TABLE', 'RATE_BUDGET_TABLE');

export const Api = z.object({
  path: z.object({ orgId: Uuid, requestId: Uuid }),
  headers: MyCreditAppHeaders,
  body: z.optional(z.strictObject(WhyFields)),
});
const Task = z.strictObject({ item: MyCreditAppItem, ...TaskContext });

export const handler = defineCancelHandler({
  name: 'cancel-document-request',
  provider: 'mycreditapp',
  operation: cancelDocumentRequest,
  api: {
    schema: Api,
    toInput: (p) => ({
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
    toInput: ({ item, ...p }) => ({
      cancel: {
        orgId: item.orgId,
        requestId: item.requestId,
        requesterOrganizationId: item.requesterOrganizationId,
        targetOrganizationId: item.targetOrganizationId,
      },
      why: whyFromTask(p),
    }),
  },
});
