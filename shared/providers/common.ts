/**
 * What the provider adapters share: reading answers defensively, and the shape of a classification.
 * Adapters are pure: they build requests and classify answers; `shared/core/cancel.ts` does the I/O.
 */

import type { Outcome, OutcomeKind } from '#shared/core/outcome.ts';
import type { HttpResponse, RawResponse } from '#shared/http/types.ts';
import { redact } from '#shared/observability/log.ts';

/** The answer's body as JSON, or undefined when it is empty or not JSON (an HTML error page, a truncated body). */
export function parseJson(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export function asObject(value: unknown): Record<string, unknown> | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

export function asString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** A 2xx whose body is not JSON is retried: the change may have happened, and a retry will say so. */
export function malformedSuccess(response: RawResponse): string | undefined {
  return response.status >= 200 && response.status < 300 && asObject(parseJson(response.body)) === undefined
    ? `malformed answer (HTTP ${response.status}, not a JSON object)`
    : undefined;
}

/** What a 404 that is not the provider's own "no such resource" answer means: the request reached something other
 * than the provider's route (a proxy's HTML page, an empty answer, another API), so the configuration is wrong,
 * not the resource. `rejected`, never `not_found`: a wrong `baseUrl` must not turn a batch into final "not found"s. */
export function misrouted(
  provider: string,
  response: RawResponse,
  check: string,
): Extract<Classification, { kind: 'decided' }> {
  const json = parseJson(response.body);
  const what =
    json === undefined
      ? response.body.trim()
        ? `a non-JSON body (${brief(response.body, 120)})`
        : 'an empty body'
      : `a body that is not its error format (${brief(response.body, 120)})`;
  return decided('rejected', {
    message: `${provider} answered 404 with ${what}: the route was not found, not the resource. Check ${check}`,
  });
}

/** The provider's request id from the usual headers, for support tickets. */
export function requestIdOf(response: Pick<RawResponse, 'headers'>): string | undefined {
  return response.headers['x-request-id'] ?? response.headers['request-id'] ?? response.headers['x-correlation-id'];
}

/** Where requests go: the secret's `baseUrl` (a sandbox, a simulator), else the provider's live URL; no trailing `/`. */
export function rootOf(secret: { baseUrl?: string | undefined }, liveUrl: string): string {
  return (secret.baseUrl ?? liveUrl).replace(/\/+$/, '');
}

/** What every outcome records from the provider's final answer. `requestId` overrides the headers' (GoCardless
 * puts its own in the error body). */
export function answerFields(
  response: Pick<HttpResponse, 'status' | 'headers' | 'attempts' | 'ambiguous'>,
  requestId = requestIdOf(response),
): { httpStatus: number; attempts: number; ambiguous: boolean; providerRequestId?: string } {
  return {
    httpStatus: response.status,
    attempts: response.attempts,
    ambiguous: response.ambiguous,
    ...(requestId ? { providerRequestId: requestId } : {}),
  };
}

/** Trims a provider's text for an outcome message: one line, bounded. Secrets are scrubbed before the cut: a cut
 * first could keep a credential's prefix, which the later scrub no longer recognises. */
export function brief(text: string, max = 300): string {
  const line = redact(text).replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** What an adapter decides from one answer. */
export type Classification =
  /** The answer settles the outcome. */
  | ({ kind: 'decided'; outcome: OutcomeKind } & Pick<Outcome, 'providerStatus' | 'message' | 'details'>)
  /** The answer says "not done" without saying why: read the resource's state to decide. */
  | { kind: 'check-state'; message: string }
  /** 401: refresh the credentials once and try again. */
  | { kind: 'unauthorized'; message: string };

export const decided = (
  outcome: OutcomeKind,
  fields: Pick<Outcome, 'providerStatus' | 'message' | 'details'> = {},
): Extract<Classification, { kind: 'decided' }> => ({ kind: 'decided', outcome, ...fields });

/** Parses a timestamp; one without a timezone (mycreditapp's `2025-01-02T12:00:00.123456`) is UTC. */
export function parseTimestamp(value: string): number {
  const withZone = /([zZ]|[+-]\d{2}:?\d{2})$/.test(value) ? value : `${value}Z`;
  // Date.parse accepts at most millisecond precision: cut microseconds.
  return Date.parse(withZone.replace(/(\.\d{3})\d+/, '$1'));
}
