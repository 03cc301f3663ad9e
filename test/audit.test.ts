/**
 * The audit trail (DESIGN.md 3.3): the ledger records `caller`, what the platform says (the IAM principal, or the
 * execution and what started it: API, console, schedule), beside `requestedBy`, what the caller says. No body,
 * header or execution input can set `caller`. Run against the local cloud: the real handlers, the synthesized
 * state machine, the local scheduler, and the start records in DynamoDB (dynalite).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { handler as batches } from '#functions/batches/handler.ts';
import { handler as cancelBillingRequest } from '#functions/cancel-billing-request/handler.ts';
import { handler as expirations } from '#functions/expirations/handler.ts';
import { GOCARDLESS_DEMO } from '#local/simulators/gocardless.ts';
import { MYCREDITAPP_DEMO as D } from '#local/simulators/mycreditapp.ts';
import { DynamoDb } from '#shared/aws/dynamodb.ts';
import { DynamoLedger } from '#shared/aws/ledger-table.ts';
import { defaultDeps } from '#shared/core/cancel.ts';
import { expirationBatch } from '#shared/core/expirations.ts';
import { type LedgerEntry, type MemoryLedger, targetKey } from '#shared/core/ledger.ts';
import { callApi } from '#test/support/invoke.ts';
import { startTestSystem, type TestSystem } from '#test/support/system.ts';

const ALICE = 'arn:aws:iam::111111111111:user/alice';
const OPERATOR = 'arn:aws:sts::111111111111:assumed-role/Operators/carol';

let system: TestSystem;
beforeAll(async () => {
  system = await startTestSystem({ retryIntervalMs: 5 });
  system.cloud.scheduler.retryDelayMs = 10;
});
afterAll(() => system.stop());
beforeEach(() => system.reset());

const ledger = () => (defaultDeps().ledger as MemoryLedger).entries;
/** The latest entry for a billing request: written in this process (a handler called here), or by a Lambda
 * container of the local cloud (a batch task), which writes to the local DynamoDB as it would in AWS. */
const entryFor = async (billingRequestId: string): Promise<LedgerEntry | undefined> => {
  const here = ledger().findLast((e) => e.target.billingRequestId === billingRequestId);
  if (here) return here;
  const table = new DynamoLedger(
    system.cloud.dynamo.tables.ledger,
    new DynamoDb({ endpoint: system.cloud.dynamo.url }),
  );
  return (await table.query({ provider: 'gocardless', target: targetKey({ billingRequestId }) })).entries[0];
};

async function until<T>(check: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() - started > timeoutMs) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function finished(executionName: (name: string) => boolean) {
  const execution = await until(() =>
    [...system.cloud.stepFunctions.executions.values()].find((e) => executionName(e.name)),
  );
  await execution.done;
  return execution;
}

describe('the API caller is the IAM principal, never what the request says', () => {
  it('records the verified principal as caller and the body as requestedBy; an x-requested-by header sets neither', async () => {
    const res = await callApi(cancelBillingRequest, {
      method: 'POST',
      route: '/v1/gocardless/billing-requests/{billingRequestId}/cancel',
      path: `/v1/gocardless/billing-requests/${GOCARDLESS_DEMO.pending}/cancel`,
      pathParameters: { billingRequestId: GOCARDLESS_DEMO.pending },
      headers: { 'x-requested-by': 'arn:aws:iam::999999999999:user/mallory' },
      body: { requestedBy: 'root@example.com', reason: 'declined' },
      principal: ALICE,
    });
    expect(res.body).toMatchObject({ outcome: 'canceled' });
    expect(await entryFor(GOCARDLESS_DEMO.pending)).toMatchObject({
      source: 'api',
      caller: { via: 'api', principal: ALICE, accountId: '111111111111' },
      requestedBy: 'root@example.com',
    });
    expect(JSON.stringify(ledger())).not.toContain('mallory');
  });

  it('without an IAM authorizer (a local API without auth) the caller names no principal, whatever the headers say', async () => {
    await callApi(cancelBillingRequest, {
      method: 'POST',
      route: '/v1/gocardless/billing-requests/{billingRequestId}/cancel',
      path: `/v1/gocardless/billing-requests/${GOCARDLESS_DEMO.ready}/cancel`,
      pathParameters: { billingRequestId: GOCARDLESS_DEMO.ready },
      headers: { 'x-requested-by': 'arn:aws:iam::999999999999:user/mallory' },
    });
    const entry = await entryFor(GOCARDLESS_DEMO.ready);
    expect(entry?.caller).toEqual({ via: 'api' });
    expect(entry?.requestedBy).toBeUndefined();
  });
});

describe('a task records its execution and what started it', () => {
  it('a batch POSTed to the API: started by the API, with its caller’s principal', async () => {
    const start = await callApi(batches, {
      method: 'POST',
      route: '/v1/batches',
      path: '/v1/batches',
      body: {
        reason: 'declined',
        requestedBy: 'ops@example.com',
        items: [{ provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending }],
      },
      principal: ALICE,
    });
    expect(start.status).toBe(202);
    const execution = await finished((name) => name === start.body.batchId);
    expect(await entryFor(GOCARDLESS_DEMO.pending)).toMatchObject({
      source: 'task',
      caller: { via: 'execution', executionId: execution.executionArn, startedBy: 'api', principal: ALICE },
      requestedBy: 'ops@example.com',
    });
  });

  it('an execution started from the console: `console`, whatever its input claims', async () => {
    const input = {
      reason: 'declined',
      requestedBy: ALICE,
      items: [{ provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending }],
    };
    // A console user cannot smuggle a caller into the batch: the input is strict.
    const forged = system.cloud.stepFunctions.start(
      JSON.stringify({ ...input, startedBy: { by: 'api', principal: ALICE } }),
      'console-forged',
    );
    await forged.done;
    expect(forged.status).toBe('FAILED');
    const execution = system.cloud.stepFunctions.start(JSON.stringify(input), 'console-1');
    await execution.done;
    expect((await entryFor(GOCARDLESS_DEMO.pending))?.caller).toEqual({
      via: 'execution',
      executionId: execution.executionArn,
      startedBy: 'console',
    });
    // What the console user typed is kept as what they say, nothing more.
    expect((await entryFor(GOCARDLESS_DEMO.pending))?.requestedBy).toBe(ALICE);
  });

  it('an expiration’s schedule: started by the schedule, with the principal who registered it', async () => {
    const res = await callApi(expirations, {
      method: 'POST',
      route: '/v1/expirations',
      path: '/v1/expirations',
      body: {
        creditApplicationId: D.pendingApplication,
        expiresAt: new Date(Date.now() + 1000).toISOString(),
        items: [{ provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending }],
      },
      principal: OPERATOR,
    });
    expect(res.status).toBe(201);
    const fired = await until(() =>
      system.cloud.scheduler.fired.find((f) => f.name === `expire-${D.pendingApplication}`),
    );
    await system.cloud.stepFunctions.executions.get(fired.executionArn ?? '')?.done;
    expect((await entryFor(GOCARDLESS_DEMO.pending))?.caller).toEqual({
      via: 'execution',
      executionId: fired.executionArn,
      startedBy: 'schedule',
      schedule: `expire-${D.pendingApplication}`,
      principal: OPERATOR,
    });
  });

  it('a console execution that copies a schedule’s input before the schedule is due is still `console`', async () => {
    const request = {
      creditApplicationId: D.pendingApplication,
      expiresAt: Date.now() + 3_600_000,
      items: [{ provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending }],
    };
    const res = await callApi(expirations, {
      method: 'POST',
      route: '/v1/expirations',
      path: '/v1/expirations',
      body: { ...request, expiresAt: new Date(request.expiresAt).toISOString() },
      principal: OPERATOR,
    });
    expect(res.status).toBe(201);
    const copy = system.cloud.stepFunctions.start(
      JSON.stringify(expirationBatch(request, request.items)),
      'console-copy',
    );
    await copy.done;
    expect((await entryFor(GOCARDLESS_DEMO.pending))?.caller).toMatchObject({ startedBy: 'console' });
    await callApi(expirations, {
      method: 'DELETE',
      route: '/v1/expirations/{id}',
      path: `/v1/expirations/${D.pendingApplication}`,
      pathParameters: { id: D.pendingApplication },
    });
  });

  it('an expiration already past runs at once: started by the API, with its caller’s principal', async () => {
    const res = await callApi(expirations, {
      method: 'POST',
      route: '/v1/expirations',
      path: '/v1/expirations',
      body: {
        creditApplicationId: D.expiringApplication,
        items: [{ provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending }],
      },
      principal: OPERATOR,
    });
    expect(res.status).toBe(202);
    await finished((name) => name === res.body.batchId);
    expect((await entryFor(GOCARDLESS_DEMO.pending))?.caller).toMatchObject({
      via: 'execution',
      startedBy: 'api',
      principal: OPERATOR,
    });
  });
});
