/**
 * End to end: `npm start` in a child process on a free port, driven over real HTTP as a user would, every request
 * and answer checked against the OpenAPI document it serves.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUCO_DEMO } from '../../local/simulators/auco.ts';
import { GOCARDLESS_DEMO, GoCardlessSimulator } from '../../local/simulators/gocardless.ts';
import { MYCREDITAPP_DEMO as D } from '../../local/simulators/mycreditapp.ts';
import { TRUEWORK_DEMO } from '../../local/simulators/truework.ts';
import { ContractChecker, refusedStart, type Started, startSystem } from './support.ts';

const run = promisify(execFile);
const mycreditappCancel = (requestId: string) =>
  `/v1/mycreditapp/organizations/${D.hostOrg}/document-requests/${requestId}/cancel`;
const orgHeaders = { 'requester-organization-id': D.hostOrg, 'target-organization-id': D.guestOrg };

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
  let api: ContractChecker;
  beforeAll(async () => {
    system = await startSystem();
    api = new ContractChecker(await (await fetch(`${system.url}/openapi.json`)).json());
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
    const gocardless = await api.send(
      system.url,
      'POST',
      `/v1/gocardless/billing-requests/${E2E.billingRequest}/cancel`,
      { metadata: { reason: 'declined' } },
    );
    expect(gocardless).toMatchObject({ status: 200, body: { outcome: 'canceled' } });
    const truework = await api.send(system.url, 'POST', `/v1/truework/orders/${E2E.order}/cancel`, {
      reason: 'other',
      details: 'declined',
    });
    expect(truework).toMatchObject({ status: 200, body: { outcome: 'canceled' } });
    const auco = await api.send(system.url, 'POST', '/v1/auco/documents/cancel', {
      codes: [E2E.code],
      message: 'declined',
      email: 'ops@example.com',
    });
    expect(auco).toMatchObject({ status: 200, body: { outcome: 'canceled' } });
    const mycreditapp = await api.send(system.url, 'POST', mycreditappCancel(E2E.request), undefined, orgHeaders);
    expect(mycreditapp).toMatchObject({ status: 200, body: { outcome: 'canceled' } });
    const lookup = await api.send(system.url, 'GET', `/v1/mycreditapp/credit-applications/${D.declinedApplication}`);
    expect(lookup).toMatchObject({ status: 200, body: { status: 'declined', terminal: true } });
  });

  it('a repeat is already_canceled, for every provider', async () => {
    expect(
      (await api.send(system.url, 'POST', `/v1/gocardless/billing-requests/${E2E.billingRequest}/cancel`, {})).body
        .outcome,
    ).toBe('already_canceled');
    expect(
      (await api.send(system.url, 'POST', `/v1/truework/orders/${E2E.order}/cancel`, { reason: 'other' })).body.outcome,
    ).toBe('already_canceled');
    expect(
      (
        await api.send(system.url, 'POST', '/v1/auco/documents/cancel', {
          codes: [E2E.code],
          message: 'again',
          email: 'ops@example.com',
        })
      ).body.outcome,
    ).toBe('already_canceled');
    expect(
      (await api.send(system.url, 'POST', mycreditappCancel(E2E.request), undefined, orgHeaders)).body.outcome,
    ).toBe('already_canceled');
  });

  it('an unknown id is 404 not_found; bad input is 400 with every problem; a retried Idempotency-Key replays', async () => {
    const unknown = await api.send(system.url, 'POST', '/v1/gocardless/billing-requests/BRQ000NOSUCH/cancel', {});
    expect(unknown).toMatchObject({ status: 404, body: { outcome: 'not_found' } });
    const bad = await api.send(
      system.url,
      'POST',
      '/v1/truework/orders/x%20y/cancel',
      { reason: 'no-match', colour: 1 },
      {},
      { invalidRequest: true },
    );
    expect(bad.status).toBe(400);
    expect((bad.body.issues as { path: string }[]).map((i) => i.path)).toEqual(['path.orderId', 'body.reason', 'body']);
    const key = { 'idempotency-key': `e2e-${Date.now()}` };
    const first = await api.send(
      system.url,
      'POST',
      `/v1/gocardless/billing-requests/${GOCARDLESS_DEMO.fulfilled}/cancel`,
      {},
      key,
    );
    const again = await api.send(
      system.url,
      'POST',
      `/v1/gocardless/billing-requests/${GOCARDLESS_DEMO.fulfilled}/cancel`,
      {},
      key,
    );
    expect(first.status).toBe(409);
    expect(again.body).toEqual(first.body);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
  });

  it('runs a batch to completion', async () => {
    const started = await api.send(system.url, 'POST', '/v1/batches', {
      reason: 'Credit application declined',
      requestedBy: 'ops@example.com',
      guard: { creditApplicationId: D.pendingApplication },
      items: [
        { provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.fulfilled },
        { provider: 'truework', orderId: TRUEWORK_DEMO.completed },
        { provider: 'auco', code: AUCO_DEMO.expired },
        { provider: 'gocardless', billingRequestId: 'BRQ000NOSUCH' },
      ],
    });
    expect(started.status).toBe(202);
    const id = String(started.body.batchId);
    const done = await until(async () => {
      const read = await api.send(system.url, 'GET', `/v1/batches/${id}`);
      return read.body.status === 'running' ? undefined : read;
    });
    expect(done.body).toMatchObject({
      status: 'completed',
      summary: { total: 4, lost: 0, byOutcome: { not_cancelable: 3, not_found: 1 } },
    });
    const ledger = await api.send(system.url, 'GET', `/v1/cancellations?creditApplicationId=${D.pendingApplication}`);
    expect((ledger.body.cancellations as unknown[]).length).toBeGreaterThanOrEqual(4);
  });

  it('an expiration due in a few seconds fires and cancels at the simulator', async () => {
    const id = 'a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d';
    const registered = await api.send(system.url, 'POST', '/v1/expirations', {
      creditApplicationId: id,
      // Far enough ahead to still be ahead once the expirations function's container has cold-started.
      expiresAt: new Date(Date.now() + 6_000).toISOString(),
      items: [{ provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending }],
    });
    expect(registered).toMatchObject({ status: 201, body: { status: 'scheduled' } });
    expect((await api.send(system.url, 'GET', `/v1/expirations/${id}`)).status).toBe(200);
    // Unknown to mycreditapp, so the guard lets it through; once fired, the schedule deletes itself.
    await until(async () =>
      (await api.send(system.url, 'GET', `/v1/expirations/${id}`)).status === 404 ? true : undefined,
    );
    const ledger = await until(async () => {
      const page = await api.send(
        system.url,
        'GET',
        `/v1/cancellations?provider=gocardless&billingRequestId=${GOCARDLESS_DEMO.pending}`,
      );
      const entries = page.body.cancellations as { outcome: string; creditApplicationId?: string }[];
      return entries.find((e) => e.creditApplicationId === id) ? entries : undefined;
    });
    expect(ledger.find((e) => e.creditApplicationId === id)?.outcome).toMatch(/canceled/);
  });

  it('answers 404 for an unknown route and 405 for a wrong method, and checked every exchange against the document', async () => {
    expect((await fetch(`${system.url}/v1/nothing`)).status).toBe(404);
    expect((await fetch(`${system.url}/v1/batches`)).status).toBe(405);
    expect(api.checked.length).toBeGreaterThan(15);
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
  let api: ContractChecker;
  beforeAll(async () => {
    await outside.start();
    const file = join(mkdtempSync(join(tmpdir(), 'secrets-')), 'secrets.json');
    writeFileSync(
      file,
      JSON.stringify({ gocardless: { accessToken: GOCARDLESS_DEMO.accessToken, baseUrl: outside.url } }),
    );
    system = await startSystem(['--secrets', file]);
    api = new ContractChecker(await (await fetch(`${system.url}/openapi.json`)).json());
  });
  afterAll(async () => {
    if (system?.child.exitCode === null) await system.stop();
    await outside.stop();
  });

  it('reaches the provider in the file at its baseUrl, and simulates only the others', async () => {
    expect(system.output()).toMatch(new RegExp(`gocardless\\s+${outside.url.replace(/[.]/g, '\\.')}\\s+from `));
    expect(system.output()).toMatch(/truework\s+http:\/\/127\.0\.0\.1:\d+\s+simulator/);
    const first = await api.send(
      system.url,
      'POST',
      `/v1/gocardless/billing-requests/${GOCARDLESS_DEMO.pending}/cancel`,
      {},
    );
    expect(first.body.outcome).toBe('canceled');
    expect(outside.received('POST', `/billing_requests/${GOCARDLESS_DEMO.pending}/actions/cancel`)).toHaveLength(1);
    const again = await api.send(
      system.url,
      'POST',
      `/v1/gocardless/billing-requests/${GOCARDLESS_DEMO.pending}/cancel`,
      {},
    );
    expect(again.body.outcome).toBe('already_canceled');
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
