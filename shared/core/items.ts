/**
 * What can be cancelled, as a batch item (DESIGN.md 3.3, a contract) and as a Step Functions task input.
 * The API routes, the batch input, expirations and the task inputs all validate with these schemas, and the
 * OpenAPI document is generated from them, so there is one definition of each field.
 */
import * as z from 'zod/mini';

/** 8-4-4-4-12 hex. Lenient on the version and variant bits: ids from sandboxes and tests are not always RFC 9562. */
export const Uuid = z.guid('must be a uuid (8-4-4-4-12 hex digits)');
/** Free text: trimmed, not empty, at most `max` characters. */
export const text = (max: number) => z.string().check(z.trim(), z.minLength(1, 'must not be empty'), z.maxLength(max));
const safeId = (max: number) =>
  z.string().check(z.regex(/^[A-Za-z0-9_-]+$/, 'may hold only letters, digits, "-" and "_"'), z.maxLength(max));

export const AucoCode = z
  .string()
  .check(z.regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be an Auco document code (letters and digits)'));
export const BillingRequestId = z
  .string()
  .check(z.regex(/^BRQ[A-Za-z0-9_-]{1,60}$/, 'must be a GoCardless billing request id (BRQ...)'));
export const TRUEWORK_REASONS = ['immediate', 'high-turnaround-time', 'competitor', 'wrong-info', 'other'] as const;
export const TrueworkReason = z.enum(TRUEWORK_REASONS, {
  error: `must be one of ${TRUEWORK_REASONS.join(', ')} ("no-match" is output-only)`,
});

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

export const MyCreditAppItem = z.strictObject({
  provider: z.literal('mycreditapp'),
  orgId: Uuid,
  requestId: Uuid,
  requesterOrganizationId: Uuid,
  targetOrganizationId: Uuid,
});

export const AucoItem = z.strictObject({
  provider: z.literal('auco'),
  code: AucoCode,
  /** Who cancels, for Auco's audit (an email of a user of the Auco company); defaults to the batch's `requestedBy`. */
  email: z.optional(z.email('must be an email address')),
  /** Sent to the signers; defaults to the batch's `reason`. */
  message: z.optional(text(1000)),
});

export const TrueworkItem = z.strictObject({
  provider: z.literal('truework'),
  orderId: safeId(128),
  /** Defaults to "other", with the batch's `reason` as the details. */
  reason: z.optional(TrueworkReason),
  details: z.optional(z.nullable(z.string().check(z.maxLength(1000)))),
});

export const GoCardlessItem = z.strictObject({
  provider: z.literal('gocardless'),
  billingRequestId: BillingRequestId,
  metadata: z.optional(GoCardlessMetadata),
});

export const BatchItem = z.discriminatedUnion('provider', [MyCreditAppItem, AucoItem, TrueworkItem, GoCardlessItem], {
  error: 'must name a provider: mycreditapp, auco, truework or gocardless',
});
export type BatchItem = z.infer<typeof BatchItem>;
export type MyCreditAppItem = z.infer<typeof MyCreditAppItem>;
export type AucoItem = z.infer<typeof AucoItem>;
export type TrueworkItem = z.infer<typeof TrueworkItem>;
export type GoCardlessItem = z.infer<typeof GoCardlessItem>;

/** The batch a task belongs to, as the state machine passes it (one object, so optional fields stay optional). */
export const BatchTaskContext = z.strictObject({
  reason: z.optional(text(1000)),
  requestedBy: z.optional(text(320)),
  creditApplicationId: z.optional(z.string()),
  executionId: z.optional(z.string()),
  /** What started the execution, as Prepare read it from our own start records (shared/core/execution-starts.ts). */
  startedBy: z.optional(
    z.strictObject({
      by: z.enum(['api', 'schedule', 'console']),
      principal: z.optional(z.string()),
      schedule: z.optional(z.string()),
    }),
  ),
});

/** Fields every task input may carry besides its item: who asked, why, and the keys that tie it to a batch. */
export const TaskContext = {
  reason: z.optional(text(1000)),
  requestedBy: z.optional(text(320)),
  /** Stable per logical cancellation: a retried state reuses it, so nothing is cancelled twice. */
  idempotencyKey: z.optional(z.string().check(z.minLength(1), z.maxLength(255))),
  executionId: z.optional(z.string()),
  itemId: z.optional(z.string()),
  /** Present when the item is part of a batch: its position in the input, to put outcomes back in order. */
  index: z.optional(z.number().check(z.int(), z.nonnegative())),
  /** An Auco chunk's input positions, one per code. */
  indexes: z.optional(z.array(z.number().check(z.int(), z.nonnegative()))),
  creditApplicationId: z.optional(z.string()),
  batch: z.optional(BatchTaskContext),
};
