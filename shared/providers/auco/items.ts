/** Auco's batch item and target fields (DESIGN.md 3.3, a contract): the API route, the batch input and the task input validate with these, and the OpenAPI document is generated from them. */
import * as z from 'zod/mini';
import { text } from '#shared/core/items.ts';

export const AucoCode = z
  .string()
  .check(z.regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be an Auco document code (letters and digits)'));

export const AucoItem = z.strictObject({
  provider: z.literal('auco'),
  code: AucoCode,
  /** Who cancels, for Auco's audit (an email of a user of the Auco company); defaults to the batch's `requestedBy`. */
  email: z.optional(z.email('must be an email address')),
  /** Sent to the signers; defaults to the batch's `reason`. */
  message: z.optional(text(1000)),
});

export type AucoItem = z.infer<typeof AucoItem>;
