/**
 * End to end: `npm start` killed (SIGKILL, npm and everything it runs) in the middle of a batch, then started again
 * on the same data directory. The providers are simulators started here, outside `npm start` (`--secrets FILE`),
 * so they outlive the crash and count every cancel across both runs.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GoCardlessSimulator } from '#local/simulators/gocardless.ts';
import { TrueworkSimulator } from '#local/simulators/truework.ts';
import { type Started, startSystem } from './support.ts';

const BILLING_REQUESTS = Array.from({ length: 24 }, (_, i) => `BRQ000CRASH${String(i).padStart(4, '0')}`);
const ORDERS = Array.from({ length: 6 }, (_, i) => `ORDER_CRASH_${i}`);
const TOTAL = BILLING_REQUESTS.length + ORDERS.length;
const KEY = { 'content-type': 'application/json', 'idempotency-key': 'crash-test-batch-1' };
const BATCH = {
  reason: 'Credit application declined',
  requestedBy: 'ops@example.com',
  items: [
    ...BILLING_REQUESTS.map((billingRequestId) => ({ provider: 'gocardless', billingRequestId })),
    ...ORDERS.map((orderId) => ({ provider: 'truework', orderId })),
  ],
};

async function until<T>(check: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('npm start, killed in the middle of a batch and started again', () => {
  const gocardless = new GoCardlessSimulator();
  const truework = new TrueworkSimulator();
  const data = mkdtempSync(join(tmpdir(), 'npm-start-crash-'));
  let secrets: string;
  let first: Started | undefined;
  let second: Started | undefined;
  const gocardlessCancels = () =>
    gocardless.received('POST', /^\/billing_requests\/BRQ000CRASH\d{4}\/actions\/cancel$/).length;

  beforeAll(async () => {
    await gocardless.start();
    await truework.start();
    for (const id of BILLING_REQUESTS)
      await fetch(`${gocardless.origin}/__sim/resources/${id}`, { method: 'PUT', body: '{"status":"pending"}' });
    for (const id of ORDERS)
      await fetch(`${truework.origin}/__sim/resources/${id}`, {
        method: 'PUT',
        body: '{"states":["processing","pending-approval"]}',
      });
    // Every cancel takes a while, so the batch is still running when it is killed.
    gocardless.inject({ fault: { kind: 'delay', ms: 1_500 }, times: Infinity, method: 'POST' });
    truework.inject({ fault: { kind: 'delay', ms: 1_500 }, times: Infinity, method: 'PUT' });
    secrets = join(data, 'secrets.json');
    writeFileSync(secrets, JSON.stringify({ gocardless: gocardless.demoSecret(), truework: truework.demoSecret() }));
  });
  afterAll(async () => {
    for (const system of [first, second]) if (system?.child.exitCode === null) await system.stop();
    await gocardless.stop();
    await truework.stop();
  });

  it('resumes the execution: every item ends with its outcome, and nothing is cancelled twice', async () => {
    first = await startSystem(['--secrets', secrets], {}, { data, crashable: true });
    const posted = await fetch(`${first.url}/v1/batches`, {
      method: 'POST',
      headers: KEY,
      body: JSON.stringify(BATCH),
    });
    expect(posted.status).toBe(202);
    const { batchId } = (await posted.json()) as { batchId: string };

    // Killed once some items have finished (GoCardless runs 8 at a time: a 9th cancel means one finished) and
    // while others are in flight.
    await until(async () => (gocardlessCancels() >= 12 ? true : undefined), 60_000, 'the batch to be under way');
    await first.crash();
    const beforeRestart = gocardlessCancels();
    expect(beforeRestart).toBeLessThan(BILLING_REQUESTS.length);

    second = await startSystem(['--secrets', secrets], {}, { data });
    expect(second.output()).toContain('Resumed                            1 execution(s)');
    const system = second;
    const done = await until(
      async () => {
        const read = (await (await fetch(`${system.url}/v1/batches/${batchId}`)).json()) as Record<string, unknown>;
        return read.status === 'running' ? undefined : read;
      },
      150_000,
      'the resumed batch to end',
    );
    expect(done).toMatchObject({
      status: 'completed',
      summary: {
        total: TOTAL,
        lost: 0,
        byProvider: { gocardless: { canceled: BILLING_REQUESTS.length }, truework: { canceled: ORDERS.length } },
      },
    });
    // Exactly one effective cancel per resource, across both runs.
    for (const id of BILLING_REQUESTS) expect(gocardless.effectiveCancels.get(id), id).toBe(1);
    for (const id of ORDERS) expect(truework.effectiveCancels.get(id), id).toBe(1);
    // What had finished before the crash was not sent again: the resumed run replayed it from its records.
    expect(gocardlessCancels() - beforeRestart).toBeLessThan(BILLING_REQUESTS.length);
    for (const id of BILLING_REQUESTS)
      expect(gocardless.received('POST', `/billing_requests/${id}/actions/cancel`).length, id).toBeLessThanOrEqual(2);

    // The caller's retried POST (same Idempotency-Key) names the same batch, which now reads as completed.
    const retried = await fetch(`${system.url}/v1/batches`, {
      method: 'POST',
      headers: KEY,
      body: JSON.stringify(BATCH),
    });
    expect(retried.headers.get('idempotent-replayed')).toBe('true');
    expect(((await retried.json()) as { batchId: string }).batchId).toBe(batchId);
  }, 300_000);

  it('a clean stop and start resumes nothing that had ended', async () => {
    expect(await second?.stop('SIGTERM')).toBe(0);
    const third = await startSystem(['--secrets', secrets], {}, { data });
    try {
      expect(third.output()).not.toContain('Resumed');
    } finally {
      expect(await third.stop('SIGTERM')).toBe(0);
    }
  });
});
