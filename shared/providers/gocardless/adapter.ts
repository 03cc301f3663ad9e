/**
 * GoCardless: cancel a billing request (PROVIDERS.md section 4).
 *
 * - `POST /billing_requests/{id}/actions/cancel`, `Authorization: Bearer`, `GoCardless-Version: 2015-07-06`,
 *   body in the `{"data": {...}}` envelope, `metadata` only (4.1).
 * - A stable `Idempotency-Key` per logical cancellation, so our own retries never act twice (4.5).
 * - 200 `cancelled` is `canceled`. 422 `invalid_state` (and a 409 idempotency conflict) do not say why, so the
 *   billing request is read back: `cancelled` is `already_canceled`, `fulfilling`/`fulfilled` `not_cancelable`
 *   (4.2, 4.3, 4.5). 404 is `not_found`; `validation_failed` and `invalid_api_usage` are `rejected`.
 * - 429 waits until `ratelimit-reset` (an HTTP-date), whatever the body, JSON or HTML (4.4): `shared/http/client.ts`.
 * - A 2xx that does not show `cancelled` is read back too; a 404 is `not_found` only with `resource_not_found`
 *   (or `not_found`); `path_not_found`, an HTML page or an empty 404 is a wrong `baseUrl`: `rejected`.
 *
 * A reused Idempotency-Key on an *action* (what our retries send): unknown, so both answers are handled.
 * - [D] https://gocardless.com/blog/idempotency-keys: keys are supported on "creation endpoints"; a repeat after a
 *   success answers 409 `invalid_state` / `idempotent_creation_conflict` with `links.conflicting_resource_id`.
 * - [D] gocardless/gocardless-pro-ruby `lib/gocardless_pro/services/billing_requests_service.rb` @077fa129: its
 *   `cancel` catches that conflict and fetches `billing_requests/{conflicting_resource_id}`, so GoCardless's own
 *   generator expects the 409 on actions too, naming the billing request.
 * - [D] gocardless/gocardless-pro-python `services/billing_requests_service.py` @0603ead8 and gocardless-nodejs
 *   10.1.2 `billingRequestService.js`: no conflict handling on actions (Node passes `fetch: null`; [O] a 409 there
 *   crashes it with a TypeError, test/contract/gocardless.test.ts). Both send a fresh key on every call.
 * - Whether GoCardless replays the first 200 instead is not documented anywhere public [?]: a 409 on our own key is
 *   read back (`cancelled` is `canceled`, our earlier attempt did it), a replayed 200 `cancelled` is `canceled`.
 */
import { createHash } from 'node:crypto';
import type { ProviderSecret } from '#shared/aws/secrets.ts';
import type { RateLimit } from '#shared/core/cancel.ts';
import type { HttpRequest, RawResponse } from '#shared/http/types.ts';
import {
  asObject,
  asString,
  brief,
  type Classification,
  decided,
  misrouted,
  parseJson,
  rootOf,
} from '#shared/providers/common.ts';
import type { GoCardlessSecret } from './secret.ts';

/** Its requests' budget per second, with its name (what its operations pace with): documented: 1000/min (PROVIDERS.md 4.4). */
export const RATE = { provider: 'gocardless', perSecond: 1000 / 60, windowSeconds: 60 } as const satisfies RateLimit;

export const GOCARDLESS_LIVE_URL = 'https://api.gocardless.com';
export const GOCARDLESS_VERSION = '2015-07-06';

type Secret = ProviderSecret<typeof GoCardlessSecret>;

export interface GoCardlessError {
  type?: string;
  message: string;
  reasons: string[];
  requestId?: string;
}

const root = (secret: Secret) => rootOf(secret, GOCARDLESS_LIVE_URL);

function headers(secret: Secret): Record<string, string> {
  return {
    authorization: `Bearer ${secret.accessToken}`,
    'gocardless-version': GOCARDLESS_VERSION,
    accept: 'application/json',
  };
}

/** An Idempotency-Key for one logical cancellation of one billing request, bounded in length. */
export function idempotencyKeyFor(billingRequestId: string, logicalKey: string): string {
  return `cancel-${billingRequestId}-${createHash('sha256').update(logicalKey).digest('hex').slice(0, 32)}`;
}

export function cancelRequest(
  secret: Secret,
  input: { billingRequestId: string; metadata?: Record<string, string> },
  idempotencyKey: string,
): HttpRequest {
  return {
    method: 'POST',
    url: `${root(secret)}/billing_requests/${encodeURIComponent(input.billingRequestId)}/actions/cancel`,
    headers: { ...headers(secret), 'content-type': 'application/json', 'idempotency-key': idempotencyKey },
    body: JSON.stringify({ data: input.metadata ? { metadata: input.metadata } : {} }),
  };
}

export function getRequest(secret: Secret, billingRequestId: string): HttpRequest {
  return {
    method: 'GET',
    url: `${root(secret)}/billing_requests/${encodeURIComponent(billingRequestId)}`,
    headers: headers(secret),
  };
}

/** The error envelope (4.3), including the bare-string form `{"error": "bank_authorisation_expired"}`. */
export function parseGoCardlessError(body: string): GoCardlessError | undefined {
  const json = asObject(parseJson(body));
  if (!json) return undefined;
  if (typeof json.error === 'string') return { message: json.error, reasons: [json.error] };
  const error = asObject(json.error);
  if (!error) return undefined;
  const details = Array.isArray(error.errors) ? error.errors.map(asObject).filter((e) => e !== undefined) : [];
  const reasons = details.map((e) => asString(e.reason)).filter((r): r is string => r !== undefined);
  const messages = details.map((e) => {
    const field = asString(e.field);
    const message = asString(e.message) ?? asString(e.reason) ?? '';
    return field ? `${field} ${message}` : message;
  });
  const message = [asString(error.message), ...messages.filter((m) => m && m !== error.message)]
    .filter(Boolean)
    .join('; ');
  return {
    type: asString(error.type),
    message: message || 'no message',
    reasons,
    requestId: asString(error.request_id),
  };
}

/** The billing request's status from a 200 answer (`{"billing_requests": {...}}`). */
export function billingRequestStatus(body: string): string | undefined {
  return asString(asObject(asObject(parseJson(body))?.billing_requests)?.status);
}

/** What a billing request's status means for a cancellation that was refused or not confirmed (4.2). */
export function classifyState(status: string | undefined, refusal: string, afterSuccess = false): Classification {
  switch (status) {
    case 'cancelled':
      return decided('already_canceled', { providerStatus: status, message: 'Billing request was already cancelled' });
    case 'fulfilled':
    case 'fulfilling':
      return decided('not_cancelable', {
        providerStatus: status,
        message: `Billing request is ${status}; it can no longer be cancelled`,
      });
    case undefined:
      return decided('failed', {
        message: `GoCardless did not confirm the cancellation and the billing request's state is unreadable: ${refusal}`,
      });
    default:
      // After a 2xx the cancel was accepted but is not visible yet: transient (retried with the same key).
      return afterSuccess
        ? decided('failed', {
            providerStatus: status,
            message: `GoCardless accepted the cancel but the billing request still reads ${status}: ${refusal}`,
          })
        : decided('rejected', {
            providerStatus: status,
            message: `GoCardless refused to cancel a ${status} billing request: ${refusal}`,
          });
  }
}

/** The `errors[].reason`s that say the billing request itself does not exist (4.3: `not_found` in a quoted real
 * answer, `resource_not_found` in newer docs). Any other 404 (`path_not_found`, an HTML page) is a wrong route. */
export const NOT_FOUND_REASONS = ['resource_not_found', 'not_found'];

export function classifyCancel(response: RawResponse): Classification {
  const { status } = response;
  if (status >= 200 && status < 300) {
    const state = billingRequestStatus(response.body);
    if (state === 'cancelled')
      return decided('canceled', { providerStatus: state, message: 'Billing request cancelled' });
    // A 2xx that does not show `cancelled` proves nothing either way: the billing request is read back.
    return { kind: 'check-state', message: `answered ${status} with status ${state ?? 'missing'}` };
  }
  const error = parseGoCardlessError(response.body);
  const said = error
    ? `${error.type ? `${error.type}: ` : ''}${error.message}`
    : brief(response.body) || `HTTP ${status}`;
  if (status === 401) return { kind: 'unauthorized', message: `GoCardless rejected the access token (${said})` };
  if (status === 403)
    return decided('rejected', { message: `GoCardless denied access; the token may lack read-write scope (${said})` });
  if (status === 404) {
    return error?.reasons.some((r) => NOT_FOUND_REASONS.includes(r))
      ? decided('not_found', { message: `GoCardless does not know this billing request (${said})` })
      : misrouted('GoCardless', response, 'gocardless.baseUrl (https://api.gocardless.com, or the sandbox)');
  }
  if (error?.type === 'invalid_state' || status === 409) return { kind: 'check-state', message: said };
  return decided('rejected', { message: `GoCardless rejected the request (HTTP ${status}, ${said})` });
}

/** A read-back whose 2xx body shows no status is retried, then `failed`: never a final outcome. */
export function unreadableBillingRequest(response: RawResponse): string | undefined {
  return response.status >= 200 && response.status < 300 && billingRequestStatus(response.body) === undefined
    ? `unreadable billing request (HTTP ${response.status}, no billing_requests.status)`
    : undefined;
}

/** Classifies the read-back of a billing request after a refused, conflicting or unconfirmed cancel. */
export function classifyReadBack(response: RawResponse, refusal: string, afterSuccess = false): Classification {
  if (response.status === 404) {
    return parseGoCardlessError(response.body)?.reasons.some((r) => NOT_FOUND_REASONS.includes(r))
      ? decided('not_found', { message: 'GoCardless does not know this billing request' })
      : misrouted('GoCardless', response, 'gocardless.baseUrl (https://api.gocardless.com, or the sandbox)');
  }
  if (response.status === 401) return { kind: 'unauthorized', message: 'GoCardless rejected the access token' };
  if (response.status >= 300) {
    const error = parseGoCardlessError(response.body);
    return decided('rejected', {
      message: `GoCardless did not confirm the cancellation (${refusal}) and refused to read the billing request back (HTTP ${response.status}${error ? `, ${error.message}` : ''})`,
    });
  }
  return classifyState(billingRequestStatus(response.body), refusal, afterSuccess);
}
