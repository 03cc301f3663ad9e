/**
 * mycreditapp: cancel a document request, read a credit application (PROVIDERS.md section 1).
 *
 * - OAuth2 client credentials: `POST {root}/oauth2/token` with a JSON body (not form-encoded), `{access_token,
 *   expires_in}` back; `Authorization: Bearer <JWT>` on every call (1.1).
 * - Both organization headers on org-scoped calls: `Requester-Organization-ID`, `Target-Organization-ID` (1.1).
 * - The API root carries a version segment that the docs disagree on (`/v1-beta` vs `/v1`): configurable,
 *   `v1-beta` by default (1.1).
 * - Errors are `{"detail": [{loc, msg, type, code}]}`; the codes for not-found, already-canceled and
 *   not-cancelable are not public (1.3), so a refusal is read from its status and from the words it uses.
 * - A repeated cancel may answer 200 with the canceled object or a 4xx (1.4, item 5); both are `already_canceled`.
 *   `service_under_maintenance` is retried whatever its status.
 */
import * as z from 'zod/mini';
import type { ProviderSecret } from '#shared/aws/secrets.ts';
import type { RateLimit } from '#shared/core/cancel.ts';
import { toInputIssues } from '#shared/core/issues.ts';
import type { HttpRequest, RawResponse } from '#shared/http/types.ts';
import {
  asObject,
  asString,
  brief,
  type Classification,
  decided,
  misrouted,
  parseJson,
  parseTimestamp,
} from '#shared/providers/common.ts';
import type { MyCreditAppSecret } from './secret.ts';

/** Its requests' budget per second, with its name (what its operations pace with): mycreditapp publishes none (PROVIDERS.md), so this one is ours, and conservative. */
export const RATE = { provider: 'mycreditapp', perSecond: 10, windowSeconds: 1 } as const satisfies RateLimit;

export const MYCREDITAPP_LIVE_ORIGIN = 'https://api.mycreditapp.ai';
export const MYCREDITAPP_DEFAULT_VERSION = 'v1-beta';

type Secret = ProviderSecret<typeof MyCreditAppSecret>;

export interface OrganizationHeaders {
  requesterOrganizationId: string;
  targetOrganizationId: string;
}

/** The API root: `baseUrl` as given when it has a path (`http://host/v1-beta`); a bare origin gets the version
 * segment appended (`apiVersion`, default `v1-beta`); no `baseUrl` is production. */
export function apiRoot(secret: Secret): string {
  const version = secret.apiVersion ?? MYCREDITAPP_DEFAULT_VERSION;
  if (!secret.baseUrl) return `${MYCREDITAPP_LIVE_ORIGIN}/${version}`;
  const url = new URL(secret.baseUrl);
  const path = url.pathname.replace(/\/+$/, '');
  return path ? `${url.origin}${path}` : `${url.origin}/${version}`;
}

export function tokenRequest(secret: Secret): HttpRequest {
  return {
    method: 'POST',
    url: `${apiRoot(secret)}/oauth2/token`,
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ client_id: secret.clientId, client_secret: secret.clientSecret }),
  };
}

export function parseToken(response: RawResponse): { accessToken: string; expiresInSeconds: number } | undefined {
  const body = asObject(parseJson(response.body));
  const accessToken = asString(body?.access_token);
  if (!accessToken) return undefined;
  const expires = Number(body?.expires_in);
  return { accessToken, expiresInSeconds: Number.isFinite(expires) && expires > 0 ? expires : 3600 };
}

function orgHeaders(org: Partial<OrganizationHeaders>): Record<string, string> {
  return {
    ...(org.requesterOrganizationId ? { 'requester-organization-id': org.requesterOrganizationId } : {}),
    ...(org.targetOrganizationId ? { 'target-organization-id': org.targetOrganizationId } : {}),
  };
}

export function cancelRequest(
  root: string,
  accessToken: string,
  input: { orgId: string; requestId: string } & OrganizationHeaders,
): HttpRequest {
  return {
    method: 'POST',
    url: `${root}/organizations/${encodeURIComponent(input.orgId)}/documents/requests/${encodeURIComponent(input.requestId)}/cancellations`,
    headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json', ...orgHeaders(input) },
  };
}

export function getCreditApplicationRequest(
  root: string,
  accessToken: string,
  id: string,
  org: OrganizationHeaders,
): HttpRequest {
  return {
    method: 'GET',
    url: `${root}/credit-applications/${encodeURIComponent(id)}`,
    headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json', ...orgHeaders(org) },
  };
}

export interface Detail {
  codes: string[];
  messages: string[];
  /** Some detail points at a field (`loc` not empty): a validation error, not a state. */
  locates: boolean;
}

/** The `{"detail": [...]}` envelope (FastAPI style); a string `detail` is accepted too. */
export function parseDetail(body: string): Detail {
  const json = asObject(parseJson(body));
  const raw = json?.detail;
  const items = Array.isArray(raw)
    ? raw.map(asObject).filter((d) => d !== undefined)
    : typeof raw === 'string'
      ? [{ msg: raw }]
      : [];
  return {
    codes: items.flatMap((d) => [asString(d.code), asString(d.type)].filter((c): c is string => c !== undefined)),
    messages: items.map((d) => {
      const loc = Array.isArray(d.loc) && d.loc.length ? `${d.loc.join('.')}: ` : '';
      return `${loc}${asString(d.msg) ?? asString(d.message) ?? asString(d.code) ?? 'no message'}`;
    }),
    locates: items.some((d) => Array.isArray(d.loc) && d.loc.length > 0),
  };
}

/** Maintenance is retried at any status (its status is not documented, 1.3). */
export function isMaintenance(response: RawResponse): string | undefined {
  if (response.status < 400) return undefined;
  const { codes } = parseDetail(response.body);
  return codes.some((c) => c === 'service_under_maintenance' || c === 'maintenance')
    ? 'mycreditapp is under maintenance'
    : undefined;
}

/**
 * Whether a 404 is mycreditapp's own "no such resource": the documented `{"detail": [{loc, msg, type, code}]}`
 * envelope (1.3) with items, none of them about a route. FastAPI's bare `{"detail": "Not Found"}` (an unknown
 * path, such as a wrong version segment), an HTML page or an empty body say the route is wrong, not the resource.
 */
export function saysResourceNotFound(body: string): boolean {
  const raw = asObject(parseJson(body))?.detail;
  if (!Array.isArray(raw) || raw.length === 0) return false;
  const items = raw.map(asObject);
  if (items.some((d) => d === undefined)) return false;
  const words = items.map((d) => `${asString(d?.code) ?? ''} ${asString(d?.type) ?? ''}`).join(' ');
  return !/route|path|endpoint/i.test(words);
}

export const MISROUTE_CHECK =
  'mycreditapp.baseUrl and apiVersion (the API root, https://api.mycreditapp.ai/v1-beta by default)';

/** A 2xx answer to a cancel that does not name the document request's state proves nothing: it is retried. */
export function unprovenCancel(response: RawResponse): string | undefined {
  if (response.status < 200 || response.status >= 300) return undefined;
  return asString(asObject(parseJson(response.body))?.status) === undefined
    ? `answer without the document request's status (HTTP ${response.status})`
    : undefined;
}

function documentStatus(value: unknown): string | undefined {
  const status = asString(value)?.toLowerCase();
  return status === 'cancelled' ? 'canceled' : status;
}

/** A 200 that says `canceled` earlier than this before our request began is a repeat, not our cancel. */
export const REPEAT_TOLERANCE_MS = 2_000;

/**
 * Classifies the answer to a cancel.
 * - 2xx: the document request's `status`. `canceled` is `canceled`, unless its `updated_at` predates our request
 *   (by more than the clock tolerance): then it was cancelled before, `already_canceled`.
 * - 4xx refusals: `detail` codes and words decide between already cancelled, completed/expired, or a validation
 *   error; the status decides when they say nothing.
 */
export function classifyCancel(
  response: RawResponse,
  requestStartedAt: number,
): Classification & { uncertainRepeat?: boolean } {
  const { status } = response;
  if (status >= 200 && status < 300) {
    const body = asObject(parseJson(response.body)) ?? {};
    const state = documentStatus(body.status);
    // Never a success without the state that proves it (the HTTP client retries these first: `unprovenCancel`).
    if (state === undefined) {
      return decided('failed', {
        message: `mycreditapp answered ${status} without the document request's status; the cancellation is not confirmed`,
      });
    }
    if (state === 'canceled') {
      const updated = asString(body.updated_at);
      const updatedAt = updated ? parseTimestamp(updated) : Number.NaN;
      if (Number.isFinite(updatedAt) && updatedAt < requestStartedAt - REPEAT_TOLERANCE_MS) {
        return decided('already_canceled', {
          providerStatus: 'canceled',
          message: `Document request was already cancelled (updated_at ${updated})`,
        });
      }
      return {
        ...decided('canceled', { providerStatus: state, message: 'Document request cancelled' }),
        uncertainRepeat: true,
      };
    }
    if (state === 'completed' || state === 'expired') {
      return decided('not_cancelable', {
        providerStatus: state,
        message: `Document request is ${state}; it can no longer be cancelled`,
      });
    }
    return decided('failed', {
      providerStatus: state,
      message: `mycreditapp answered ${status} but the document request is still ${state}`,
    });
  }
  const detail = parseDetail(response.body);
  const said = detail.messages.join('; ') || brief(response.body) || `HTTP ${status}`;
  if (status === 401) return { kind: 'unauthorized', message: `mycreditapp rejected the credentials (${said})` };
  if (status === 403) {
    return decided('rejected', {
      message: `mycreditapp refused access: check Requester-Organization-ID, Target-Organization-ID and that the organizations are connected (${said})`,
    });
  }
  if (status === 404) {
    return saysResourceNotFound(response.body)
      ? decided('not_found', { message: `mycreditapp does not know this document request (${said})` })
      : misrouted('mycreditapp', response, MISROUTE_CHECK);
  }
  const body = asObject(parseJson(response.body));
  const stateField = documentStatus(body?.status);
  const words = `${detail.codes.join(' ')} ${detail.messages.join(' ')} ${stateField ?? ''}`.toLowerCase();
  if (/already[\s_-]*(been[\s_-]*)?cancel/.test(words) || stateField === 'canceled') {
    return decided('already_canceled', {
      providerStatus: 'canceled',
      message: `Document request was already cancelled (${said})`,
    });
  }
  const terminal = /(?:^|[^a-z])(completed?|expired?)(?:[^a-z]|$)/.exec(words)?.[1];
  if (terminal) {
    const state = terminal.startsWith('complete') ? 'completed' : 'expired';
    return decided('not_cancelable', {
      providerStatus: state,
      message: `Document request is ${state}; it can no longer be cancelled (${said})`,
    });
  }
  // "is canceled", "status: canceled", "request_canceled" name the state; "cannot be canceled" does not.
  if (/(?:is|was|been|status|state)[\s:_-]*cancell?ed|_cancell?ed(?:[^a-z]|$)/.test(words)) {
    return decided('already_canceled', {
      providerStatus: 'canceled',
      message: `Document request was already cancelled (${said})`,
    });
  }
  // A refusal that names no state may be a repeat of our own cancel: the ledger decides (shared/core/cancel.ts).
  const stateless = {
    ...decided('not_cancelable', { message: `Document request cannot be cancelled in its state (${said})` }),
    uncertainRepeat: true,
  };
  if (detail.locates || status === 422 || status === 400) {
    if (
      !detail.locates &&
      /not[\s_-]*cancel|cannot[\s_-]*be[\s_-]*(cancel|processed)|invalid[\s_-]*(state|status)/.test(words)
    )
      return stateless;
    return decided('rejected', { message: `mycreditapp rejected the request (HTTP ${status}: ${said})` });
  }
  if (status === 409) return stateless;
  return decided('rejected', { message: `mycreditapp rejected the request (HTTP ${status}: ${said})` });
}

// ---- credit applications ----

export const CREDIT_APPLICATION_STATUSES = [
  'pending',
  'internal_review',
  'external_review',
  'needs_action',
  'approved',
  'finalized',
  'declined',
  'rejected',
  'expired',
  'sign_document_created',
  'sign_document_in_progress',
  'sign_document_completed',
  'sign_document_expired',
  'sign_document_canceled',
  'sign_document_declined',
  'sign_document_process_failed',
] as const;

/** Terminal statuses (PROVIDERS.md 1.2, inferred): nothing more happens to the application. */
export const TERMINAL_APPLICATION_STATUSES: readonly string[] = [
  'approved',
  'finalized',
  'declined',
  'rejected',
  'expired',
  'sign_document_completed',
  'sign_document_expired',
  'sign_document_canceled',
  'sign_document_declined',
  'sign_document_process_failed',
];

/** A timestamp, with or without a timezone (none means UTC), normalised to ISO-8601 UTC. */
const Timestamp = z.pipe(
  z
    .string()
    .check(
      z.refine((v) => Number.isFinite(parseTimestamp(v)), 'must be a timestamp (ISO-8601; no timezone means UTC)'),
    ),
  z.transform((v: string) => new Date(parseTimestamp(v)).toISOString()),
);

/** The fields we rely on are checked; the rest of the application is kept as the provider sent it. */
export const CreditApplication = z.looseObject({
  id: z.string().check(z.minLength(1)),
  status: z.string().check(z.minLength(1)),
  credit_application_type: z.optional(z.nullable(z.string())),
  created_at: z.optional(z.nullable(Timestamp)),
  updated_at: z.optional(z.nullable(Timestamp)),
  expires_at: z.optional(z.nullable(Timestamp)),
});
export type CreditApplication = z.infer<typeof CreditApplication> & { terminal: boolean; expired: boolean };

export type LookupClassification =
  | { kind: 'found'; application: CreditApplication }
  | Exclude<Classification, { kind: 'check-state' }>;

/** A 2xx lookup whose body is not an application we can read is retried, then `failed`: never final. */
export function unreadableApplication(response: RawResponse): string | undefined {
  if (response.status < 200 || response.status >= 300) return undefined;
  return z.safeParse(CreditApplication, parseJson(response.body)).success
    ? undefined
    : `unreadable credit application (HTTP ${response.status})`;
}

export function classifyLookup(response: RawResponse, now = Date.now()): LookupClassification {
  const { status } = response;
  if (status >= 300) {
    const said = parseDetail(response.body).messages.join('; ') || brief(response.body) || `HTTP ${status}`;
    if (status === 401) return { kind: 'unauthorized', message: `mycreditapp rejected the credentials (${said})` };
    if (status === 404) {
      if (!saysResourceNotFound(response.body)) return misrouted('mycreditapp', response, MISROUTE_CHECK);
      return decided('not_found', { message: `mycreditapp does not know this credit application (${said})` });
    }
    return decided('rejected', { message: `mycreditapp refused the lookup (HTTP ${status}: ${said})` });
  }
  const json = parseJson(response.body);
  const parsed = z.safeParse(CreditApplication, json);
  if (!parsed.success) {
    const issues = toInputIssues(parsed.error, json).map((i) => `${i.path || 'body'} ${i.message}`);
    return decided('failed', {
      message: `mycreditapp answered with an application we cannot read: ${issues.join('; ')}`,
    });
  }
  const application = parsed.data;
  const expiresAt = application.expires_at ? Date.parse(application.expires_at) : undefined;
  return {
    kind: 'found',
    application: {
      ...application,
      terminal: TERMINAL_APPLICATION_STATUSES.includes(application.status),
      expired: application.status === 'expired' || (expiresAt !== undefined && expiresAt <= now),
    },
  };
}
