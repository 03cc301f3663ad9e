/**
 * GoCardless contract: the cancel-billing-request handler, through both event shapes, against the simulator over
 * real loopback HTTP, for every item of PROVIDERS.md 4.7 and the unknowns it leaves open.
 */
import {
  AuthenticationError,
  Environments,
  GoCardlessClient,
  IdempotentCreationConflictError,
  InvalidApiUsageError,
  InvalidStateError,
  RateLimitError,
  ValidationFailedError,
} from 'gocardless-nodejs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { handler } from '#functions/cancel-billing-request/handler.ts';
import { GOCARDLESS_DEMO, GoCardlessSimulator } from '#local/simulators/gocardless.ts';
import { MemoryIdempotencyStore, setIdempotencyStore } from '#shared/handler/idempotency.ts';
import { callApi, callTask } from '#test/support/invoke.ts';
import { useSecrets } from '#test/support/providers.ts';

const sim = new GoCardlessSimulator();
beforeAll(async () => {
  await sim.start();
});
afterAll(() => sim.stop());
beforeEach(() => {
  sim.reset();
  useSecrets({ gocardless: { accessToken: GOCARDLESS_DEMO.accessToken, baseUrl: sim.url } });
});

const cancel = (id: string, init: { body?: unknown; headers?: Record<string, string> } = {}) =>
  callApi(handler, {
    method: 'POST',
    route: '/v1/gocardless/billing-requests/{billingRequestId}/cancel',
    path: `/v1/gocardless/billing-requests/${id}/cancel`,
    pathParameters: { billingRequestId: id },
    ...init,
  });
const cancels = () => sim.received('POST', /\/actions\/cancel$/);

describe('GoCardless: cancel a billing request', () => {
  it('cancels a pending billing request: 200 canceled, with the documented headers and envelope', async () => {
    const res = await cancel(GOCARDLESS_DEMO.pending, { body: { metadata: { reason: 'declined' } } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      provider: 'gocardless',
      operation: 'cancel-billing-request',
      target: { billingRequestId: GOCARDLESS_DEMO.pending },
      outcome: 'canceled',
      providerStatus: 'cancelled',
      httpStatus: 200,
      attempts: 1,
    });
    const [sent] = cancels();
    expect(sent?.headers['gocardless-version']).toBe('2015-07-06');
    expect(sent?.headers.authorization).toMatch(/^Bearer /);
    expect(sent?.headers['idempotency-key']).toMatch(/^cancel-BRQ000DEMOPEND1-[0-9a-f]{32}$/);
    expect(JSON.parse(sent?.body ?? '')).toEqual({ data: { metadata: { reason: 'declined' } } });
    expect(sim.events).toEqual([
      expect.objectContaining({ action: 'cancelled', details: { cause: 'billing_request_cancelled', origin: 'api' } }),
    ]);
  });

  it('sends {"data": {}} when there is no metadata, and cancels a ready_to_fulfil request', async () => {
    const res = await cancel(GOCARDLESS_DEMO.ready);
    expect(res.body.outcome).toBe('canceled');
    expect(JSON.parse(cancels()[0]?.body ?? '')).toEqual({ data: {} });
  });

  it('reports a repeat as already_canceled (422 invalid_state, read back as cancelled): one effective cancel', async () => {
    await cancel(GOCARDLESS_DEMO.pending);
    const again = await cancel(GOCARDLESS_DEMO.pending);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ outcome: 'already_canceled', providerStatus: 'cancelled', httpStatus: 422 });
    expect(sim.received('GET', `/billing_requests/${GOCARDLESS_DEMO.pending}`)).toHaveLength(1);
    expect(sim.effectiveCancels.get(GOCARDLESS_DEMO.pending)).toBe(1);
  });

  it.each(['cancellation_failed', 'billing_request_not_cancellable', 'invalid_state'])(
    'reads the state back whatever the invalid_state reason (%s)',
    async (reason) => {
      sim.options.invalidStateReason = reason;
      const res = await cancel(GOCARDLESS_DEMO.fulfilled);
      expect(res.status).toBe(409);
      expect(res.body).toMatchObject({ outcome: 'not_cancelable', providerStatus: 'fulfilled' });
    },
  );

  it('a fulfilling billing request is not_cancelable', async () => {
    sim.add('BRQ000FULFILLING', 'fulfilling');
    expect((await cancel('BRQ000FULFILLING')).body).toMatchObject({
      outcome: 'not_cancelable',
      providerStatus: 'fulfilling',
    });
  });

  it('an unknown billing request is not_found (404)', async () => {
    const res = await cancel('BRQ000UNKNOWN99');
    expect(res.status).toBe(404);
    expect(res.body.outcome).toBe('not_found');
  });

  it('a bad access token is rejected (502) after one refresh of the secret, never retried further', async () => {
    useSecrets({ gocardless: { accessToken: 'sandbox_wrong_token_123', baseUrl: sim.url } });
    const res = await cancel(GOCARDLESS_DEMO.pending);
    expect(res.status).toBe(502);
    expect(res.body.outcome).toBe('rejected');
    expect(res.body.message).toMatch(/rejected the access token/);
    expect(res.body.message).not.toContain('sandbox_wrong_token_123');
    expect(cancels()).toHaveLength(2);
  });

  it('checks metadata limits before sending: 400 with every problem, and no request made', async () => {
    const res = await cancel(GOCARDLESS_DEMO.pending, {
      body: { metadata: { a: '1', b: '2', c: '3', ['k'.repeat(51)]: 'x'.repeat(501) } },
    });
    expect(res.status).toBe(400);
    expect(res.body.issues).toEqual(
      expect.arrayContaining([
        { path: `body.metadata.${'k'.repeat(51)}`, message: 'metadata keys are 1 to 50 characters' },
        { path: `body.metadata.${'k'.repeat(51)}`, message: 'metadata values are at most 500 characters' },
        { path: 'body.metadata', message: 'metadata holds at most 3 keys' },
      ]),
    );
    expect(sim.requests).toHaveLength(0);
  });

  it('rejects a malformed billing request id and an unknown body field before sending', async () => {
    const res = await cancel('MD000123', { body: { metadata: {}, colour: 'red' } });
    expect(res.status).toBe(400);
    expect(res.body.issues?.map((i) => i.path)).toEqual(['path.billingRequestId', 'body']);
    expect(sim.requests).toHaveLength(0);
  });

  it('a validation_failed answer is rejected with the provider reason', async () => {
    sim.inject({
      fault: {
        kind: 'status',
        status: 422,
        body: {
          error: {
            type: 'validation_failed',
            message: 'Validation failed',
            errors: [{ field: 'metadata', message: 'is invalid', request_pointer: '/data/metadata' }],
          },
        },
      },
    });
    const res = await cancel(GOCARDLESS_DEMO.pending);
    expect(res.body).toMatchObject({ outcome: 'rejected', httpStatus: 422 });
    expect(res.body.message).toMatch(/validation_failed: Validation failed; metadata is invalid/);
  });

  it('waits until ratelimit-reset on a 429 and then cancels', async () => {
    await fetch(`${sim.origin}/__sim/config`, {
      method: 'POST',
      body: JSON.stringify({ rateLimit: 1, windowMs: 1_000 }),
    });
    const res = await cancel(GOCARDLESS_DEMO.pending);
    expect(res.body.outcome).toBe('canceled');
    const statuses = sim.requests.map((r) => r.status);
    // The cancel, then the read-back was never needed; a second cancel hits the limit and waits.
    const second = await cancel(GOCARDLESS_DEMO.ready);
    expect(second.body).toMatchObject({ outcome: 'canceled', attempts: 2 });
    expect(sim.requests.map((r) => r.status)).toEqual([...statuses, 429, 200]);
    const [limited, ok] = sim.requests.slice(-2);
    expect(ok!.at - limited!.at).toBeGreaterThanOrEqual(500);
  });

  it('treats an HTML 429 as a rate limit too', async () => {
    sim.inject({ fault: { kind: 'status', status: 429, html: true } });
    const res = await cancel(GOCARDLESS_DEMO.pending);
    expect(res.body).toMatchObject({ outcome: 'canceled', attempts: 2 });
  });

  it('a 429 asking for a long wait fails fast: 503 with Retry-After, and Provider.RateLimited in a task', async () => {
    const far = new Date(Date.now() + 120_000).toUTCString();
    sim.inject({
      fault: {
        kind: 'status',
        status: 429,
        headers: { 'ratelimit-reset': far },
        body: { error: { type: 'invalid_api_usage' } },
      },
      times: 2,
    });
    const res = await cancel(GOCARDLESS_DEMO.pending);
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ outcome: 'failed', failure: 'rate_limited' });
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(100);
    const task = await callTask(handler, {
      item: { provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending },
    });
    expect(task.error?.name).toBe('Provider.RateLimited');
    expect(JSON.parse(task.error?.message ?? '')).toMatchObject({
      outcome: 'failed',
      target: { billingRequestId: GOCARDLESS_DEMO.pending },
    });
  });

  it('retries a 500 and cancels; a 500 that persists is failed (503)', async () => {
    sim.inject({
      fault: { kind: 'status', status: 500, body: { error: { type: 'gocardless', message: 'Internal error' } } },
    });
    expect((await cancel(GOCARDLESS_DEMO.pending)).body).toMatchObject({ outcome: 'canceled', attempts: 2 });
    sim.inject({ fault: { kind: 'status', status: 500 }, times: Number.POSITIVE_INFINITY });
    const res = await cancel(GOCARDLESS_DEMO.ready);
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ outcome: 'failed', failure: 'transient', attempts: 4 });
  });

  it.each([
    ['a truncated answer', { kind: 'truncate' as const }],
    ['a malformed answer', { kind: 'malformed' as const }],
  ])(
    'after %s to a cancel that took effect, the retry with the same key confirms it: canceled, once',
    async (_label, fault) => {
      sim.inject({ fault, path: '/billing_requests/', method: 'POST' });
      const res = await cancel(GOCARDLESS_DEMO.pending);
      expect(res.body).toMatchObject({ outcome: 'canceled', attempts: 2 });
      const keys = new Set(cancels().map((r) => r.headers['idempotency-key']));
      expect(keys.size).toBe(1);
      expect(sim.effectiveCancels.get(GOCARDLESS_DEMO.pending)).toBe(1);
    },
  );

  it('a retried Step Functions task reuses the item key: no second call; a lost record meets the provider idempotency (409 or replay)', async () => {
    const input = {
      item: { provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending },
      idempotencyKey: 'exec-1/item-0',
    };
    expect((await callTask(handler, input)).result).toMatchObject({ outcome: 'canceled' });
    // The retried state: the function's own idempotency record answers, GoCardless is not called again.
    expect((await callTask(handler, input)).result).toMatchObject({ outcome: 'canceled' });
    expect(cancels()).toHaveLength(1);
    // The Lambda died after cancelling, before its record was kept: GoCardless's idempotency answers instead.
    setIdempotencyStore(new MemoryIdempotencyStore());
    expect((await callTask(handler, input)).result).toMatchObject({
      outcome: 'canceled',
      httpStatus: 409,
      providerStatus: 'cancelled',
    });
    sim.options.idempotencyReplay = 'replay';
    setIdempotencyStore(new MemoryIdempotencyStore());
    expect((await callTask(handler, input)).result).toMatchObject({ outcome: 'canceled', httpStatus: 200 });
    // A different logical cancellation (an operator re-run) learns it was already cancelled.
    const rerun = await callTask(handler, { ...input, idempotencyKey: 'exec-2/item-0' });
    expect(rerun.result).toMatchObject({ outcome: 'already_canceled' });
    expect(sim.effectiveCancels.get(GOCARDLESS_DEMO.pending)).toBe(1);
  });

  it('a 200 without a status is read back: cancelled there is canceled (our request did it), once', async () => {
    const br = sim.billingRequests.get(GOCARDLESS_DEMO.pending);
    if (br) br.status = 'cancelled'; // the cancel took effect; its answer lacked the status
    sim.inject({
      fault: { kind: 'status', status: 200, body: { billing_requests: { id: GOCARDLESS_DEMO.pending } } },
      method: 'POST',
    });
    const res = await cancel(GOCARDLESS_DEMO.pending);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ outcome: 'canceled', providerStatus: 'cancelled', httpStatus: 200 });
    expect(sim.received('GET', `/billing_requests/${GOCARDLESS_DEMO.pending}`)).toHaveLength(1);
  });

  it.each([
    ['{"unexpected":true}', { unexpected: true }],
    ['a billing request without status', { billing_requests: { id: GOCARDLESS_DEMO.pending } }],
  ])('a 200 without a status (%s) whose read-back shows it still pending is failed, never final', async (_l, body) => {
    sim.inject({ fault: { kind: 'status', status: 200, body }, method: 'POST' });
    const res = await cancel(GOCARDLESS_DEMO.pending);
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ outcome: 'failed', failure: 'transient', providerStatus: 'pending' });
  });

  it('a read-back whose status cannot be read is retried, then failed (503), never rejected', async () => {
    await cancel(GOCARDLESS_DEMO.pending);
    sim.inject({
      fault: { kind: 'status', status: 200, body: { billing_requests: { id: GOCARDLESS_DEMO.pending } } },
      method: 'GET',
      times: Number.POSITIVE_INFINITY,
    });
    const res = await cancel(GOCARDLESS_DEMO.pending);
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ outcome: 'failed', failure: 'transient' });
    expect(sim.received('GET', `/billing_requests/${GOCARDLESS_DEMO.pending}`)).toHaveLength(4);
  });

  it('every attempt loses its answer after the cancel took effect; the retry with the same key is canceled, once', async () => {
    const key = { 'idempotency-key': 'gc-lost-1' };
    sim.inject({ fault: { kind: 'truncate' }, method: 'POST', times: Number.POSITIVE_INFINITY });
    const lost = await cancel(GOCARDLESS_DEMO.pending, { headers: key });
    expect(lost.status).toBe(503);
    expect(lost.body).toMatchObject({ outcome: 'failed', details: { mayHaveTakenEffect: true } });
    sim.clearFaults();
    expect((await cancel(GOCARDLESS_DEMO.pending, { headers: key })).body.outcome).toBe('canceled');
    expect((await cancel(GOCARDLESS_DEMO.pending, { headers: { 'idempotency-key': 'gc-other' } })).body.outcome).toBe(
      'already_canceled',
    );
    expect(sim.effectiveCancels.get(GOCARDLESS_DEMO.pending)).toBe(1);
  });

  it('a wrong baseUrl (GoCardless path_not_found) is rejected naming the configuration, never not_found', async () => {
    useSecrets({ gocardless: { accessToken: GOCARDLESS_DEMO.accessToken, baseUrl: `${sim.url}/v2` } });
    const res = await cancel(GOCARDLESS_DEMO.pending);
    expect(res.status).toBe(502);
    expect(res.body.outcome).toBe('rejected');
    expect(res.body.message).toMatch(/route was not found, not the resource.*gocardless\.baseUrl/);
  });

  it('an HTML 404 page (a proxy) is rejected naming the configuration, never not_found', async () => {
    sim.inject({ fault: { kind: 'status', status: 404, html: true }, method: 'POST' });
    const res = await cancel(GOCARDLESS_DEMO.pending);
    expect(res.body.outcome).toBe('rejected');
    expect(res.body.message).toMatch(/gocardless\.baseUrl/);
  });

  it('rejects a bad task input with Input.Invalid listing every problem, and sends nothing', async () => {
    const task = await callTask(handler, {
      item: { provider: 'gocardless', billingRequestId: 'nope', metadata: { a: 1 } },
    });
    expect(task.error?.name).toBe('Input.Invalid');
    expect(task.error?.issues).toEqual([
      { path: 'item.billingRequestId', message: 'must be a GoCardless billing request id (BRQ...)' },
      { path: 'item.metadata.a', message: 'must be a string' },
    ]);
    expect(sim.requests).toHaveLength(0);
  });
});

/**
 * GoCardless's own Node client (gocardless-nodejs, a devDependency) against the simulator: its parsing code is a
 * second opinion on the simulator's wire format. The client has no base-URL option; its private `Api` keeps the
 * live or sandbox URL in one field, `_baseUrl`, which becomes got's `prefixUrl` on every request. Only that field
 * is replaced (after construction, on this client alone), so every other part of the client runs as shipped.
 */
describe('gocardless-nodejs (the official client) against the simulator', () => {
  const official = (options: { raiseOnIdempotencyConflict?: boolean } = {}) => {
    const client = new GoCardlessClient(GOCARDLESS_DEMO.accessToken, Environments.Sandbox, options);
    (client as unknown as { _api: { _baseUrl: string } })._api._baseUrl = sim.url;
    return client;
  };
  /** Makes the client reuse one Idempotency-Key, as a retry of one logical request would (it sends a fresh UUID on
   * every POST and takes no key from the caller for actions). */
  const withKey = (client: GoCardlessClient, key: string) => {
    (client as unknown as { _api: { generateIdempotencyKey: () => string } })._api.generateIdempotencyKey = () => key;
    return client;
  };

  it('billingRequests.find parses the billing request; the request carries the documented headers', async () => {
    const br = await official().billingRequests.find(GOCARDLESS_DEMO.pending);
    expect(br).toMatchObject({
      id: GOCARDLESS_DEMO.pending,
      status: 'pending',
      links: { creditor: expect.stringMatching(/^CR/) },
      mandate_request: { currency: 'GBP', scheme: 'bacs' },
      resources: { customer: { email: expect.any(String) } },
    });
    expect((br.__response__ as { statusCode: number }).statusCode).toBe(200);
    const [sent] = sim.received('GET', `/billing_requests/${GOCARDLESS_DEMO.pending}`);
    expect(sent?.headers).toMatchObject({ 'gocardless-version': '2015-07-06', accept: 'application/json' });
  });

  it('billingRequests.cancel cancels, with {"data": {...}} and an Idempotency-Key, and parses the answer', async () => {
    const br = await official().billingRequests.cancel(GOCARDLESS_DEMO.ready, { metadata: { reason: 'declined' } });
    expect(br).toMatchObject({ id: GOCARDLESS_DEMO.ready, status: 'cancelled', actions: [] });
    const [sent] = cancels();
    expect(JSON.parse(sent?.body ?? '')).toEqual({ data: { metadata: { reason: 'declined' } } });
    expect(sent?.headers['idempotency-key']).toMatch(/^[0-9a-f-]{36}$/);
    expect(sim.effectiveCancels.get(GOCARDLESS_DEMO.ready)).toBe(1);
  });

  it("every error the simulator sends is one the client's own error classes recognise", async () => {
    const client = official();
    await expect(client.billingRequests.find('BRQ000UNKNOWN99')).rejects.toSatisfy(
      (e) => e instanceof InvalidApiUsageError && e.errors[0]?.reason === 'resource_not_found' && !!e.requestId,
    );
    await expect(client.billingRequests.cancel(GOCARDLESS_DEMO.fulfilled, {})).rejects.toSatisfy(
      (e) => e instanceof InvalidStateError && e.errors[0]?.reason === 'cancellation_failed',
    );
    await expect(
      client.billingRequests.cancel(GOCARDLESS_DEMO.pending, { metadata: { a: '1', b: '2', c: '3', d: '4' } }),
    ).rejects.toSatisfy((e) => e instanceof ValidationFailedError && e.errors[0]?.field === 'metadata');
    const stranger = new GoCardlessClient('sandbox_wrong_token_123', Environments.Sandbox, {});
    (stranger as unknown as { _api: { _baseUrl: string } })._api._baseUrl = sim.url;
    await expect(stranger.billingRequests.find(GOCARDLESS_DEMO.pending)).rejects.toBeInstanceOf(AuthenticationError);
    sim.inject({ fault: { kind: 'status', status: 429, body: sim429() } });
    await expect(client.billingRequests.cancel(GOCARDLESS_DEMO.pending, {})).rejects.toBeInstanceOf(RateLimitError);
  });

  it("a reused Idempotency-Key on the cancel action (409 mode): the conflict names the resource the key first acted on; the client's default path crashes, as its fetch for actions is null", async () => {
    await withKey(official(), 'one-key').billingRequests.cancel(GOCARDLESS_DEMO.pending, {});
    const raising = withKey(official({ raiseOnIdempotencyConflict: true }), 'one-key');
    // Even aimed at another billing request, the key's conflict names the first one.
    await expect(raising.billingRequests.cancel(GOCARDLESS_DEMO.ready, {})).rejects.toSatisfy(
      (e) => e instanceof IdempotentCreationConflictError && e.conflictingResourceId === GOCARDLESS_DEMO.pending,
    );
    await expect(withKey(official(), 'one-key').billingRequests.cancel(GOCARDLESS_DEMO.pending, {})).rejects.toThrow(
      TypeError,
    );
    expect(sim.effectiveCancels.get(GOCARDLESS_DEMO.pending)).toBe(1);
    expect(sim.effectiveCancels.get(GOCARDLESS_DEMO.ready)).toBeUndefined();
  });

  it('a reused Idempotency-Key on the cancel action (replay mode): the client gets the first answer again', async () => {
    sim.options.idempotencyReplay = 'replay';
    const first = await withKey(official(), 'k2').billingRequests.cancel(GOCARDLESS_DEMO.pending, {});
    const again = await withKey(official(), 'k2').billingRequests.cancel(GOCARDLESS_DEMO.pending, {});
    expect(again).toMatchObject({ id: first.id, status: 'cancelled' });
    expect(sim.effectiveCancels.get(GOCARDLESS_DEMO.pending)).toBe(1);
  });

  it('the client retries a GET after a 500, a 502 and a reset (through its HTTP library, got) but never a POST', async () => {
    sim.inject({ fault: { kind: 'status', status: 500, body: sim500() }, method: 'GET' });
    expect((await official().billingRequests.find(GOCARDLESS_DEMO.pending)).status).toBe('pending');
    expect(sim.received('GET', `/billing_requests/${GOCARDLESS_DEMO.pending}`)).toHaveLength(2);
    sim.inject({ fault: { kind: 'status', status: 502, html: true }, method: 'GET' });
    sim.inject({ fault: { kind: 'reset' }, method: 'GET' });
    expect((await official().billingRequests.find(GOCARDLESS_DEMO.pending)).status).toBe('pending');
    expect(sim.received('GET', `/billing_requests/${GOCARDLESS_DEMO.pending}`)).toHaveLength(5);
    sim.inject({ fault: { kind: 'status', status: 500, body: sim500() }, method: 'POST' });
    await expect(official().billingRequests.cancel(GOCARDLESS_DEMO.pending, {})).rejects.toThrow();
    expect(cancels()).toHaveLength(1);
  });
});

const sim500 = () => ({
  error: {
    message: 'Internal server error',
    errors: [{ reason: 'internal_server_error', message: 'Internal server error' }],
    documentation_url: 'https://developer.gocardless.com/api-reference#internal_server_error',
    type: 'gocardless',
    request_id: 'sim-500',
    code: 500,
  },
});
const sim429 = () => ({
  error: {
    message: 'Rate limit exceeded',
    errors: [{ reason: 'rate_limit_exceeded', message: 'Rate limit exceeded' }],
    documentation_url: 'https://developer.gocardless.com/api-reference#rate_limit_exceeded',
    type: 'invalid_api_usage',
    request_id: 'sim-429',
    code: 429,
  },
});
