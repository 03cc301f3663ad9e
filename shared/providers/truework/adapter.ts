/**
 * Truework: cancel a verification order (PROVIDERS.md section 3).
 *
 * - `PUT /orders/{id}/cancel` (not POST), `Authorization: Bearer tw_sk_...`, `Accept` with the API version
 *   (configurable; an older version than the key's pin is 406), body `cancellation_reason` + `cancellation_details`.
 * - Orders have no state of their own: the outcome follows from each verification request's state (3.2).
 *   Terminal states are `completed`, `canceled` and `invalid`.
 * - A fully terminal order may answer 200 (echo) or 400/403 (undocumented, 3.3): a refusal is settled by reading
 *   the order back. Not found may be a 404 or a 400 that says so.
 * - Every JSON answer carries `X-Truework-Signature` (Ed25519 over the listed headers and the body, 3.4);
 *   when public keys are configured, an answer that fails verification is `rejected`.
 */
import { createPublicKey, type KeyObject, verify } from 'node:crypto';
import type { ProviderSecret } from '#shared/aws/secrets.ts';
import type { RateLimit } from '#shared/core/cancel.ts';
import type { OutcomeKind } from '#shared/core/outcome.ts';
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
import type { TrueworkSecret } from './secret.ts';

/** Its requests' budget per second, with its name (what its operations pace with): documented: 10/s (PROVIDERS.md 3.3). */
export const RATE = { provider: 'truework', perSecond: 10, windowSeconds: 1 } as const satisfies RateLimit;

export const TRUEWORK_LIVE_URL = 'https://api.truework.com';
export const TRUEWORK_API_VERSION = '2023-10-30';
export const TERMINAL_STATES = ['completed', 'canceled', 'invalid'] as const;

type Secret = ProviderSecret<typeof TrueworkSecret>;

export interface VerificationRequestState {
  id: string;
  state: string;
}

const root = (secret: Secret) => rootOf(secret, TRUEWORK_LIVE_URL);

function headers(secret: Secret): Record<string, string> {
  const version = secret.apiVersion ?? TRUEWORK_API_VERSION;
  return {
    authorization: `Bearer ${secret.apiKey}`,
    accept: version ? `application/json; version=${version}` : 'application/json',
  };
}

export function cancelRequest(
  secret: Secret,
  input: { orderId: string; reason: string; details?: string | null },
): HttpRequest {
  return {
    method: 'PUT',
    url: `${root(secret)}/orders/${encodeURIComponent(input.orderId)}/cancel`,
    headers: { ...headers(secret), 'content-type': 'application/json' },
    body: JSON.stringify({
      cancellation_reason: input.reason,
      ...(input.details !== undefined ? { cancellation_details: input.details } : {}),
    }),
  };
}

export function getOrderRequest(secret: Secret, orderId: string): HttpRequest {
  return { method: 'GET', url: `${root(secret)}/orders/${encodeURIComponent(orderId)}`, headers: headers(secret) };
}

/** Each verification request's canonical state, from an order or a cancel answer; undefined when the answer does
 * not hold the list (not JSON, or no `verification_requests` array: the order's state cannot be read from it). */
export function verificationRequests(body: string): VerificationRequestState[] | undefined {
  const order = asObject(parseJson(body));
  if (!order) return undefined;
  const list = order.verification_requests;
  if (!Array.isArray(list)) return undefined;
  return list.map((vr, i) => {
    const o = asObject(vr) ?? {};
    const state = asObject(o.state);
    return { id: asString(o.id) ?? `#${i}`, state: asString(state?.canonical_value) ?? asString(o.state) ?? 'unknown' };
  });
}

const isTerminal = (state: string) => (TERMINAL_STATES as readonly string[]).includes(state);

function summarize(vrs: VerificationRequestState[]): string {
  const counts = new Map<string, number>();
  for (const vr of vrs) counts.set(vr.state, (counts.get(vr.state) ?? 0) + 1);
  return [...counts].map(([state, n]) => `${n} ${state}`).join(', ');
}

/**
 * What the verification requests' states mean.
 * - `afterCancel`: states in a 200 answer to our cancel. Some canceled and none open: `canceled`.
 * - otherwise: states read back after a refusal. All terminal with some canceled: `already_canceled`.
 * Terminal without any canceled (completed, invalid) is `not_cancelable`. Still open after a cancel is `failed`
 * (Step Functions retries: a repeated PUT is harmless); still open after a refusal is `rejected` with its reason.
 */
export function classifyStates(vrs: VerificationRequestState[], afterCancel: boolean, refusal = ''): Classification {
  const details = { verificationRequests: vrs };
  const providerStatus = summarize(vrs) || 'no verification requests';
  if (vrs.length === 0)
    return decided('not_cancelable', {
      providerStatus,
      details,
      message: 'The order has no verification requests to cancel',
    });
  const open = vrs.filter((vr) => !isTerminal(vr.state));
  const canceled = vrs.filter((vr) => vr.state === 'canceled');
  if (open.length) {
    const message = afterCancel
      ? `Truework answered 200 but ${open.length} verification request(s) are still open (${providerStatus})`
      : `Truework refused to cancel an order with open verification requests (${providerStatus}): ${refusal}`;
    return afterCancel
      ? decided('failed', { providerStatus, details, message })
      : decided('rejected', { providerStatus, details, message });
  }
  const outcome: OutcomeKind = canceled.length ? (afterCancel ? 'canceled' : 'already_canceled') : 'not_cancelable';
  const message =
    outcome === 'not_cancelable'
      ? `Every verification request is already terminal (${providerStatus}); nothing left to cancel`
      : outcome === 'canceled'
        ? `Verification order cancelled (${providerStatus})`
        : `Verification order was already cancelled (${providerStatus})`;
  return decided(outcome, { providerStatus, details, message });
}

function errorMessage(response: RawResponse): string {
  const error = asObject(asObject(parseJson(response.body))?.error);
  const message = asString(error?.message);
  const fields = asObject(error?.invalid_fields);
  const fieldText = fields
    ? Object.entries(fields).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : String(v)}`)
    : [];
  return [message ?? (brief(response.body) || `HTTP ${response.status}`), ...fieldText].join('; ');
}

/** A 2xx whose body does not hold the order's verification requests proves nothing (the cancel and the order
 * read-back answer the same shape): retried, then `failed`, never a final outcome. */
export function unreadableOrder(response: RawResponse): string | undefined {
  return response.status >= 200 && response.status < 300 && !verificationRequests(response.body)
    ? `answer without the order's verification_requests (HTTP ${response.status})`
    : undefined;
}

/** Truework's own error envelope, `{"error": {"message": ...}}` (3.3): a 404 in any other shape (an HTML page,
 * an empty body) is a wrong route, not an unknown order. */
function isTrueworkError(response: RawResponse): boolean {
  return asString(asObject(asObject(parseJson(response.body))?.error)?.message) !== undefined;
}

const MISROUTE_CHECK = 'truework.baseUrl (https://api.truework.com, or the sandbox)';

export function classifyCancel(response: RawResponse): Classification {
  const { status } = response;
  if (status >= 200 && status < 300) {
    const vrs = verificationRequests(response.body);
    if (!vrs) return decided('failed', { message: `Truework answered ${status} without verification requests` });
    return classifyStates(vrs, true);
  }
  const said = errorMessage(response);
  if (status === 401) return { kind: 'unauthorized', message: `Truework rejected the API key (${said})` };
  if (status === 404 && !isTrueworkError(response)) return misrouted('Truework', response, MISROUTE_CHECK);
  if (status === 404 || (status === 400 && /not\s*found|does not exist|no such order/i.test(said))) {
    return decided('not_found', { message: `Truework does not know this order (${said})` });
  }
  if (status === 406) {
    return decided('rejected', {
      message: `Truework refused the API version in Accept; set truework.apiVersion to your key's version or "" (${said})`,
    });
  }
  if (status === 451)
    return decided('rejected', { message: `Truework cannot process this order for legal reasons (451: ${said})` });
  const invalidFields = asObject(asObject(asObject(parseJson(response.body))?.error)?.invalid_fields);
  if (status === 400 && invalidFields)
    return decided('rejected', { message: `Truework rejected the request: ${said}` });
  // A refusal that does not say why (400, 403, 409): read the order back to learn whether it is already done.
  if (status === 400 || status === 403 || status === 409)
    return { kind: 'check-state', message: `HTTP ${status}: ${said}` };
  return decided('rejected', { message: `Truework rejected the request (HTTP ${status}: ${said})` });
}

export function classifyReadBack(response: RawResponse, refusal: string): Classification {
  if (response.status === 404) {
    return isTrueworkError(response)
      ? decided('not_found', { message: 'Truework does not know this order' })
      : misrouted('Truework', response, MISROUTE_CHECK);
  }
  if (response.status === 401) return { kind: 'unauthorized', message: 'Truework rejected the API key' };
  if (response.status >= 300)
    return decided('rejected', {
      message: `Truework refused the cancellation (${refusal}) and refused to read the order back (HTTP ${response.status}: ${errorMessage(response)})`,
    });
  const vrs = verificationRequests(response.body);
  if (!vrs)
    return decided('failed', {
      message: `Truework refused the cancellation (${refusal}) and the order read back is unreadable (HTTP ${response.status})`,
    });
  return classifyStates(vrs, false, refusal);
}

// ---- X-Truework-Signature (PROVIDERS.md 3.4) ----

export interface ParsedSignature {
  keyId: string;
  headers: string[];
  signature: string;
}

/** `keyId="tw-2021-11-11", headers="date content-length", signature="<base64>"`: split on commas, then on the first `=`. */
export function parseSignatureHeader(value: string): ParsedSignature | undefined {
  const fields: Record<string, string> = {};
  for (const part of value.split(',')) {
    const at = part.indexOf('=');
    if (at < 0) continue;
    fields[part.slice(0, at).trim()] = part
      .slice(at + 1)
      .trim()
      .replace(/^"|"$/g, '');
  }
  if (!fields.keyId || !fields.signature) return undefined;
  return {
    keyId: fields.keyId,
    headers: (fields.headers ?? '')
      .split(/\s+/)
      .filter(Boolean)
      .map((h) => h.toLowerCase()),
    signature: fields.signature,
  };
}

/** The signed message: `name: value\n` for each listed header, in order, then the raw body. */
export function signedMessage(
  headerNames: string[],
  headerValues: Record<string, string | undefined>,
  body: string,
): Buffer {
  const lines = headerNames.map((name) => `${name}: ${headerValues[name] ?? ''}\n`).join('');
  return Buffer.concat([Buffer.from(lines, 'utf8'), Buffer.from(body, 'utf8')]);
}

const keyCache = new Map<string, KeyObject>();
function publicKey(raw: string): KeyObject {
  let key = keyCache.get(raw);
  if (!key) {
    const x = Buffer.from(raw, 'base64').toString('base64url');
    key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
    keyCache.set(raw, key);
  }
  return key;
}

/** Verifies an answer; returns why it fails, or undefined when it is authentic. Every answer whose body we parse
 * is verified, whatever its Content-Type says (an unsigned `text/plain` JSON body must not pass); only a body that
 * is not JSON at all (an HTML error page, an empty 5xx), which is never read for an outcome, goes unverified. */
export function signatureProblem(response: RawResponse, publicKeys: Record<string, string>): string | undefined {
  if (parseJson(response.body) === undefined) return undefined;
  const header = response.headers['x-truework-signature'];
  if (!header) return 'the answer carries no X-Truework-Signature';
  const parsed = parseSignatureHeader(header);
  if (!parsed) return 'the X-Truework-Signature header is malformed';
  const raw = publicKeys[parsed.keyId];
  if (!raw) return `the answer is signed with key id "${parsed.keyId}", which is not among truework.publicKeys`;
  const ok = verify(
    null,
    signedMessage(parsed.headers, response.headers, response.body),
    publicKey(raw),
    Buffer.from(parsed.signature, 'base64'),
  );
  return ok
    ? undefined
    : `the X-Truework-Signature does not match the answer (key id "${parsed.keyId}"): it was altered in transit or not sent by Truework`;
}
