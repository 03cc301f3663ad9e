/** GoCardless's batch item and target fields (DESIGN.md 3.3, a contract): the API route, the batch input and the task input validate with these, and the OpenAPI document is generated from them. */
import * as z from 'zod/mini';

export const BillingRequestId = z
  .string()
  .check(z.regex(/^BRQ[A-Za-z0-9_-]{1,60}$/, 'must be a GoCardless billing request id (BRQ...)'));

/** GoCardless metadata: at most 3 keys, keys up to 50 characters, values up to 500 (PROVIDERS.md 4.1).
 * One check reports every problem at once, instead of stopping at the first. */
export const GoCardlessMetadata = z.record(z.string(), z.string()).check(
  z.check<Record<string, string>>((ctx) => {
    const entries = Object.entries(ctx.value);
    if (entries.length > 3)
      ctx.issues.push({ code: 'custom', message: 'metadata holds at most 3 keys', input: ctx.value });
    for (const [key, value] of entries) {
      if (key.length > 50 || key.length === 0) {
        ctx.issues.push({ code: 'custom', message: 'metadata keys are 1 to 50 characters', path: [key], input: key });
      }
      if (value.length > 500)
        ctx.issues.push({
          code: 'custom',
          message: 'metadata values are at most 500 characters',
          path: [key],
          input: value,
        });
    }
  }),
);

export const GoCardlessItem = z.strictObject({
  provider: z.literal('gocardless'),
  billingRequestId: BillingRequestId,
  metadata: z.optional(GoCardlessMetadata),
});
export type GoCardlessItem = z.infer<typeof GoCardlessItem>;
