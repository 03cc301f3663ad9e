/** Truework's batch item and target fields (DESIGN.md 3.3, a contract): the API route, the batch input and the task input validate with these, and the OpenAPI document is generated from them. */
import * as z from 'zod/mini';
import { safeId } from '#shared/core/items.ts';

export const TRUEWORK_REASONS = ['immediate', 'high-turnaround-time', 'competitor', 'wrong-info', 'other'] as const;
export const TrueworkReason = z.enum(TRUEWORK_REASONS, {
  error: `must be one of ${TRUEWORK_REASONS.join(', ')} ("no-match" is output-only)`,
});

export const TrueworkItem = z.strictObject({
  provider: z.literal('truework'),
  orderId: safeId(128),
  /** Defaults to "other", with the batch's `reason` as the details. */
  reason: z.optional(TrueworkReason),
  details: z.optional(z.nullable(z.string().check(z.maxLength(1000)))),
});
export type TrueworkItem = z.infer<typeof TrueworkItem>;
