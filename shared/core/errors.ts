/**
 * Typed errors. Errors are values where callers must decide (an outcome), exceptions where they cannot:
 * a misconfiguration, invalid input, or a transient failure handed to Step Functions to retry later.
 *
 * `name` is what Step Functions matches in Retry/Catch (`ErrorEquals`), so the names are part of the
 * state-machine contract (`infra/batch-state-machine.ts` builds its Retry lists from RETRYABLE_ERROR_NAME).
 */
import type { Failure } from './outcome.ts';

/** One problem with an input, with the path of the field it concerns ("items[3].orderId"). */
export interface InputIssue {
  path: string;
  message: string;
}

/** Problems listed in an answer or an error: the first ones and a count, so a huge bad input gets a small answer. */
export const MAX_LISTED_ISSUES = 100;

/** The first MAX_LISTED_ISSUES issues and how many there are in all. */
export function listedIssues(issues: InputIssue[], count = issues.length): { issues: InputIssue[]; count: number } {
  return { issues: issues.slice(0, MAX_LISTED_ISSUES), count: Math.max(count, issues.length) };
}

/** "a: is required; b: must be ..." for the listed issues, and how many more there are. */
export function describeIssues(issues: InputIssue[], count: number, separator = ' '): string {
  const listed = issues.map((i) => (i.path ? `${i.path}${separator}${i.message}` : i.message)).join('; ');
  return count > issues.length ? `${listed}; and ${count - issues.length} more problem(s)` : listed;
}

/** Input that will never be valid as sent: 400 at the API, a non-retryable task error in Step Functions. */
export class InvalidInputError extends Error {
  override readonly name = 'Input.Invalid';
  /** The first MAX_LISTED_ISSUES problems. */
  readonly issues: InputIssue[];
  /** How many problems there are in all. */
  readonly issueCount: number;
  constructor(issues: InputIssue[], summary = 'Invalid input', count = issues.length) {
    const listed = listedIssues(issues, count);
    super(`${summary}: ${describeIssues(listed.issues, listed.count, ': ')}`);
    this.issues = listed.issues;
    this.issueCount = listed.count;
  }
}

/** The deployment is misconfigured (a secret missing, unreadable or malformed). Names the secret and field, never a value. */
export class ConfigurationError extends Error {
  override readonly name = 'Config.Invalid';
}

/** The provider asked us to wait longer than this invocation can: Step Functions retries later. */
export class RateLimitedError extends Error {
  override readonly name = 'Provider.RateLimited';
  readonly retryAfterMs: number | undefined;
  readonly status: number;
  readonly attempts: number;
  readonly ambiguous: boolean;
  constructor(opts: { retryAfterMs: number | undefined; status: number; attempts: number; ambiguous: boolean }) {
    const wait =
      opts.retryAfterMs === undefined ? 'no wait given' : `retry after ${Math.ceil(opts.retryAfterMs / 1000)} s`;
    super(`Rate limited by the provider (HTTP ${opts.status}, ${wait}, ${opts.attempts} attempt(s))`);
    this.retryAfterMs = opts.retryAfterMs;
    this.status = opts.status;
    this.attempts = opts.attempts;
    this.ambiguous = opts.ambiguous;
  }
}

/** Transient failures (5xx, resets, malformed answers) outlasted the in-Lambda retry budget. */
export class TransientError extends Error {
  override readonly name = 'Provider.Transient';
  readonly status: number | undefined;
  readonly attempts: number;
  readonly ambiguous: boolean;
  readonly timeout: boolean;
  constructor(message: string, opts: { status?: number; attempts: number; ambiguous: boolean; timeout?: boolean }) {
    super(message);
    this.status = opts.status;
    this.attempts = opts.attempts;
    this.ambiguous = opts.ambiguous;
    this.timeout = opts.timeout ?? false;
  }
}

/** The error a task raises for each kind of `failed` outcome: the names Step Functions retries (the batch
 * definition's Retry lists are built from these), never invalid input or configuration. */
export const RETRYABLE_ERROR_NAME = {
  rate_limited: 'Provider.RateLimited',
  transient: 'Provider.Transient',
  timeout: 'Provider.Timeout',
} as const satisfies Record<Failure, string>;

/** Thrown in a Step Functions task for a `failed` outcome, so the state machine retries it with backoff. */
export class TaskRetryableError extends Error {
  constructor(name: (typeof RETRYABLE_ERROR_NAME)[Failure], message: string) {
    super(message);
    this.name = name;
    // No trace: the message is the outcome, and the state's Cause must stay small (256 KB per inline batch).
    this.stack = '';
  }
}

/** A batch task refused before any request: the provider's circuit is open and this call is not its probe. Not
 * retried within the round; the batch keeps the item for its next round (shared/batch/rounds.ts). */
export class CircuitOpenError extends Error {
  override readonly name = 'Provider.CircuitOpen';
  constructor(message: string) {
    super(message);
    this.stack = '';
  }
}
