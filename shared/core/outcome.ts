/**
 * The outcome of one cancellation (DESIGN.md 3.1, a contract): every operation, from every entry point,
 * produces this record, and this file is the one place that maps an outcome to an HTTP status.
 */
import * as z from 'zod/mini';

export const PROVIDERS = ['mycreditapp', 'auco', 'truework', 'gocardless'] as const;
export type Provider = (typeof PROVIDERS)[number];

export const OPERATIONS = [
  'cancel-document-request',
  'get-credit-application',
  'cancel-signing-processes',
  'cancel-verification-order',
  'cancel-billing-request',
] as const;
export type Operation = (typeof OPERATIONS)[number];

export const OUTCOMES = ['canceled', 'already_canceled', 'not_cancelable', 'not_found', 'rejected', 'failed'] as const;
export type OutcomeKind = (typeof OUTCOMES)[number];

/** Why a `failed` outcome failed; it decides 503 or 504 and how Step Functions retries it. */
export const FAILURES = ['rate_limited', 'transient', 'timeout'] as const;
export type Failure = (typeof FAILURES)[number];

export const OutcomeSchema = z.object({
  provider: z.enum(PROVIDERS),
  operation: z.enum(OPERATIONS),
  target: z.record(z.string(), z.string()),
  outcome: z.enum(OUTCOMES),
  providerStatus: z.optional(z.string()),
  httpStatus: z.optional(z.number()),
  attempts: z.number(),
  durationMs: z.number(),
  providerRequestId: z.optional(z.string()),
  message: z.optional(z.string()),
  failure: z.optional(z.enum(FAILURES)),
  retryAfterSeconds: z.optional(z.number()),
  details: z.optional(z.record(z.string(), z.unknown())),
});
export type Outcome = z.infer<typeof OutcomeSchema>;

/** The API status for an outcome (DESIGN.md 3.1). */
export function httpStatusFor(outcome: Pick<Outcome, 'outcome' | 'failure'>): number {
  switch (outcome.outcome) {
    case 'canceled':
    case 'already_canceled':
      return 200;
    case 'not_cancelable':
      return 409;
    case 'not_found':
      return 404;
    case 'rejected':
      return 502;
    case 'failed':
      return outcome.failure === 'timeout' ? 504 : 503;
  }
}

/** Both idempotent successes: the work is no longer in flight because of a cancellation. */
export function isCanceled(outcome: Pick<Outcome, 'outcome'>): boolean {
  return outcome.outcome === 'canceled' || outcome.outcome === 'already_canceled';
}

/** The status for several outcomes answered together (Auco codes): the shared status, or 207 when they differ. */
export function httpStatusForAll(outcomes: readonly Pick<Outcome, 'outcome' | 'failure'>[]): number {
  const statuses = new Set(outcomes.map(httpStatusFor));
  return statuses.size === 1 ? (statuses.values().next().value as number) : 207;
}

/** Counts per outcome, with every outcome present (zeros included) so dashboards and tests read the same keys. */
export function countOutcomes(outcomes: readonly Pick<Outcome, 'outcome'>[]): Record<OutcomeKind, number> {
  const counts = Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<OutcomeKind, number>;
  for (const o of outcomes) counts[o.outcome]++;
  return counts;
}
