/**
 * The audit ledger, idempotency records and circuits in DynamoDB, over the real wire protocol: dynalite on loopback,
 * started by the project itself, tables created as the stack declares them.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { handler as cancelBillingRequest } from '#functions/cancel-billing-request/handler.ts';
import { handler as cancelDocumentRequest } from '#functions/cancel-document-request/handler.ts';
import { LOCAL_TABLES, type LocalDynamo, startLocalDynamo } from '#local/aws/dynamodb.ts';
import { GOCARDLESS_DEMO, GoCardlessSimulator } from '#local/simulators/gocardless.ts';
import { MYCREDITAPP_DEMO, MyCreditAppSimulator } from '#local/simulators/mycreditapp.ts';
import { DynamoDb } from '#shared/aws/dynamodb.ts';
import { DynamoLedger } from '#shared/aws/ledger-table.ts';
import { DynamoCircuitStore } from '#shared/core/circuit.ts';
import type { LedgerEntry } from '#shared/core/ledger.ts';
import {
  canonicalJson,
  DynamoIdempotencyStore,
  type IdempotencyStore,
  MemoryIdempotencyStore,
  onceFor,
  setIdempotencyStore,
} from '#shared/handler/idempotency.ts';
import { callApi } from '#test/support/invoke.ts';
import { useSecrets } from '#test/support/providers.ts';

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

describe.each([
  ['memory', () => new MemoryIdempotencyStore()],
  ['DynamoDB', () => new DynamoIdempotencyStore(LOCAL_TABLES.idempotency)],
] as [string, () => IdempotencyStore][])('idempotency records held by a claim (%s)', (_name, make) => {
  const soon = () => Date.now() + 5_000;
  const expired = () => new Promise((r) => setTimeout(r, 150));

  it('an invocation that outlived its hold cannot overwrite the answer of the one that took the key over', async () => {
    const store = make();
    setIdempotencyStore(store);
    const key = `takeover-${Date.now()}`;
    let finishFirst: (value: string) => void = () => {};
    // The first holds the key for 100 ms and is still working after that (a stalled invocation).
    const first = onceFor(
      key,
      'h',
      Date.now() + 100,
      () => new Promise<string>((resolve) => (finishFirst = resolve)),
      () => true,
    );
    await expired();
    // A retry takes the key over and completes with its own answer.
    expect(
      await onceFor(
        key,
        'h',
        soon(),
        async () => 'second',
        () => true,
      ),
    ).toEqual({
      result: 'second',
      replayed: false,
    });
    // The stalled one finishes late: its caller gets its own answer, but the kept record stays the takeover's.
    finishFirst('first');
    expect((await first).result).toBe('first');
    expect(
      await onceFor(
        key,
        'h',
        soon(),
        async () => 'third',
        () => true,
      ),
    ).toEqual({
      result: 'second',
      replayed: true,
    });
  });

  it('complete and release act only on the claim they were given', async () => {
    const store = make();
    const key = `claims-${Date.now()}`;
    const stale = await store.begin(key, 'h', Date.now() + 100);
    expect(stale.kind).toBe('new');
    await expired();
    const fresh = await store.begin(key, 'h', soon());
    expect(fresh.kind).toBe('new');
    if (stale.kind !== 'new' || fresh.kind !== 'new') return;
    // The stale claim neither releases nor completes the record the fresh one holds.
    await store.release(key, stale.claim);
    expect(await store.complete(key, stale.claim, 'stale')).toBe(false);
    expect((await store.begin(key, 'h', soon())).kind).toBe('in_progress');
    expect(await store.complete(key, fresh.claim, 'fresh')).toBe(true);
    expect(await store.begin(key, 'h', soon())).toEqual({ kind: 'completed', data: 'fresh' });
  });
});

describe('circuits in DynamoDB', () => {
  it('a container reuses a read that found the circuit closed; an open or failing circuit is read every time', async () => {
    // Two containers' stores; this one counts its reads of the table.
    let reads = 0;
    const db = new (class extends DynamoDb {
      override call<T>(operation: string, input: Record<string, unknown>): Promise<T> {
        if (operation === 'GetItem') reads++;
        return super.call<T>(operation, input);
      }
    })();
    const config = { failuresToOpen: 2, probeIntervalMs: 60_000 };
    const here = new DynamoCircuitStore(LOCAL_TABLES.circuits, { db, config });
    const other = new DynamoCircuitStore(LOCAL_TABLES.circuits, { config });
    const reuse = 60_000;
    const state = async (ms = reuse) => (await here.get('auco', ms))?.state ?? 'closed';

    // Closed (no item yet): one read serves every gate in the window; without reuse, each asks.
    for (let i = 0; i < 5; i++) expect(await state()).toBe('closed');
    expect(reads).toBe(1);
    expect(await state(0)).toBe('closed');
    expect(reads).toBe(2);

    // Another container opens it: a gate reusing the closed read lets one call through (the price), a fresh read sees it.
    await other.failure('auco', 'HTTP 503');
    await other.failure('auco', 'HTTP 503');
    expect(await state()).toBe('closed');
    expect(await state(0)).toBe('open');
    // Open is never reused: every gate reads, and sees the probe's close at once.
    expect(await state()).toBe('open');
    expect(await state()).toBe('open');
    expect(reads).toBe(5);
    await other.success('auco');
    expect(await state()).toBe('closed');
    expect(reads).toBe(6);

    // A failure counted here forgets the reused read; failures counted are read every time, until an answer resets them.
    expect(await state()).toBe('closed');
    expect(reads).toBe(6);
    await here.failure('auco', 'HTTP 503');
    expect((await here.get('auco', reuse))?.failures).toBe(1);
    expect((await here.get('auco', reuse))?.failures).toBe(1);
    expect(reads).toBe(8);
    await other.success('auco');
    expect((await here.get('auco', reuse))?.failures).toBe(0);
    expect((await here.get('auco', reuse))?.failures).toBe(0);
    expect(reads).toBe(9);

    // The window passes: read again.
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(await state(20)).toBe('closed');
    expect(reads).toBe(10);
  });
});

describe('the request fingerprint', () => {
  it('is a canonical form: the same data in any key order, at any depth, is the same request', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: 'é"' } })).toBe(
      canonicalJson({ a: { c: 'é"', d: [1, { x: 1, y: 2 }] }, b: 1 }),
    );
    expect(canonicalJson({ b: 1, a: [undefined, null], u: undefined })).toBe('{"a":[null,null],"b":1}');
    let deep: unknown = 1;
    for (let i = 0; i < 20_000; i++) deep = { k: deep };
    expect(canonicalJson(deep)).toHaveLength(20_000 * 6 + 1);
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
  const cancel = (key: string, body: unknown = { metadata: { reason: 'declined' } }, principal?: string) =>
    callApi(cancelBillingRequest, {
      method: 'POST',
      route: '/v1/gocardless/billing-requests/{billingRequestId}/cancel',
      path: `/v1/gocardless/billing-requests/${GOCARDLESS_DEMO.pending}/cancel`,
      pathParameters: { billingRequestId: GOCARDLESS_DEMO.pending },
      headers: { 'idempotency-key': key },
      body,
      ...(principal ? { principal } : {}),
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

  it('the same body with its keys in another order is the same request: replayed, not refused', async () => {
    const key = `reordered-${Date.now()}`;
    const first = await cancel(key, { reason: 'declined', metadata: { reason: 'declined', ref: 'A-1' } });
    const second = await cancel(key, { metadata: { ref: 'A-1', reason: 'declined' }, reason: 'declined' });
    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    expect(second.headers['idempotent-replayed']).toBe('true');
    expect(second.body).toEqual(first.body);
    expect(providerCalls()).toBe(1);
  });

  it('a key belongs to its caller: another principal with the same key gets its own answer', async () => {
    const key = `shared-${Date.now()}`;
    const alice = await cancel(key, undefined, 'arn:aws:iam::111111111111:user/alice');
    const bob = await cancel(key, undefined, 'arn:aws:iam::222222222222:user/bob');
    expect(alice.body).toMatchObject({ outcome: 'canceled' });
    // Bob's request reached the provider (which says it is cancelled already); Alice's answer was not his.
    expect(bob.headers['idempotent-replayed']).toBeUndefined();
    expect(bob.body).toMatchObject({ outcome: 'already_canceled' });
    expect(providerCalls()).toBe(2);
    // Each still replays their own.
    expect((await cancel(key, undefined, 'arn:aws:iam::111111111111:user/alice')).body).toEqual(alice.body);
    expect(providerCalls()).toBe(2);
  });

  it('concurrent duplicates make one provider call', async () => {
    sim.inject({ fault: { kind: 'delay', ms: 300 } });
    const key = `concurrent-${Date.now()}`;
    const results = await Promise.all([cancel(key), cancel(key), cancel(key)]);
    expect(results.map((r) => r.body.outcome)).toEqual(['canceled', 'canceled', 'canceled']);
    expect(providerCalls()).toBe(1);
  });
});

describe('idempotency sees the headers that change a mycreditapp request', () => {
  const sim = new MyCreditAppSimulator();
  const D = MYCREDITAPP_DEMO;
  beforeAll(async () => {
    await sim.start();
  });
  afterAll(() => sim.stop());
  beforeEach(() => {
    sim.reset();
    useSecrets({ mycreditapp: sim.demoSecret() });
    setIdempotencyStore(new DynamoIdempotencyStore(LOCAL_TABLES.idempotency));
  });
  const cancel = (key: string, targetOrganizationId: string) =>
    callApi(cancelDocumentRequest, {
      method: 'POST',
      route: '/v1/mycreditapp/organizations/{orgId}/document-requests/{requestId}/cancel',
      path: `/v1/mycreditapp/organizations/${D.hostOrg}/document-requests/${D.pendingRequest}/cancel`,
      pathParameters: { orgId: D.hostOrg, requestId: D.pendingRequest },
      headers: {
        'idempotency-key': key,
        'requester-organization-id': D.hostOrg,
        'target-organization-id': targetOrganizationId,
      },
    });
  const providerCalls = () => sim.received('POST', /\/cancellations$/).length;

  it('the same key for another target organization is another request: 422, not the first answer', async () => {
    const key = `orgs-${Date.now()}`;
    const first = await cancel(key, D.guestOrg);
    expect(first.body).toMatchObject({ outcome: 'canceled' });
    const other = await cancel(key, 'a3f1c2d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d');
    expect(other.status).toBe(422);
    expect(other.body).toMatchObject({ error: 'idempotency_key_reused' });
    expect(providerCalls()).toBe(1);
    // The same organizations again: the first answer.
    const again = await cancel(key, D.guestOrg);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body).toEqual(first.body);
  });
});
