/**
 * The audit ledger and idempotency records in DynamoDB, over the real wire protocol: dynalite on loopback,
 * started by the project itself, tables created as the stack declares them.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { handler as cancelBillingRequest } from '../functions/cancel-billing-request/handler.ts';
import { LOCAL_TABLES, type LocalDynamo, startLocalDynamo } from '../local/aws/dynamodb.ts';
import { GOCARDLESS_DEMO, GoCardlessSimulator } from '../local/simulators/gocardless.ts';
import { DynamoLedger } from '../shared/aws/ledger-table.ts';
import { DynamoIdempotencyStore, onceFor, setIdempotencyStore } from '../shared/idempotency.ts';
import type { LedgerEntry } from '../shared/ledger.ts';
import { callApi } from './support/invoke.ts';
import { useSecrets } from './support/providers.ts';

let dynamo: LocalDynamo;
beforeAll(async () => {
  dynamo = await startLocalDynamo();
  process.env.AWS_ENDPOINT_URL_DYNAMODB = dynamo.url;
});
afterAll(async () => {
  delete process.env.AWS_ENDPOINT_URL_DYNAMODB;
  await dynamo.stop();
});

const entry = (i: number, fields: Partial<LedgerEntry> = {}): LedgerEntry => ({
  provider: 'gocardless',
  operation: 'cancel-billing-request',
  target: { billingRequestId: `BRQ${i}` },
  outcome: 'canceled',
  attempts: 1,
  durationMs: 5,
  at: new Date(Date.UTC(2026, 10, 22, 10, 0, i)).toISOString(),
  source: 'api',
  ...fields,
});

describe('audit ledger in DynamoDB', () => {
  const ledger = () => new DynamoLedger(LOCAL_TABLES.ledger);

  it('records any number of entries and queries them by provider and target, newest first', async () => {
    const target = { billingRequestId: 'BRQLEDGER1' };
    await ledger().record(
      Array.from({ length: 30 }, (_, i) =>
        entry(i, { target, outcome: i % 2 ? 'failed' : 'canceled', requestId: `r${i}` }),
      ),
    );
    const { entries, cursor } = await ledger().query({
      provider: 'gocardless',
      target: 'billingRequestId=BRQLEDGER1',
      limit: 20,
    });
    expect(entries).toHaveLength(20);
    expect(entries[0]?.requestId).toBe('r29');
    expect(cursor).toBeDefined();
    const next = await ledger().query({
      provider: 'gocardless',
      target: 'billingRequestId=BRQLEDGER1',
      limit: 20,
      ...(cursor ? { cursor } : {}),
    });
    expect(next.entries).toHaveLength(10);
    expect(next.cursor).toBeUndefined();
  });

  it('finds the latest cancellation of a target, skipping failed attempts', async () => {
    const target = { billingRequestId: 'BRQLEDGER2' };
    expect(await ledger().lastCancellation('gocardless', target)).toBeUndefined();
    await ledger().record([
      entry(1, { target, outcome: 'canceled', requestId: 'first' }),
      entry(2, { target, outcome: 'failed', requestId: 'later' }),
    ]);
    expect((await ledger().lastCancellation('gocardless', target))?.requestId).toBe('first');
  });

  it('remembers a failed attempt that may have taken effect, for the same idempotency key only', async () => {
    const target = { billingRequestId: 'BRQLEDGER3' };
    expect(await ledger().mayHaveTakenEffect('gocardless', target, 'key-1')).toBe(false);
    await ledger().record([
      entry(1, { target, outcome: 'failed', idempotencyKey: 'key-0' }),
      entry(2, { target, outcome: 'failed', idempotencyKey: 'key-1', details: { mayHaveTakenEffect: true } }),
      entry(3, { target, outcome: 'failed', idempotencyKey: 'key-2' }),
    ]);
    expect(await ledger().mayHaveTakenEffect('gocardless', target, 'key-1')).toBe(true);
    expect(await ledger().mayHaveTakenEffect('gocardless', target, 'key-2')).toBe(false);
    expect(await ledger().mayHaveTakenEffect('gocardless', { billingRequestId: 'BRQOTHER' }, 'key-1')).toBe(false);
  });

  it("counts a running batch's settled targets per provider, failed attempts and repeats excluded", async () => {
    const executionId = 'arn:aws:states:eu-west-1:111111111111:execution:Batch:progress-1';
    await ledger().record([
      entry(1, { executionId, target: { billingRequestId: 'BRQP1' }, outcome: 'failed' }),
      entry(2, { executionId, target: { billingRequestId: 'BRQP1' }, outcome: 'canceled' }),
      entry(3, { executionId, target: { billingRequestId: 'BRQP2' }, outcome: 'not_found' }),
      entry(4, { executionId, target: { billingRequestId: 'BRQP3' }, outcome: 'failed' }),
      entry(5, {
        executionId,
        provider: 'auco',
        operation: 'cancel-signing-processes',
        target: { code: 'A1' },
        outcome: 'canceled',
      }),
      entry(6, {
        executionId,
        provider: 'auco',
        operation: 'cancel-signing-processes',
        target: { code: 'A1' },
        outcome: 'already_canceled',
      }),
      entry(7, { executionId: 'another', target: { billingRequestId: 'BRQP9' } }),
    ]);
    expect(await ledger().progress(executionId)).toEqual({ gocardless: 2, auco: 1 });
  });

  it('queries every outcome of a credit application across providers', async () => {
    const creditApplicationId = 'b2a9f8d3-6e5c-4b1a-9d8e-7f6a5b4c3d99';
    await ledger().record([
      entry(1, { creditApplicationId, target: { billingRequestId: 'BRQAPP1' } }),
      entry(2, {
        creditApplicationId,
        provider: 'truework',
        operation: 'cancel-verification-order',
        target: { orderId: 'O-APP' },
      }),
      entry(3, { target: { billingRequestId: 'BRQOTHER' } }),
    ]);
    const { entries } = await ledger().query({ creditApplicationId });
    expect(entries.map((e) => e.provider).sort()).toEqual(['gocardless', 'truework']);
  });
});

describe('idempotency records in DynamoDB', () => {
  const store = new DynamoIdempotencyStore(LOCAL_TABLES.idempotency);
  beforeEach(() => setIdempotencyStore(store));
  const soon = () => Date.now() + 5_000;

  it('runs once per key, replays the kept answer, and refuses the key with another payload', async () => {
    let runs = 0;
    const work = async () => ++runs;
    expect(await onceFor('k1', 'h1', soon(), work, () => true)).toEqual({ result: 1, replayed: false });
    expect(await onceFor('k1', 'h1', soon(), work, () => true)).toEqual({ result: 1, replayed: true });
    await expect(onceFor('k1', 'h2', soon(), work, () => true)).rejects.toThrow(
      /already used with a different request/,
    );
    expect(runs).toBe(1);
  });

  it('concurrent duplicates run once: the second waits for the first', async () => {
    let runs = 0;
    const slow = async () => {
      runs++;
      await new Promise((r) => setTimeout(r, 300));
      return 'done';
    };
    const results = await Promise.all([
      onceFor('k2', 'h', soon(), slow, () => true),
      onceFor('k2', 'h', soon(), slow, () => true),
    ]);
    expect(runs).toBe(1);
    expect(results.map((r) => r.result)).toEqual(['done', 'done']);
    expect(results.filter((r) => r.replayed)).toHaveLength(1);
  });

  it('an answer not worth keeping (or an error) releases the key: the retry runs again', async () => {
    let runs = 0;
    await onceFor(
      'k3',
      'h',
      soon(),
      async () => ++runs,
      () => false,
    );
    await expect(
      onceFor(
        'k3',
        'h',
        soon(),
        async () => Promise.reject(new Error('boom')),
        () => true,
      ),
    ).rejects.toThrow('boom');
    expect(
      (
        await onceFor(
          'k3',
          'h',
          soon(),
          async () => ++runs,
          () => true,
        )
      ).result,
    ).toBe(2);
  });

  it('a record held by an invocation that died is taken over after its deadline', async () => {
    expect((await store.begin('k4', 'h', Date.now() + 100)).kind).toBe('new');
    expect((await store.begin('k4', 'h', soon())).kind).toBe('in_progress');
    await new Promise((r) => setTimeout(r, 150));
    expect((await store.begin('k4', 'h', soon())).kind).toBe('new');
  });
});

describe('idempotent API calls, end to end through a handler', () => {
  const sim = new GoCardlessSimulator();
  beforeAll(async () => {
    await sim.start();
  });
  afterAll(() => sim.stop());
  beforeEach(() => {
    sim.reset();
    useSecrets({ gocardless: { accessToken: GOCARDLESS_DEMO.accessToken, baseUrl: sim.url } });
    setIdempotencyStore(new DynamoIdempotencyStore(LOCAL_TABLES.idempotency));
  });
  const cancel = (key: string, body: unknown = { metadata: { reason: 'declined' } }) =>
    callApi(cancelBillingRequest, {
      method: 'POST',
      route: '/v1/gocardless/billing-requests/{billingRequestId}/cancel',
      path: `/v1/gocardless/billing-requests/${GOCARDLESS_DEMO.pending}/cancel`,
      pathParameters: { billingRequestId: GOCARDLESS_DEMO.pending },
      headers: { 'idempotency-key': key },
      body,
    });
  const providerCalls = () => sim.received('POST', /actions\/cancel$/).length;

  it('a retried request returns the first outcome without a second provider call', async () => {
    const key = `retry-${Date.now()}`;
    const first = await cancel(key);
    const second = await cancel(key);
    expect(first.body).toMatchObject({ outcome: 'canceled' });
    expect(second.body).toEqual(first.body);
    expect(second.headers['idempotent-replayed']).toBe('true');
    expect(providerCalls()).toBe(1);
  });

  it('the same key with a different body gets 422 and a clear message, and no provider call', async () => {
    const key = `mismatch-${Date.now()}`;
    await cancel(key);
    const other = await cancel(key, { metadata: { reason: 'withdrawn' } });
    expect(other.status).toBe(422);
    expect(other.body).toMatchObject({
      error: 'idempotency_key_reused',
      message: expect.stringMatching(/different request/),
    });
    expect(providerCalls()).toBe(1);
  });

  it('concurrent duplicates make one provider call', async () => {
    sim.inject({ fault: { kind: 'delay', ms: 300 } });
    const key = `concurrent-${Date.now()}`;
    const results = await Promise.all([cancel(key), cancel(key), cancel(key)]);
    expect(results.map((r) => r.body.outcome)).toEqual(['canceled', 'canceled', 'canceled']);
    expect(providerCalls()).toBe(1);
  });
});
