/**
 * mycreditapp's OAuth2 client-credentials token, cached until shortly before it expires and refreshed after a 401.
 * Both mycreditapp operations call through `authorized`, which also refreshes the secret once when the client
 * credentials themselves are refused (they may have been rotated).
 */

import type { ProviderSecret } from '#shared/aws/secrets.ts';
import { type Deps, type OperationContext, sendOptions } from '#shared/core/cancel.ts';
import type { HttpRequest, HttpResponse, RawResponse, SendOptions } from '#shared/http/types.ts';
import { registerSecretValues } from '#shared/observability/log.ts';
import { malformedSuccess, misrouted } from '#shared/providers/common.ts';
import { apiRoot, isMaintenance, MISROUTE_CHECK, parseDetail, parseToken, RATE, tokenRequest } from './adapter.ts';
import type { MyCreditAppSecret } from './secret.ts';

interface CachedToken {
  accessToken: string;
  /** Epoch ms after which the token is not used: a minute (or a tenth of its life) before it expires. */
  renewAt: number;
}

const tokens = new Map<string, CachedToken>();
const cacheKey = (root: string, secret: ProviderSecret<typeof MyCreditAppSecret>) =>
  `${root}|${secret.clientId}|${secret.clientSecret.length}`;

/** What `authorized` gives back: the provider's answer, or the refusal of our credentials. */
export type Authorized =
  | { kind: 'answer'; response: HttpResponse }
  | { kind: 'unauthorized'; message: string; response: HttpResponse };

function transient(response: { status: number; body: string; headers: Record<string, string | undefined> }) {
  return isMaintenance(response) ?? malformedSuccess(response);
}

type TokenResult = { accessToken: string } | { refused: string; response: HttpResponse };

async function token(
  secret: ProviderSecret<typeof MyCreditAppSecret>,
  deps: Deps,
  key: string,
  options: SendOptions,
  force: boolean,
): Promise<TokenResult> {
  const cached = tokens.get(key);
  if (cached && !force && cached.renewAt > Date.now()) return { accessToken: cached.accessToken };
  // A 2xx without an access token proves nothing about the credentials: retried, then `failed`, never `rejected`.
  const response = await deps.http.send(tokenRequest(secret), {
    ...options,
    isTransient: (r) =>
      options.isTransient?.(r) ??
      (r.status >= 200 && r.status < 300 && !parseToken(r) ? 'token answer without an access_token' : undefined),
  });
  const parsed = response.status < 300 ? parseToken(response) : undefined;
  if (!parsed) {
    tokens.delete(key);
    if (response.status === 404) {
      // No token route there: the API root is wrong, not the credentials.
      const { message = '' } = misrouted('mycreditapp', response, MISROUTE_CHECK);
      return { refused: `${message} (at /oauth2/token)`, response };
    }
    const said = parseDetail(response.body).messages.join('; ') || `HTTP ${response.status}`;
    return { refused: `mycreditapp refused the client credentials at /oauth2/token (${said})`, response };
  }
  // The access token is a credential too: scrubbed from logs and outcomes like the client secret.
  registerSecretValues([parsed.accessToken]);
  const lifeMs = parsed.expiresInSeconds * 1000;
  tokens.set(key, { accessToken: parsed.accessToken, renewAt: Date.now() + lifeMs - Math.min(60_000, lifeMs / 10) });
  return { accessToken: parsed.accessToken };
}

/**
 * Sends `build(root, token)` with a valid token: a 401 drops the token and tries once with a new one. A refusal
 * of the client credentials comes back as `unauthorized` (the caller's secret store then refreshes the secret).
 */
export async function authorized(
  secret: ProviderSecret<typeof MyCreditAppSecret>,
  deps: Deps,
  ctx: OperationContext,
  build: (root: string, accessToken: string) => HttpRequest,
  /** Names an answer to the call (not the token) that must be retried although its status says otherwise. */
  unproven?: (response: RawResponse) => string | undefined,
): Promise<Authorized> {
  const root = apiRoot(secret);
  const key = cacheKey(root, secret);
  const options = sendOptions(RATE, ctx, deps, { isTransient: transient });
  const callOptions = unproven
    ? sendOptions(RATE, ctx, deps, { isTransient: (r) => transient(r) ?? unproven(r) })
    : options;
  for (const force of [false, true]) {
    const t = await token(secret, deps, key, options, force);
    if ('refused' in t) return { kind: 'unauthorized', message: t.refused, response: t.response };
    const response = await deps.http.send(build(root, t.accessToken), callOptions);
    if (response.status !== 401) return { kind: 'answer', response };
    tokens.delete(key);
    if (force)
      return {
        kind: 'unauthorized',
        message: `mycreditapp refused a fresh access token (HTTP 401: ${parseDetail(response.body).messages.join('; ')})`,
        response,
      };
  }
  throw new Error('unreachable');
}

/** Forgets every cached token (tests). */
export function clearTokens(): void {
  tokens.clear();
}
