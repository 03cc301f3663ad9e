/**
 * Scheduled expirations: when a credit application reaches `expiresAt` without being approved, the batch state
 * machine runs with the guard, re-checks the application, and cancels what is still open. One schedule per credit
 * application (its name is derived from the id), so registering again replaces it.
 */
import * as z from 'zod/mini';
import { DEFAULT_SKIP_IF_STATUS_IN, Guard } from '#shared/batch/input.ts';
import { parseTimestamp } from '#shared/providers/common.ts';
import { text, Uuid } from './items.ts';

/** How far ahead an expiration may be scheduled: a date years away is a mistake, not a plan. */
export const MAX_DAYS_AHEAD = 400;

/** A timestamp (ISO-8601; no timezone means UTC), as epoch milliseconds. */
const Timestamp = z.pipe(
  z
    .string()
    .check(
      z.refine(
        (v) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(v) && Number.isFinite(parseTimestamp(v)),
        'must be an ISO-8601 time such as 2026-12-01T09:00:00Z (no timezone means UTC)',
      ),
    ),
  z.transform((v: string) => parseTimestamp(v)),
);

export const ExpirationRequest = z.strictObject({
  creditApplicationId: Uuid,
  reason: z.optional(text(1000)),
  requestedBy: z.optional(text(320)),
  /** When to cancel; by default the application's own `expires_at`, read through the lookup function. */
  expiresAt: z.optional(Timestamp),
  /** Skip the cancellations when the application is then in one of these statuses (default: approved, finalized). */
  skipIfStatusIn: Guard.shape.skipIfStatusIn,
  requesterOrganizationId: z.optional(Uuid),
  targetOrganizationId: z.optional(Uuid),
  items: z.array(z.unknown()).check(z.minLength(1, 'must hold at least one item to cancel')),
});
export type ExpirationRequest = z.infer<typeof ExpirationRequest>;

/** The schedule of a credit application: one per application, so a new registration replaces the old. */
export function scheduleName(creditApplicationId: string): string {
  return `expire-${creditApplicationId}`;
}

/**
 * The name of the execution a schedule starts: the schedule's name and when it was registered. A repeated delivery
 * of the same schedule (EventBridge Scheduler delivers at least once) names the same execution, so Step Functions
 * starts it once; a new registration (a new expiry) names a new one. At most 80 characters, as Step Functions
 * requires: `expire-<uuid>-<registration time, base 36>`.
 */
export function executionNameFor(schedule: string, registeredAt: number): string {
  return `${schedule}-${registeredAt.toString(36)}`;
}

/** EventBridge Scheduler's universal target for Step Functions StartExecution: unlike the templated target (the
 * state machine's ARN), it takes StartExecution's own parameters, the execution's `Name` among them. */
export function startExecutionTarget(stateMachineArn: string): string {
  const partition = stateMachineArn.split(':')[1] || 'aws';
  return `arn:${partition}:scheduler:::aws-sdk:sfn:startExecution`;
}

/** The parameters a schedule's universal target passes to StartExecution. */
export interface StartExecutionParameters {
  StateMachineArn: string;
  Name: string;
  /** The batch, as a JSON string. */
  Input: string;
}

/** EventBridge Scheduler's one-time expression, in UTC to the second: `at(2026-12-01T09:00:00)`. */
export function atExpression(epochMs: number): string {
  return `at(${new Date(Math.ceil(epochMs / 1000) * 1000).toISOString().slice(0, 19)})`;
}

export function parseAtExpression(expression: string): number | undefined {
  const inner = /^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$/.exec(expression)?.[1];
  return inner ? Date.parse(`${inner}Z`) : undefined;
}

/** Why `expiresAt` cannot be scheduled, or undefined. A time in the past is fine: the batch runs now. */
export function expiresAtProblem(epochMs: number, now = Date.now()): string | undefined {
  if (epochMs - now > MAX_DAYS_AHEAD * 86_400_000) return `must be within ${MAX_DAYS_AHEAD} days from now`;
  return undefined;
}

/** The batch the schedule starts: the items, guarded by the application's status at the time it fires. */
export function expirationBatch(request: ExpirationRequest, items: unknown): Record<string, unknown> {
  return {
    reason: request.reason ?? 'Credit application expired',
    ...(request.requestedBy ? { requestedBy: request.requestedBy } : {}),
    creditApplicationId: request.creditApplicationId,
    guard: {
      creditApplicationId: request.creditApplicationId,
      skipIfStatusIn: request.skipIfStatusIn ?? [...DEFAULT_SKIP_IF_STATUS_IN],
      ...(request.requesterOrganizationId ? { requesterOrganizationId: request.requesterOrganizationId } : {}),
      ...(request.targetOrganizationId ? { targetOrganizationId: request.targetOrganizationId } : {}),
    },
    ...(Array.isArray(items) ? { items } : { manifest: items }),
  };
}
