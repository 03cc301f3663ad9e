/** mycreditapp's batch item and target fields (DESIGN.md 3.3, a contract): the API route, the batch input and the task input validate with these, and the OpenAPI document is generated from them. */
import * as z from 'zod/mini';
import { Uuid } from '#shared/core/items.ts';

export const MyCreditAppItem = z.strictObject({
  provider: z.literal('mycreditapp'),
  orgId: Uuid,
  requestId: Uuid,
  requesterOrganizationId: Uuid,
  targetOrganizationId: Uuid,
});
export type MyCreditAppItem = z.infer<typeof MyCreditAppItem>;
