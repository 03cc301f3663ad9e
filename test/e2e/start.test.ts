/**
 * End to end: `npm start` in a child process on a free port, driven over real HTTP as a user would, through a client
 * generated from the OpenAPI document (openapi-fetch over openapi-typescript's types): a call the document does not
 * describe fails the typecheck, and every request and answer is checked against the document the system serves.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUCO_DEMO } from '#local/simulators/auco.ts';
import { GOCARDLESS_DEMO, GoCardlessSimulator } from '#local/simulators/gocardless.ts';
import { MYCREDITAPP_DEMO as D } from '#local/simulators/mycreditapp.ts';
import { TRUEWORK_DEMO } from '#local/simulators/truework.ts';
import { type ApiClient, ContractChecker, refusedStart, type Started, startSystem } from './support.ts';

const run = promisify(execFile);
const mycreditappCancel = (api: ApiClient, requestId: string) =>
  api.POST('/v1/mycreditapp/organizations/{orgId}/document-requests/{requestId}/cancel', {
    params: {
      path: { orgId: D.hostOrg, requestId },
      header: { 'requester-organization-id': D.hostOrg, 'target-organization-id': D.guestOrg },
    },
  });
const gocardlessCancel = (api: ApiClient, billingRequestId: string, header: { 'idempotency-key'?: string } = {}) =>
  api.POST('/v1/gocardless/billing-requests/{billingRequestId}/cancel', {
    params: { path: { billingRequestId }, header },
    body: {},
  });

async function until<T>(check: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() - started > timeoutMs) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Fresh resources for these tests, made through each simulator's control API (the printed curls use the seeds). */
const E2E = {
  billingRequest: 'BRQ000E2E00001',
  order: 'ORDER_E2E_1',
  code: 'TRE2E00001',
  request: 'e2e00000-0000-4000-8000-000000000001',
};

describe('npm start, with all four simulators', () => {
  let system: Started;
  let contract: ContractChecker;
  let api: ApiClient;
  beforeAll(async () => {
    system = await startSystem();
    contract = new ContractChecker(await (await fetch(`${system.url}/openapi.json`)).json());
    api = contract.client(system.url);
    const control = (provider: string) =>
      new RegExp(`${provider}\\s+\\S+\\s+simulator \\(control: (\\S+)/__sim/stats\\)`).exec(system.output())?.[1];
    const put = (provider: string, id: string, body: unknown) =>
      fetch(`${control(provider)}/__sim/resources/${id}`, { method: 'PUT', body: JSON.stringify(body) }).then((r) =>
        expect(r.status).toBe(200),
      );
    await put('gocardless', E2E.billingRequest, { status: 'pending' });
    await put('truework', E2E.order, { states: ['processing', 'completed'] });
    await put('auco', E2E.code, { status: 'CREATED' });
    await put('mycreditapp', E2E.request, { status: 'pending' });
  });
  afterAll(async () => {
    if (system.child.exitCode === null) await system.stop();
  });

  it('prints what runs where, and three curl commands that work as printed', async () => {
    const out = system.output();
    for (const provider of ['mycreditapp', 'auco', 'truework', 'gocardless'])
      expect(out).toMatch(new RegExp(`${provider}\\s+http://127\\.0\\.0\\.1:\\d+\\S*\\s+simulator`));
    const curls = out
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.startsWith('curl '))
      .slice(0, 3);
    expect(curls).toHaveLength(3);
    for (const command of curls) {
      const { stdout } = await run('sh', ['-c', command.replace(/\s+#.*$/, '')]);
      const body = JSON.parse(stdout) as { outcome?: string; status?: string };
      expect(['canceled', 'running'], command).toContain(body.outcome ?? body.status);
    }
  });

  it('cancels one item per provider, and reads a credit application', async () => {
    const gocardless = await api.POST('/v1/gocardless/billing-requests/{billingRequestId}/cancel', {
      params: { path: { billingRequestId: E2E.billingRequest } },
      body: { metadata: { reason: 'declined' } },
    });
    expect(gocardless.response.status).toBe(200);
    expect(gocardless.data).toMatchObject({ outcome: 'canceled', target: { billingRequestId: E2E.billingRequest } });
    const truework = await api.POST('/v1/truework/orders/{orderId}/cancel', {
      params: { path: { orderId: E2E.order } },
      body: { reason: 'other', details: 'declined' },
    });
    expect(truework.response.status).toBe(200);
    expect(truework.data?.outcome).toBe('canceled');
    const auco = await api.POST('/v1/auco/documents/cancel', {
      body: { codes: [E2E.code], message: 'declined', email: 'ops@example.com' },
    });
    expect(auco.response.status).toBe(200);
    expect(auco.data?.outcomes.map((o) => [o.target.code, o.outcome])).toEqual([[E2E.code, 'canceled']]);
    const mycreditapp = await mycreditappCancel(api, E2E.request);
    expect(mycreditapp.response.status).toBe(200);
    expect(mycreditapp.data?.outcome).toBe('canceled');
    const lookup = await api.GET('/v1/mycreditapp/credit-applications/{creditApplicationId}', {
      params: { path: { creditApplicationId: D.declinedApplication } },
    });
    expect(lookup.response.status).toBe(200);
    expect(lookup.data).toMatchObject({ id: D.declinedApplication, status: 'declined', terminal: true });
  });

  it('a repeat is already_canceled, for every provider', async () => {
    expect((await gocardlessCancel(api, E2E.billingRequest)).data?.outcome).toBe('already_canceled');
    const truework = await api.POST('/v1/truework/orders/{orderId}/cancel', {
      params: { path: { orderId: E2E.order } },
      body: { reason: 'other' },
    });
    expect(truework.data?.outcome).toBe('already_canceled');
    const auco = await api.POST('/v1/auco/documents/cancel', {
      body: { codes: [E2E.code], message: 'again', email: 'ops@example.com' },
    });
    expect(auco.data?.outcome).toBe('already_canceled');
    expect((await mycreditappCancel(api, E2E.request)).data?.outcome).toBe('already_canceled');
  });

  it('an unknown id is 404 not_found; bad input is 400 with every problem; a retried Idempotency-Key replays', async () => {
    const unknown = await gocardlessCancel(api, 'BRQ000NOSUCH');
    expect(unknown.response.status).toBe(404);
    expect(unknown.error).toMatchObject({ outcome: 'not_found' });
    const bad = await contract
      .client(system.url, { invalidRequests: true })
      .POST('/v1/truework/orders/{orderId}/cancel', {
        params: { path: { orderId: 'x y' } },
        // @ts-expect-error: the generated types refuse a reason outside Truework's enum, as the API does
        body: { reason: 'no-match', colour: 1 },
      });
    expect(bad.response.status).toBe(400);
    expect(bad.error && 'issues' in bad.error ? bad.error.issues?.map((i) => i.path) : undefined).toEqual([
      'path.orderId',
      'body.reason',
      'body',
    ]);
    const key = { 'idempotency-key': `e2e-${Date.now()}` };
    const first = await gocardlessCancel(api, GOCARDLESS_DEMO.fulfilled, key);
    const again = await gocardlessCancel(api, GOCARDLESS_DEMO.fulfilled, key);
    expect(first.response.status).toBe(409);
    expect(first.error).toMatchObject({ outcome: 'not_cancelable' });
    expect(again.error).toEqual(first.error);
    expect(again.response.headers.get('idempotent-replayed')).toBe('true');
  });

  it('runs a batch to completion', async () => {
    const started = await api.POST('/v1/batches', {
      body: {
        reason: 'Credit application declined',
        requestedBy: 'ops@example.com',
        guard: { creditApplicationId: D.pendingApplication },
        items: [
          { provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.fulfilled },
          { provider: 'truework', orderId: TRUEWORK_DEMO.completed },
          { provider: 'auco', code: AUCO_DEMO.expired },
          { provider: 'gocardless', billingRequestId: 'BRQ000NOSUCH' },
        ],
      },
    });
    expect(started.response.status).toBe(202);
    const batchId = String(started.data?.batchId);
    expect(started.data?.links.self).toContain(batchId);
    const done = await until(async () => {
      const read = await api.GET('/v1/batches/{batchId}', { params: { path: { batchId } } });
      return read.data?.status === 'running' ? undefined : read.data;
    });
    expect(done).toMatchObject({
      status: 'completed',
      summary: { total: 4, lost: 0, byOutcome: { not_cancelable: 3, not_found: 1 } },
    });
    const ledger = await api.GET('/v1/cancellations', {
      params: { query: { creditApplicationId: D.pendingApplication } },
    });
    expect(ledger.data?.cancellations.length).toBeGreaterThanOrEqual(4);
  });

  it('an expiration due in a few seconds fires and cancels at the simulator', async () => {
    const id = 'a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d';
    const registered = await api.POST('/v1/expirations', {
      body: {
        creditApplicationId: id,
        // Far enough ahead to still be ahead once the expirations function's container has cold-started.
        expiresAt: new Date(Date.now() + 6_000).toISOString(),
        items: [{ provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending }],
      },
    });
    expect(registered.response.status).toBe(201);
    expect(registered.data?.status).toBe('scheduled');
    const read = () => api.GET('/v1/expirations/{id}', { params: { path: { id } } });
    expect((await read()).response.status).toBe(200);
    // Unknown to mycreditapp, so the guard lets it through; once fired, the schedule deletes itself.
    await until(async () => ((await read()).response.status === 404 ? true : undefined));
    const ledger = await until(async () => {
      const page = await api.GET('/v1/cancellations', {
        params: { query: { provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending } },
      });
      const entries = page.data?.cancellations ?? [];
      return entries.find((e) => e.creditApplicationId === id) ? entries : undefined;
    });
    expect(ledger.find((e) => e.creditApplicationId === id)?.outcome).toMatch(/canceled/);
  });

  it('an expiration can be read and deleted before it fires', async () => {
    const id = 'f0e1d2c3-b4a5-4968-8776-655443322110';
    const path = { params: { path: { id } } };
    const registered = await api.POST('/v1/expirations', {
      body: {
        creditApplicationId: id,
        expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
        items: [{ provider: 'truework', orderId: TRUEWORK_DEMO.completed }],
      },
    });
    expect(registered.response.status).toBe(201);
    expect((await api.GET('/v1/expirations/{id}', path)).data).toMatchObject({ id, status: 'scheduled' });
    expect((await api.DELETE('/v1/expirations/{id}', path)).response.status).toBe(204);
    expect((await api.GET('/v1/expirations/{id}', path)).response.status).toBe(404);
    expect((await api.DELETE('/v1/expirations/{id}', path)).response.status).toBe(404);
  });

  it('answers 404 for an unknown route and 405 for a wrong method, and checked every exchange against the document', async () => {
    expect((await fetch(`${system.url}/v1/nothing`)).status).toBe(404);
    expect((await fetch(`${system.url}/v1/batches`)).status).toBe(405);
    expect(contract.checked.length).toBeGreaterThan(15);
    // Every operation of the document was called at least once through the generated client.
    const called = new Set(contract.checked.map((c) => c.split(' ').slice(0, 2).join(' ')));
    expect([...called].sort()).toEqual(contract.operations().sort());
  });

  it('shuts down cleanly on SIGTERM', async () => {
    expect(await system.stop('SIGTERM')).toBe(0);
    expect(system.output()).toContain('Stopped.');
  });
});

describe('npm start --secrets FILE', () => {
  const outside = new GoCardlessSimulator({
    idempotencyReplay: 'replay',
    invalidStateReason: 'billing_request_cancelled',
  });
  let system: Started;
  let api: ApiClient;
  beforeAll(async () => {
    await outside.start();
    const file = join(mkdtempSync(join(tmpdir(), 'secrets-')), 'secrets.json');
    writeFileSync(
      file,
      JSON.stringify({ gocardless: { accessToken: GOCARDLESS_DEMO.accessToken, baseUrl: outside.url } }),
    );
    system = await startSystem(['--secrets', file]);
    api = new ContractChecker(await (await fetch(`${system.url}/openapi.json`)).json()).client(system.url);
  });
  afterAll(async () => {
    if (system?.child.exitCode === null) await system.stop();
    await outside.stop();
  });

  it('reaches the provider in the file at its baseUrl, and simulates only the others', async () => {
    expect(system.output()).toMatch(new RegExp(`gocardless\\s+${outside.url.replace(/[.]/g, '\\.')}\\s+from `));
    expect(system.output()).toMatch(/truework\s+http:\/\/127\.0\.0\.1:\d+\s+simulator/);
    const first = await gocardlessCancel(api, GOCARDLESS_DEMO.pending);
    expect(first.data?.outcome).toBe('canceled');
    expect(outside.received('POST', `/billing_requests/${GOCARDLESS_DEMO.pending}/actions/cancel`)).toHaveLength(1);
    const again = await gocardlessCancel(api, GOCARDLESS_DEMO.pending);
    expect(again.data?.outcome).toBe('already_canceled');
    expect(outside.effectiveCancels.get(GOCARDLESS_DEMO.pending)).toBe(1);
  });

  it('refuses a secrets file with unknown keys or missing fields, naming them, before anything starts', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'secrets-')), 'bad.json');
    writeFileSync(file, JSON.stringify({ gocardless: { token: 'x' }, stripe: {} }));
    const { code, output } = await refusedStart(['--secrets', file]);
    expect(code).toBe(2);
    expect(output).toContain('unknown provider(s) "stripe"');
    expect(output).toContain('gocardless: field "accessToken" is required');
    expect(output).toContain('gocardless: unknown field(s) "token"');
    expect(output).not.toContain('Ready:');
  });
});
