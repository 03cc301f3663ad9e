/**
 * Auco: cancel e-signature processes, several document codes per call (PROVIDERS.md section 2).
 *
 * - `POST {base}/document/cancel` with the bare private key (`Authorization: prk_...`, no `Bearer`), body
 *   `{codes, message, email}`, all required (2.1).
 * - The answer counts: `{success, errors: {cant, documents?}}`; `documents` lists the failed codes, not why (2.2).
 *   So each failed code is read back with `GET /document?code=` and the public key (`puk_...`):
 *   `REJECTED` is `already_canceled`, `FINISH`/`EXPIRED` are `not_cancelable`, unknown is `not_found` (2.3).
 * - Whether an all-failed call answers 200 or 400 is not documented: both give the same outcomes.
 */

import type { ProviderSecret } from '#shared/aws/secrets.ts';
import type { RateLimit } from '#shared/core/cancel.ts';
import type { OutcomeKind } from '#shared/core/outcome.ts';
import type { HttpRequest, RawResponse } from '#shared/http/types.ts';
import { asObject, asString, brief, misrouted, parseJson, rootOf } from '#shared/providers/common.ts';
import type { AucoSecret } from './secret.ts';

/** Its requests' budget per second, with its name (what its operations pace with): Auco publishes none (PROVIDERS.md), so this one is ours, and conservative. */
export const RATE = { provider: 'auco', perSecond: 5, windowSeconds: 1 } as const satisfies RateLimit;

export const AUCO_LIVE_URL = 'https://api.auco.ai/v1.5/ext';
/** Codes per provider call: Auco documents no maximum; configurable with AUCO_MAX_CODES_PER_CALL. */
export const DEFAULT_MAX_CODES_PER_CALL = 50;

type Secret = ProviderSecret<typeof AucoSecret>;

const root = (secret: Secret) => rootOf(secret, AUCO_LIVE_URL);

export function cancelRequest(secret: Secret, input: { codes: string[]; message: string; email: string }): HttpRequest {
  return {
    method: 'POST',
    url: `${root(secret)}/document/cancel`,
    headers: { authorization: secret.privateKey, 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ codes: input.codes, message: input.message, email: input.email }),
  };
}

export function statusRequest(secret: Secret, code: string): HttpRequest {
  return {
    method: 'GET',
    url: `${root(secret)}/document?code=${encodeURIComponent(code)}`,
    headers: { authorization: secret.publicKey, accept: 'application/json' },
  };
}

/** The counts of a cancel answer, or undefined when the body is not that shape. */
export function parseCounts(body: string): { success: number; failed: number; documents?: string[] } | undefined {
  const json = asObject(parseJson(body));
  if (!json || typeof json.success !== 'number') return undefined;
  const errors = asObject(json.errors);
  const documents = Array.isArray(errors?.documents)
    ? errors.documents.filter((d): d is string => typeof d === 'string')
    : undefined;
  return {
    success: json.success,
    failed: typeof errors?.cant === 'number' ? errors.cant : 0,
    ...(documents ? { documents } : {}),
  };
}

/** A 2xx that is not the counts shape is retried (a re-cancel is harmless: a cancelled code just fails). */
export function malformedCounts(response: RawResponse): string | undefined {
  return response.status >= 200 && response.status < 300 && !parseCounts(response.body)
    ? `malformed answer (HTTP ${response.status}, no success count)`
    : undefined;
}

/** A status read whose body is there but unreadable (not JSON, or no `status`) is retried; an empty 200 is how
 * some APIs say "unknown". */
export function malformedStatus(response: RawResponse): string | undefined {
  return response.status < 300 &&
    response.body.trim() !== '' &&
    asString(asObject(parseJson(response.body))?.status) === undefined
    ? `malformed status answer (HTTP ${response.status})`
    : undefined;
}

export type CancelAnswer =
  /** Which codes were cancelled, and which must be read back to learn why they were not. */
  | { kind: 'counted'; canceled: string[]; check: string[] }
  | { kind: 'unauthorized'; message: string }
  /** A 404 to the cancel itself: the route is wrong (`POST /document/cancel` exists), so is the configuration. */
  | { kind: 'misrouted'; message: string }
  /** A refusal of the whole call (400 without counts): read every code back; still-open ones are `rejected`. */
  | { kind: 'refused'; message: string; check: string[] };

export function classifyCancel(response: RawResponse, codes: string[]): CancelAnswer {
  const counts = parseCounts(response.body);
  if (counts && (response.status < 300 || response.status === 400)) {
    if (counts.failed === 0 && counts.success >= codes.length) return { kind: 'counted', canceled: codes, check: [] };
    // Without the list of failed codes, no code is known to be cancelled: read them all back.
    if (!counts.documents) return { kind: 'counted', canceled: [], check: codes };
    const failed = new Set(counts.documents);
    return {
      kind: 'counted',
      canceled: codes.filter((c) => !failed.has(c)),
      check: codes.filter((c) => failed.has(c)),
    };
  }
  const said = errorText(response);
  if (response.status === 401) return { kind: 'unauthorized', message: `Auco rejected the private key (${said})` };
  if (response.status === 404) {
    const { message = '' } = misrouted('Auco', response, MISROUTE_CHECK);
    return { kind: 'misrouted', message };
  }
  return { kind: 'refused', message: `Auco refused the cancellation (HTTP ${response.status}: ${said})`, check: codes };
}

function errorText(response: RawResponse): string {
  const json = asObject(parseJson(response.body));
  return asString(json?.message) ?? asString(json?.error) ?? (brief(response.body) || `HTTP ${response.status}`);
}

const MISROUTE_CHECK = 'auco.baseUrl (https://api.auco.ai/v1.5/ext, or https://dev.auco.ai/v1.5/ext)';

export interface CodeState {
  outcome: OutcomeKind;
  providerStatus?: string;
  message: string;
}

/** What a document's status means for a code the cancel did not cancel. */
export function classifyStatus(
  response: RawResponse,
  refusal: string | undefined,
): CodeState | { unauthorized: string } {
  if (response.status === 401)
    return { unauthorized: `Auco rejected the public key used to read document status (${errorText(response)})` };
  const status =
    response.status < 300 ? asString(asObject(parseJson(response.body))?.status)?.toUpperCase() : undefined;
  // Auco's error body is not documented (2.2): only a JSON 404 is taken for Auco's own "unknown code"; an HTML page
  // or an empty 404 may be any server at a wrong base URL, so it is never a final `not_found`.
  if (response.status === 404 && parseJson(response.body) === undefined) {
    const { message = '' } = misrouted('Auco', response, MISROUTE_CHECK);
    return { outcome: 'rejected', message };
  }
  if (response.status < 300 && !status && response.body.trim() !== '') {
    return { outcome: 'failed', message: `Auco's document status answer is unreadable (HTTP ${response.status})` };
  }
  if (response.status === 404 || response.status === 400 || (response.status < 300 && !status)) {
    return { outcome: 'not_found', message: 'Auco does not know this document code' };
  }
  switch (status) {
    case 'REJECTED':
      return {
        outcome: 'already_canceled',
        providerStatus: status,
        message: 'Signing process was already cancelled (REJECTED)',
      };
    case 'FINISH':
      return {
        outcome: 'not_cancelable',
        providerStatus: status,
        message: 'Document is fully signed (FINISH); it can no longer be cancelled',
      };
    case 'EXPIRED':
      return {
        outcome: 'not_cancelable',
        providerStatus: status,
        message: 'Signing process has expired; it can no longer be cancelled',
      };
    case undefined:
      return {
        outcome: 'rejected',
        message: `Auco did not cancel it, and its status could not be read (HTTP ${response.status})`,
      };
    default:
      return {
        outcome: 'rejected',
        providerStatus: status,
        message: `Auco did not cancel it though it is still ${status}${refusal ? `: ${refusal}` : ''}. Check that the email belongs to a user of the Auco company`,
      };
  }
}

/** Splits codes into calls of at most `size`. */
export function chunk<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
