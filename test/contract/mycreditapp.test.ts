/**
 * mycreditapp contract: the cancel-document-request and get-credit-application handlers, through both event
 * shapes, against the simulator over real loopback HTTP, for every item of PROVIDERS.md 1.4 and its unknowns.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { handler as batchesHandler } from '#functions/batches/handler.ts';
import { handler as cancelHandler } from '#functions/cancel-document-request/handler.ts';
import { handler as expirationsHandler } from '#functions/expirations/handler.ts';
import { handler as lookupHandler } from '#functions/get-credit-application/handler.ts';
import { MYCREDITAPP_DEMO as D, MyCreditAppSimulator } from '#local/simulators/mycreditapp.ts';
import { clearTokens } from '#shared/providers/mycreditapp/session.ts';
import { callApi, callTask } from '#test/support/invoke.ts';
import { useSecrets } from '#test/support/providers.ts';

const sim = new MyCreditAppSimulator();
beforeAll(async () => {
  await sim.start();
});
afterAll(() => sim.stop());

const secret = (extra: Record<string, unknown> = {}) => ({
  clientId: D.clientId,
  clientSecret: D.clientSecret,
  baseUrl: sim.url,
  ...extra,
});
beforeEach(() => {
  sim.reset();
  clearTokens();
  useSecrets({ mycreditapp: secret() });
});

const orgHeaders = { 'requester-organization-id': D.hostOrg, 'target-organization-id': D.guestOrg };
const cancel = (requestId: string, headers: Record<string, string> = orgHeaders, orgId: string = D.hostOrg) =>
  callApi(cancelHandler, {
    method: 'POST',
    route: '/v1/mycreditapp/organizations/{orgId}/document-requests/{requestId}/cancel',
    path: `/v1/mycreditapp/organizations/${orgId}/document-requests/${requestId}/cancel`,
    pathParameters: { orgId, requestId },
    headers,
  });
const lookup = (id: string, headers: Record<string, string> = {}) =>
  callApi(lookupHandler, {
    method: 'GET',
    route: '/v1/mycreditapp/credit-applications/{creditApplicationId}',
    path: `/v1/mycreditapp/credit-applications/${id}`,
    pathParameters: { creditApplicationId: id },
    headers,
  });
const cancellations = () => sim.received('POST', /\/cancellations$/);
const tokenCalls = () => sim.received('POST', '/oauth2/token');

describe('mycreditapp: cancel a document request', () => {
  it('gets a token with a JSON body, then cancels with the bearer token and both organization headers', async () => {
    const res = await cancel(D.pendingRequest);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      provider: 'mycreditapp',
      operation: 'cancel-document-request',
      target: { orgId: D.hostOrg, requestId: D.pendingRequest },
      outcome: 'canceled',
      providerStatus: 'canceled',
    });
    expect(JSON.parse(tokenCalls()[0]?.body ?? '')).toEqual({ client_id: D.clientId, client_secret: D.clientSecret });
    expect(tokenCalls()[0]?.headers['content-type']).toBe('application/json');
    const [sent] = cancellations();
    expect(sent?.path).toBe(`/organizations/${D.hostOrg}/documents/requests/${D.pendingRequest}/cancellations`);
    expect(sent?.headers).toMatchObject({
      'requester-organization-id': D.hostOrg,
      'target-organization-id': D.guestOrg,
      authorization: expect.stringMatching(/^Bearer /),
    });
  });

  it('caches the token until it expires, then gets a new one after the 401', async () => {
    await cancel(D.pendingRequest);
    await cancel(D.partialRequest);
    expect(tokenCalls()).toHaveLength(1);
    // Expire every token the simulator issued; the next call meets a 401 and gets a new token.
    const issued = (sim as unknown as { tokens: Map<string, number> }).tokens;
    for (const token of issued.keys()) issued.set(token, Date.now() - 1);
    sim.addDocumentRequest('11111111-2222-4333-8444-555555555555', 'pending');
    const res = await cancel('11111111-2222-4333-8444-555555555555');
    expect(res.body.outcome).toBe('canceled');
    expect(tokenCalls()).toHaveLength(2);
    expect(cancellations().map((r) => r.status)).toEqual([200, 200, 401, 200]);
  });

  it('bad client credentials are rejected (502) after one refresh of the secret; the secret never shows', async () => {
    useSecrets({ mycreditapp: secret({ clientSecret: 'wrong-secret-value-999' }) });
    const res = await cancel(D.pendingRequest);
    expect(res.status).toBe(502);
    expect(res.body.message).toMatch(/refused the client credentials/);
    expect(JSON.stringify(res.body)).not.toContain('wrong-secret-value-999');
    expect(tokenCalls()).toHaveLength(2);
    expect(cancellations()).toHaveLength(0);
  });

  it('a token answer without an access_token is retried, then failed (503): never taken for refused credentials', async () => {
    sim.inject({ fault: { kind: 'status', status: 200, body: { unexpected: true } }, path: '/oauth2/token', times: 9 });
    const res = await cancel(D.pendingRequest);
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ outcome: 'failed', failure: 'transient' });
    expect(res.body.message).toMatch(/without an access_token/);
    expect(cancellations()).toHaveLength(0);
  });

  it('checks the organization headers before sending: 400 naming each, nothing sent', async () => {
    const res = await cancel(D.pendingRequest, { 'requester-organization-id': 'acme' });
    expect(res.status).toBe(400);
    expect(res.body.issues).toEqual([
      { path: 'headers.requester-organization-id', message: 'must be a uuid (your organization)' },
      { path: 'headers.target-organization-id', message: 'is required' },
    ]);
    expect(sim.requests).toHaveLength(0);
  });

  it('organizations that are not connected are rejected (403)', async () => {
    const res = await cancel(D.pendingRequest, {
      ...orgHeaders,
      'target-organization-id': 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee',
    });
    expect(res.body).toMatchObject({ outcome: 'rejected', httpStatus: 403 });
    expect(res.body.message).toMatch(/organizations are connected/);
  });

  it.each(['400', '409', '422'] as const)(
    'completed and expired requests are not_cancelable when refused with %s',
    async (status) => {
      sim.options.terminalStatus = status;
      const completed = await cancel(D.completedRequest);
      expect(completed.status).toBe(409);
      expect(completed.body).toMatchObject({ outcome: 'not_cancelable', providerStatus: 'completed' });
      expect((await cancel(D.expiredRequest)).body).toMatchObject({
        outcome: 'not_cancelable',
        providerStatus: 'expired',
      });
    },
  );

  it.each(['200', '400', '409', '422'] as const)(
    'a repeated cancel is already_canceled when the repeat answers %s',
    async (mode) => {
      sim.options.repeatCancel = mode;
      expect((await cancel(D.pendingRequest)).body.outcome).toBe('canceled');
      const again = await cancel(D.pendingRequest);
      expect(again.status).toBe(200);
      expect(again.body.outcome).toBe('already_canceled');
      expect(sim.effectiveCancels.get(D.pendingRequest)).toBe(1);
    },
  );

  it.each(['400', '409', '422'] as const)(
    'with opaque refusals (%s), a repeat is still already_canceled and a completed one not_cancelable',
    async (mode) => {
      sim.options.refusalWording = 'opaque';
      sim.options.repeatCancel = mode;
      sim.options.terminalStatus = mode;
      await cancel(D.pendingRequest);
      expect((await cancel(D.pendingRequest)).body.outcome).toBe('already_canceled');
      expect((await cancel(D.completedRequest)).body.outcome).toBe('not_cancelable');
    },
  );

  it('a request cancelled elsewhere long ago (200 with an old updated_at) is already_canceled', async () => {
    const request = sim.documentRequests.get(D.partialRequest);
    if (request) request.status = 'canceled';
    const res = await cancel(D.partialRequest);
    expect(res.body.outcome).toBe('already_canceled');
    expect(res.body.message).toMatch(/updated_at/);
  });

  it('an unknown document request is not_found (404)', async () => {
    const res = await cancel('00000000-0000-4000-8000-000000000000');
    expect(res.status).toBe(404);
    expect(res.body.outcome).toBe('not_found');
  });

  it.each([503, 400])('maintenance (%i, service_under_maintenance) is retried, then failed (503)', async (status) => {
    sim.options.maintenance = true;
    sim.options.maintenanceStatus = status;
    const res = await cancel(D.pendingRequest);
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ outcome: 'failed', failure: 'transient' });
    expect(tokenCalls()).toHaveLength(4);
  });

  it('maintenance that ends during the retries gives canceled', async () => {
    sim.inject({
      fault: {
        kind: 'status',
        status: 503,
        body: { detail: [{ loc: [], msg: 'maintenance', type: 'maintenance', code: 'service_under_maintenance' }] },
      },
      times: 2,
      path: '/organizations',
    });
    const res = await cancel(D.pendingRequest);
    expect(res.body).toMatchObject({ outcome: 'canceled', attempts: 3 });
  });

  it('a 429 (with and without Retry-After) and a 502 are retried', async () => {
    sim.inject({ fault: { kind: 'status', status: 429, headers: { 'retry-after': '1' } }, path: '/organizations' });
    sim.inject({ fault: { kind: 'status', status: 429 }, path: '/organizations' });
    sim.inject({ fault: { kind: 'status', status: 502, html: true }, path: '/organizations' });
    const res = await cancel(D.pendingRequest);
    expect(res.body).toMatchObject({ outcome: 'canceled', attempts: 4 });
  });

  it('a cancel whose answer is lost after it took effect is reported canceled, once', async () => {
    sim.options.repeatCancel = '409';
    sim.inject({ fault: { kind: 'truncate' }, path: '/organizations' });
    const res = await cancel(D.pendingRequest);
    expect(res.body).toMatchObject({ outcome: 'canceled', attempts: 2 });
    expect(sim.effectiveCancels.get(D.pendingRequest)).toBe(1);
  });

  it.each([
    ['{"unexpected":true}', { unexpected: true }],
    ['{"error":{...}}', { error: { code: 'internal', message: 'something' } }],
  ])('a 200 without a status (%s) is never a success: retried, then failed (503)', async (_label, body) => {
    sim.inject({
      fault: { kind: 'status', status: 200, body },
      path: '/organizations',
      times: Number.POSITIVE_INFINITY,
    });
    const res = await cancel(D.pendingRequest);
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ outcome: 'failed', failure: 'transient', attempts: 4 });
    expect(res.body.message).toMatch(/without the document request's status/);
    // Once the provider answers properly, the retry confirms the cancellation.
    sim.clearFaults();
    sim.inject({ fault: { kind: 'status', status: 200, body }, path: '/organizations' });
    expect((await cancel(D.partialRequest)).body).toMatchObject({ outcome: 'canceled', attempts: 2 });
  });

  it.each([
    ['an HTML 404 page (a proxy)', { kind: 'status' as const, status: 404, html: true }],
    ['an empty 404', { kind: 'status' as const, status: 404 }],
    ["FastAPI's unknown-path 404", { kind: 'status' as const, status: 404, body: { detail: 'Not Found' } }],
  ])('%s is rejected naming the configuration, never not_found', async (_label, fault) => {
    sim.inject({ fault, path: '/organizations' });
    const res = await cancel(D.pendingRequest);
    expect(res.status).toBe(502);
    expect(res.body.outcome).toBe('rejected');
    expect(res.body.message).toMatch(/route was not found, not the resource.*mycreditapp\.baseUrl and apiVersion/);
  });

  it.each(['200', '409'] as const)(
    'every attempt loses its answer after the cancel took effect (503); the caller retries with the same key (repeat answers %s): canceled',
    async (mode) => {
      sim.options.repeatCancel = mode;
      // The repeat must not be told apart by its timestamp: the request was cancelled long before the retry.
      const key = { ...orgHeaders, 'idempotency-key': `lost-answers-${mode}` };
      sim.inject({ fault: { kind: 'truncate' }, path: '/organizations', times: Number.POSITIVE_INFINITY });
      const lost = await cancel(D.pendingRequest, key);
      expect(lost.status).toBe(503);
      expect(lost.body).toMatchObject({ outcome: 'failed', details: { mayHaveTakenEffect: true } });
      expect(sim.effectiveCancels.get(D.pendingRequest)).toBe(1);
      sim.clearFaults();
      const request = sim.documentRequests.get(D.pendingRequest);
      if (request) request.updated_at = '2025-01-02T12:00:00.123456';
      const retried = await cancel(D.pendingRequest, key);
      expect(retried.status).toBe(200);
      expect(retried.body.outcome).toBe('canceled');
      expect(retried.body.message).toMatch(/our earlier attempt of this request took effect/);
      // A different request (another key) learns it was already cancelled.
      const other = await cancel(D.pendingRequest, { ...orgHeaders, 'idempotency-key': `other-${mode}` });
      expect(other.body.outcome).toBe('already_canceled');
      expect(sim.effectiveCancels.get(D.pendingRequest)).toBe(1);
    },
  );

  it('with opaque refusals, a retry after lost answers is never a final not_cancelable: failed (503), still not settled', async () => {
    sim.options.refusalWording = 'opaque';
    sim.options.repeatCancel = '409';
    const key = { ...orgHeaders, 'idempotency-key': 'lost-opaque' };
    sim.inject({ fault: { kind: 'truncate' }, path: '/organizations', times: Number.POSITIVE_INFINITY });
    expect((await cancel(D.pendingRequest, key)).status).toBe(503);
    sim.clearFaults();
    const retried = await cancel(D.pendingRequest, key);
    expect(retried.status).toBe(503);
    expect(retried.body).toMatchObject({ outcome: 'failed', details: { mayHaveTakenEffect: true } });
    expect(retried.body.message).toMatch(/names no state, does not settle it/);
    // Without a lost attempt, the same refusal of a completed request stays not_cancelable.
    sim.options.terminalStatus = '409';
    expect((await cancel(D.completedRequest, { ...orgHeaders, 'idempotency-key': 'fresh' })).body.outcome).toBe(
      'not_cancelable',
    );
  });

  it("a batch task whose attempts all lost their answers is canceled on the state machine's retry of the same item", async () => {
    sim.options.repeatCancel = '409';
    const input = {
      item: {
        provider: 'mycreditapp',
        orgId: D.hostOrg,
        requestId: D.pendingRequest,
        requesterOrganizationId: D.hostOrg,
        targetOrganizationId: D.guestOrg,
      },
      idempotencyKey: 'exec-1/item-0',
      reason: 'declined',
    };
    sim.inject({ fault: { kind: 'truncate' }, path: '/organizations', times: Number.POSITIVE_INFINITY });
    const first = await callTask(cancelHandler, input);
    expect(first.error?.name).toBe('Provider.Transient');
    sim.clearFaults();
    expect((await callTask(cancelHandler, input)).result).toMatchObject({ outcome: 'canceled' });
  });

  it('works with the /v1 version segment, given as a bare origin plus apiVersion', async () => {
    sim.options.apiVersion = 'v1';
    useSecrets({ mycreditapp: secret({ baseUrl: sim.origin, apiVersion: 'v1' }) });
    expect((await cancel(D.pendingRequest)).body.outcome).toBe('canceled');
    expect(cancellations()).toHaveLength(1);
  });

  it('as a task, the batch item carries the organization headers', async () => {
    const { result } = await callTask(cancelHandler, {
      item: {
        provider: 'mycreditapp',
        orgId: D.hostOrg,
        requestId: D.pendingRequest,
        requesterOrganizationId: D.guestOrg,
        targetOrganizationId: D.hostOrg,
      },
      reason: 'declined',
    });
    expect(result).toMatchObject({ outcome: 'canceled' });
    expect(cancellations()[0]?.headers['requester-organization-id']).toBe(D.guestOrg);
  });
});

describe('mycreditapp: read a credit application', () => {
  // The lookup's organization headers default to the secret's organizationId (a batch guard names none).
  beforeEach(() => {
    useSecrets({ mycreditapp: secret({ organizationId: D.hostOrg }) });
  });

  it('returns the application validated, timestamps without a timezone read as UTC, plus terminal and expired', async () => {
    const res = await lookup(D.pendingApplication);
    expect(res.status).toBe(200);
    const raw = sim.creditApplications.get(D.pendingApplication) as { expires_at: string };
    expect(raw.expires_at).not.toMatch(/Z$/);
    expect(res.body).toMatchObject({
      id: D.pendingApplication,
      status: 'pending',
      terminal: false,
      expired: false,
      expires_at: `${raw.expires_at.slice(0, 23)}Z`,
      shipper: { name: 'Demo Shipper' },
      // The rest of the application is kept as mycreditapp sent it (PROVIDERS.md 1.2's shape).
      data: {
        details: { payment_terms: expect.any(String) },
        trade_profile: { trade_types: expect.any(Array) },
        trade_profile_document: { filename: expect.any(String) },
        security_compliance: [expect.objectContaining({ title: expect.any(String) })],
      },
      extra_details: { proposed_amount: expect.any(Number), proposed_terms: expect.any(String) },
    });
  });

  it.each([
    [D.approvedApplication, { status: 'approved', terminal: true, expired: false }],
    [D.declinedApplication, { status: 'declined', terminal: true, expired: false }],
    [D.expiringApplication, { status: 'external_review', terminal: false, expired: true }],
  ])('derives terminal and expired for %s', async (id, expected) => {
    expect((await lookup(id)).body).toMatchObject(expected);
  });

  it('an unknown application is not_found (404)', async () => {
    const res = await lookup('00000000-0000-4000-8000-000000000000');
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({ outcome: 'not_found', operation: 'get-credit-application' });
  });

  it('an answer that is not an application is retried, then failed (503): unreadable is never final', async () => {
    const unreadable = {
      fault: {
        kind: 'status' as const,
        status: 200,
        body: { id: D.pendingApplication, status: 'pending', expires_at: 'next tuesday' },
      },
      path: '/credit-applications',
    };
    sim.inject(unreadable);
    const healed = await lookup(D.pendingApplication);
    expect(healed.body).toMatchObject({ id: D.pendingApplication, status: 'pending' });
    sim.inject({ ...unreadable, times: Number.POSITIVE_INFINITY });
    const res = await lookup(D.pendingApplication);
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ outcome: 'failed', failure: 'transient', attempts: 4 });
    expect(res.body.message).toMatch(/unreadable credit application/);
  });

  it('a lookup with no organization ids and none in the secret is rejected before anything is sent', async () => {
    useSecrets({ mycreditapp: secret() });
    const res = await lookup(D.pendingApplication);
    expect(res.status).toBe(502);
    expect(res.body).toMatchObject({ outcome: 'rejected', attempts: 0 });
    expect(res.body.message).toMatch(/requesterOrganizationId and targetOrganizationId/);
    expect(sim.received('GET', /credit-applications/)).toHaveLength(0);
  });

  it('the simulator refuses a lookup without the organization headers, as mycreditapp documents them required', async () => {
    const token = await fetch(`${sim.url}/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: D.clientId, client_secret: D.clientSecret }),
    }).then((r) => r.json() as Promise<{ access_token: string }>);
    const res = await fetch(`${sim.url}/credit-applications/${D.pendingApplication}`, {
      headers: { authorization: `Bearer ${token.access_token}` },
    });
    expect(res.status).toBe(422);
    expect(((await res.json()) as { detail: { loc: string[] }[] }).detail.map((d) => d.loc.join('.'))).toEqual([
      'header.requester-organization-id',
      'header.target-organization-id',
    ]);
  });

  it('an unknown path (a wrong version segment) is rejected naming the configuration, never not_found', async () => {
    useSecrets({ mycreditapp: secret({ organizationId: D.hostOrg, baseUrl: `${sim.origin}/v2` }) });
    const res = await lookup(D.pendingApplication);
    expect(res.status).toBe(502);
    expect(res.body.outcome).toBe('rejected');
    expect(res.body.message).toMatch(/route was not found.*baseUrl and apiVersion/);
  });

  it('passes organization headers through, defaulting to the secret organizationId', async () => {
    useSecrets({ mycreditapp: secret({ organizationId: D.hostOrg }) });
    await lookup(D.pendingApplication);
    await lookup(D.pendingApplication, { 'requester-organization-id': D.guestOrg });
    const gets = sim.received('GET', /credit-applications/);
    expect(gets[0]?.headers).toMatchObject({
      'requester-organization-id': D.hostOrg,
      'target-organization-id': D.hostOrg,
    });
    expect(gets[1]?.headers['requester-organization-id']).toBe(D.guestOrg);
  });

  it('as the batch guard: skips when the status is listed, proceeds otherwise, proceeds when not found', async () => {
    const skip = await callTask(lookupHandler, {
      creditApplicationId: D.approvedApplication,
      skipIfStatusIn: ['approved', 'finalized'],
    });
    expect(skip.result).toMatchObject({ found: true, skip: true, status: 'approved' });
    const go = await callTask(lookupHandler, {
      creditApplicationId: D.declinedApplication,
      skipIfStatusIn: ['approved', 'finalized'],
    });
    expect(go.result).toMatchObject({ found: true, skip: false, status: 'declined' });
    const missing = await callTask(lookupHandler, {
      creditApplicationId: '00000000-0000-4000-8000-000000000000',
      skipIfStatusIn: ['approved'],
    });
    expect(missing.result).toMatchObject({ found: false, skip: false });
  });

  it('as the batch guard: an unreadable application stops the batch (Guard.Unreadable), a transient one is retried', async () => {
    useSecrets({ mycreditapp: secret({ clientSecret: 'wrong-secret-value-999', organizationId: D.hostOrg }) });
    const bad = await callTask(lookupHandler, {
      creditApplicationId: D.approvedApplication,
      skipIfStatusIn: ['approved'],
    });
    expect(bad.error?.name).toBe('Guard.Unreadable');
    useSecrets({ mycreditapp: secret({ organizationId: D.hostOrg }) });
    sim.options.maintenance = true;
    const down = await callTask(lookupHandler, { creditApplicationId: D.approvedApplication });
    expect(down.error?.name).toBe('Provider.Transient');
  });
});

describe('mycreditapp organization ids for a guard: refused before anything starts', () => {
  const guarded = { reason: 'declined', items: [{ provider: 'gocardless', billingRequestId: 'BRQ000DEMOPEND1' }] };
  const post = (handler: typeof batchesHandler, route: string, body: unknown) =>
    callApi(handler, { method: 'POST', route, path: route, body });

  it('POST /v1/batches with a guard, no organization ids and none in the secret: 400 naming both fields', async () => {
    const res = await post(batchesHandler, '/v1/batches', {
      ...guarded,
      guard: { creditApplicationId: D.pendingApplication, requesterOrganizationId: D.hostOrg },
    });
    expect(res.status).toBe(400);
    expect(res.body.issues).toEqual([
      { path: 'body.guard.targetOrganizationId', message: expect.stringMatching(/mycreditapp needs both/) },
    ]);
    expect(sim.requests).toHaveLength(0);
  });

  it('POST /v1/expirations without organization ids and none in the secret: 400 naming both fields', async () => {
    const res = await post(expirationsHandler, '/v1/expirations', {
      creditApplicationId: D.pendingApplication,
      expiresAt: new Date(Date.now() + 86_400_000).toISOString(),
      items: guarded.items,
    });
    expect(res.status).toBe(400);
    expect(res.body.issues?.map((i) => i.path)).toEqual(['body.requesterOrganizationId', 'body.targetOrganizationId']);
    expect(sim.requests).toHaveLength(0);
  });

  it("with the secret's organizationId, the guard's ids may be left out: no 400 for them", async () => {
    useSecrets({ mycreditapp: secret({ organizationId: D.hostOrg }) });
    const res = await post(batchesHandler, '/v1/batches', {
      ...guarded,
      guard: { creditApplicationId: D.pendingApplication },
    });
    expect(res.status).not.toBe(400);
    expect(JSON.stringify(res.body)).not.toMatch(/OrganizationId/);
  });
});
