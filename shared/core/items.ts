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
/** An id safe in a path segment: letters, digits, "-" and "_", at most `max` characters. */
export const safeId = (max: number) =>
  z.string().check(z.regex(/^[A-Za-z0-9_-]+$/, 'may hold only letters, digits, "-" and "_"'), z.maxLength(max));

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
  /** A chunk's input positions, one per target (a provider that takes many per call). */
  indexes: z.optional(z.array(z.number().check(z.int(), z.nonnegative()))),
  creditApplicationId: z.optional(z.string()),
  batch: z.optional(BatchTaskContext),
};
