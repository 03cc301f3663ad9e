/**
 * No leaks: with known secret values configured, no log line, response or error of any path (successes,
 * provider refusals, providers that echo our credentials back, crashes, configuration errors) contains them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handler as cancelBillingRequest } from '#functions/cancel-billing-request/handler.ts';
import { handler as cancelDocumentRequest } from '#functions/cancel-document-request/handler.ts';
import { handler as cancelSigningProcesses } from '#functions/cancel-signing-processes/handler.ts';
import { handler as cancelVerificationOrder } from '#functions/cancel-verification-order/handler.ts';
import { handler as getCreditApplication } from '#functions/get-credit-application/handler.ts';
import { AucoSimulator } from '#local/simulators/auco.ts';
import { GoCardlessSimulator } from '#local/simulators/gocardless.ts';
import { MYCREDITAPP_DEMO as D, MyCreditAppSimulator } from '#local/simulators/mycreditapp.ts';
import { TrueworkSimulator } from '#local/simulators/truework.ts';
import { SecretStore, SecretsManagerSource } from '#shared/aws/secrets.ts';
import { MemoryIdempotencyStore, setIdempotencyStore } from '#shared/handler/idempotency.ts';
import { log, setLogLevel, setLogSink } from '#shared/observability/log.ts';
import { GoCardlessSecret } from '#shared/providers/gocardless/secret.ts';
import { clearTokens } from '#shared/providers/mycreditapp/session.ts';
import { callApi, callTask } from '#test/support/invoke.ts';
import { reply, startLoopback } from '#test/support/loopback.ts';
import { useSecrets } from '#test/support/providers.ts';
import { startFakeSecretsManager } from '#test/support/secrets-manager.ts';

const SECRETS = {
  accessToken: 'sandbox_KNOWNSECRET_gocardless_0001',
  apiKey: 'tw_sk_test_KNOWNSECRET_truework_0001',
  privateKey: 'prk_KNOWNSECRET_auco_private_0001',
  publicKey: 'puk_KNOWNSECRET_auco_public_0001',
  clientSecret: 'KNOWNSECRET-mycreditapp-0001',
  clientId: 'KNOWNSECRET-client-id-0001',
};
const sims = {
  gocardless: new GoCardlessSimulator({ accessTokens: [SECRETS.accessToken] }),
  truework: new TrueworkSimulator({ apiKeys: [SECRETS.apiKey] }),
  auco: new AucoSimulator({ privateKeys: [SECRETS.privateKey], publicKeys: [SECRETS.publicKey] }),
  mycreditapp: new MyCreditAppSimulator({ clientId: SECRETS.clientId, clientSecret: SECRETS.clientSecret }),
};
const seen: string[] = [];
let restore: (line: string) => void;
let accessToken = '';

beforeAll(async () => {
  await Promise.all(Object.values(sims).map((s) => s.start()));
  restore = setLogSink((line) => seen.push(line));
  setLogLevel('debug');
  useSecrets({
    gocardless: { accessToken: SECRETS.accessToken, baseUrl: sims.gocardless.url },
    truework: { apiKey: SECRETS.apiKey, baseUrl: sims.truework.url },
    auco: { privateKey: SECRETS.privateKey, publicKey: SECRETS.publicKey, baseUrl: sims.auco.url },
    mycreditapp: { clientId: SECRETS.clientId, clientSecret: SECRETS.clientSecret, baseUrl: sims.mycreditapp.url },
  });
});
afterAll(async () => {
  setLogSink(restore);
  setLogLevel('warn');
  await Promise.all(Object.values(sims).map((s) => s.stop()));
});

/** Everything a caller or an operator could see from a call. */
async function observe(call: () => Promise<unknown>): Promise<void> {
  try {
    seen.push(JSON.stringify(await call()));
  } catch (error) {
    seen.push(`${(error as Error).name}: ${(error as Error).message}\n${(error as Error).stack ?? ''}`);
  }
}

/** Each route as a caller would call it. */
const cancel = {
  billing: (billingRequestId: string) =>
    callApi(cancelBillingRequest, { method: 'POST', route: 'r', path: 'p', pathParameters: { billingRequestId } }),
  order: (orderId: string) =>
    callApi(cancelVerificationOrder, {
      method: 'POST',
      route: 'r',
      path: 'p',
      pathParameters: { orderId },
      body: { reason: 'other' },
    }),
  signing: (codes: string[]) =>
    callApi(cancelSigningProcesses, {
      method: 'POST',
      route: 'r',
      path: 'p',
      body: { codes, message: 'm', email: 'ops@example.com' },
    }),
  document: (requestId: string) =>
    callApi(cancelDocumentRequest, {
      method: 'POST',
      route: 'r',
      path: 'p',
      pathParameters: { orgId: D.hostOrg, requestId },
      headers: { 'requester-organization-id': D.hostOrg, 'target-organization-id': D.guestOrg },
    }),
};

const echo = (text: string) => ({
  kind: 'status' as const,
  status: 400,
  body: {
    error: { message: `bad credentials: ${text}` },
    detail: [{ loc: [], msg: `token ${text}`, type: 'oauth', code: 'x' }],
  },
});

describe('no secret in any log line, response or error', () => {
  it('across successes, refusals, providers echoing our credentials, crashes and configuration errors', async () => {
    // Successes, and the ordinary outcomes.
    await observe(() => cancel.billing('BRQ000DEMOPEND1'));
    await observe(() => cancel.order('ORDER_DEMO_OPEN'));
    await observe(() => cancel.signing(['TR99AQMY31', 'TR99AQFIN1', 'NOPE1']));
    await observe(() => cancel.document(D.pendingRequest));
    await observe(() =>
      callApi(getCreditApplication, {
        method: 'GET',
        route: 'r',
        path: 'p',
        pathParameters: { creditApplicationId: D.pendingApplication },
      }),
    );
    accessToken = [...(sims.mycreditapp as unknown as { tokens: Map<string, number> }).tokens.keys()][0] ?? '';
    expect(accessToken.length).toBeGreaterThan(20);

    // Providers that answer errors echoing our credentials (a misbehaving proxy, a verbose sandbox).
    sims.gocardless.inject({ fault: echo(`Bearer ${SECRETS.accessToken}`) });
    await observe(() => cancel.billing('BRQ000DEMOREADY'));
    sims.truework.inject({ fault: echo(SECRETS.apiKey) });
    await observe(() => cancel.order('ORDER_DEMO_MIXED'));
    sims.auco.inject({
      fault: { kind: 'status', status: 400, body: { message: `key ${SECRETS.privateKey} refused` } },
      method: 'POST',
    });
    sims.auco.inject({
      fault: { kind: 'status', status: 401, body: { message: `key ${SECRETS.publicKey} refused` } },
      method: 'GET',
      times: 2,
    });
    await observe(() => cancel.signing(['TR99AQMY32']));
    sims.mycreditapp.inject({ fault: echo(`${SECRETS.clientSecret} ${accessToken}`), path: '/organizations' });
    await observe(() => cancel.document(D.partialRequest));
    // A 5xx echoing a credential, retried until the retries run out, as a task (the error Step Functions sees).
    sims.gocardless.inject({
      fault: { kind: 'status', status: 500, body: `internal: ${SECRETS.accessToken}` },
      times: Number.POSITIVE_INFINITY,
    });
    await observe(() =>
      callTask(cancelBillingRequest, { item: { provider: 'gocardless', billingRequestId: 'BRQ000DEMOREADY' } }).then(
        (r) => r.error ?? r.result,
      ),
    );
    sims.gocardless.clearFaults();

    // Wrong credentials, refused by each provider.
    clearTokens();
    useSecrets({
      gocardless: { accessToken: `${SECRETS.accessToken}X`, baseUrl: sims.gocardless.url },
      mycreditapp: {
        clientId: SECRETS.clientId,
        clientSecret: `${SECRETS.clientSecret}X`,
        baseUrl: sims.mycreditapp.url,
      },
    });
    await observe(() => cancel.billing('BRQ000DEMOREADY'));
    await observe(() => cancel.document(D.partialRequest));
    // A bug that puts a secret in an exception: logged (redacted), answered 500 without internals.
    log.error('an unexpected error', { error: new Error(`boom with ${SECRETS.privateKey} and ${accessToken}`) });
    // A malformed secret in Secrets Manager that holds the credential.
    const sm = await startFakeSecretsManager();
    process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = sm.url;
    sm.secrets.set('broken', `{"accessToken": "${SECRETS.accessToken}", oops`);
    sm.secrets.set('wrong-shape', JSON.stringify({ accessToken: 42, extra: SECRETS.apiKey }));
    await observe(() => new SecretStore(new SecretsManagerSource(() => 'broken')).get('gocardless', GoCardlessSecret));
    await observe(() =>
      new SecretStore(new SecretsManagerSource(() => 'wrong-shape')).get('gocardless', GoCardlessSecret),
    );
    delete process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER;
    await sm.close();

    const everything = seen.join('\n');
    expect(seen.length).toBeGreaterThan(15);
    expect(everything).toContain('[REDACTED]');
    for (const value of [...Object.values(SECRETS), accessToken]) expect(everything, value).not.toContain(value);
  });
});

describe('a provider that echoes the credential in every field it returns', () => {
  it('leaves it in no answer, task result, ledger entry, idempotency record or log line, not even a prefix', async () => {
    const token = SECRETS.accessToken;
    const apiKey = SECRETS.apiKey;
    const echoHeaders = (s: string) => ({ 'x-request-id': s, 'request-id': s });
    const loop = await startLoopback();
    const { ledger } = useSecrets({
      gocardless: { accessToken: token, baseUrl: loop.url },
      truework: { apiKey, baseUrl: loop.url },
    });
    const records = new MemoryIdempotencyStore();
    setIdempotencyStore(records);
    const from = seen.length;
    const outputs: unknown[] = [];
    const billing = (key: string) =>
      callApi(cancelBillingRequest, {
        method: 'POST',
        route: 'r',
        path: 'p',
        pathParameters: { billingRequestId: 'BRQ000ECHO0001' },
        headers: { 'idempotency-key': key },
      });
    try {
      // A 200 whose id is the token, with the token as the request id header: kept for replay.
      loop.script(reply(200, { billing_requests: { id: token, status: 'cancelled' } }, echoHeaders(token)));
      const first = await billing('echo-1');
      outputs.push(first, await billing('echo-1'));
      // The shape stays (the field is there), the value does not.
      expect(first.body).toMatchObject({ outcome: 'canceled', providerRequestId: '[REDACTED]' });
      // A 200 whose status is the token.
      loop.script(reply(200, { billing_requests: { id: token, status: token } }, echoHeaders(token)));
      const status = await billing('echo-0');
      outputs.push(status);
      expect(status.body).toMatchObject({ providerRequestId: '[REDACTED]', providerStatus: '[REDACTED]' });
      // A refusal whose error body names it as its request_id, message and reason; the read-back echoes it too.
      loop.script(
        reply(
          422,
          {
            error: {
              type: 'invalid_state',
              request_id: token,
              message: `cannot cancel for ${token}`,
              errors: [{ reason: token, message: token }],
            },
          },
          echoHeaders(token),
        ),
        reply(200, { billing_requests: { id: token, status: 'cancelled' } }, echoHeaders(token)),
      );
      outputs.push(await billing('echo-2'));
      // A long plain-text refusal whose 300-character cut would fall inside the token: scrubbed before the cut.
      loop.script(reply(403, `${'x'.repeat(282)} ${token} trailing`, echoHeaders(token)));
      const cut = await billing('echo-3');
      outputs.push(cut);
      expect(cut.body.message).toContain('[REDACTED]');
      // Truework: verification request ids and states that are the key, as an API answer and as a task whose
      // `failed` outcome becomes the error the execution history shows.
      loop.script(
        reply(200, { id: apiKey, verification_requests: [{ id: apiKey, state: 'canceled' }] }, echoHeaders(apiKey)),
      );
      outputs.push(await cancel.order('ORDER_ECHO_1'));
      loop.script(
        reply(
          200,
          { verification_requests: [{ id: apiKey, state: { canonical_value: apiKey } }] },
          echoHeaders(apiKey),
        ),
      );
      const task = await callTask(cancelVerificationOrder, {
        item: { provider: 'truework', orderId: 'ORDER_ECHO_2', reason: 'other' },
        idempotencyKey: 'echo-task-1',
        batch: { executionId: 'arn:aws:states:eu-west-1:111111111111:execution:Batch:echo', reason: 'declined' },
      });
      expect(task.error?.name).toMatch(/^Provider\./);
      outputs.push(`${task.error?.message}\n${task.error?.stack}`);
      loop.script(reply(200, { verification_requests: [{ id: apiKey, state: 'canceled' }] }, echoHeaders(apiKey)));
      outputs.push(
        await callTask(cancelVerificationOrder, {
          item: { provider: 'truework', orderId: 'ORDER_ECHO_3', reason: 'other' },
          idempotencyKey: 'echo-task-2',
        }),
      );
    } finally {
      await loop.close();
    }
    const kept = [...(records as unknown as { records: Map<string, unknown> }).records.values()];
    expect(kept.length).toBe(3);
    expect(ledger.entries.length).toBeGreaterThan(4);
    const everything = [
      ...seen.slice(from),
      JSON.stringify(outputs),
      JSON.stringify(ledger.entries),
      JSON.stringify(kept),
    ].join('\n');
    expect(everything).toContain('[REDACTED]');
    for (const value of [token, apiKey]) {
      expect(everything, value).not.toContain(value);
      expect(everything, `a prefix of ${value}`).not.toContain(value.slice(0, 12));
    }
  });
});
