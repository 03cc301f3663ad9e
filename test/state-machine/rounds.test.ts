/**
 * Rounds, the deadline and the providers' circuits (shared/batch/rounds.ts, shared/core/circuit.ts): the synthesized batch
 * definition run locally against the simulators, with a provider down and then back. The rounds' waits are scaled
 * (1/1000: a 30 s wait takes 30 ms) and the circuit probes every CIRCUIT_PROBE_SECONDS (0.2 s here); the circuit
 * lives in the local DynamoDB table, as in AWS.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { handler as batches } from '#functions/batches/handler.ts';
import { TooManyRequestsError } from '#local/lambda/service.ts';
import { apiGatewayV2Event, lambdaContext } from '#local/lambda-events.ts';
import { MYCREDITAPP_DEMO } from '#local/simulators/mycreditapp.ts';
import { HISTORY_LIMIT, PAYLOAD_LIMIT_BYTES } from '#local/state-machine.ts';
import { DynamoDb } from '#shared/aws/dynamodb.ts';
import { DynamoLedger } from '#shared/aws/ledger-table.ts';
import type { BatchResult } from '#shared/batch/summarize.ts';
import { DynamoCircuitStore } from '#shared/core/circuit.ts';
import { startTestSystem, type TestSystem } from '#test/support/system.ts';

let system: TestSystem;
let circuits: DynamoCircuitStore;
const PROBE_SECONDS = 0.2;
const ENV = {
  MYCREDITAPP_RATE_PER_SECOND: '1000',
  AUCO_RATE_PER_SECOND: '1000',
  TRUEWORK_RATE_PER_SECOND: '1000',
  GOCARDLESS_RATE_PER_SECOND: '1000',
  CIRCUIT_PROBE_SECONDS: String(PROBE_SECONDS),
  CIRCUIT_FAILURES_TO_OPEN: '3',
};

/** Functions every invocation of which is throttled, as at a reserved concurrency of 0. */
const throttled = new Set<string>();
/** Functions each item of which is throttled this many times before it runs (a long queue on a busy night). */
const throttledFirst = new Map<string, number>();
const throttles = new Map<string, number>();

beforeAll(async () => {
  Object.assign(process.env, ENV);
  system = await startTestSystem({
    retryIntervalMs: 5,
    circuits: true,
    intercept: async (fn, event, invoke) => {
      const key = `${fn}:${(event as { index?: number }).index}`;
      const seen = throttles.get(key) ?? 0;
      if (throttled.has(fn) || seen < (throttledFirst.get(fn) ?? 0)) {
        throttles.set(key, seen + 1);
        throw new TooManyRequestsError(fn, 'ReservedFunctionConcurrentInvocationLimitExceeded');
      }
      return invoke();
    },
  });
  circuits = new DynamoCircuitStore(system.cloud.dynamo.tables.circuits);
});
afterAll(async () => {
  await system.stop();
  for (const name of Object.keys(ENV)) delete process.env[name];
});
beforeEach(async () => {
  await system.reset();
  throttled.clear();
  throttledFirst.clear();
  throttles.clear();
});

type Result = BatchResult & { status: string };
let counter = 0;
function start(input: unknown) {
  return system.cloud.stepFunctions.start(JSON.stringify(input), `rounds-${++counter}`);
}
async function outputOf(execution: ReturnType<typeof start>): Promise<Result> {
  await execution.done;
  expect(execution.status).toBe('SUCCEEDED');
  return JSON.parse(execution.output ?? '{}') as Result;
}
async function read(batchId: string) {
  const reply = (await batches(
    apiGatewayV2Event({
      method: 'GET',
      routeKey: 'GET /v1/batches/{batchId}',
      path: `/v1/batches/${batchId}`,
      pathParameters: { batchId },
    }) as never,
    lambdaContext('batches'),
  )) as { statusCode: number; body: string };
  return JSON.parse(reply.body) as {
    status: string;
    waiting?: {
      round: number;
      pending: number;
      nextAttemptAt: string;
      deadline: string;
      waitingFor: { provider: string; items: number; circuit?: string; guard?: string }[];
      lastFailure?: Record<string, string>;
    };
    error?: string;
    cause?: string;
  };
}
/** Polls until `check` holds (bounded: a broken build fails here instead of hanging). */
async function until(check: () => Promise<boolean> | boolean, what: string, limitMs = 30_000) {
  const end = Date.now() + limitMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
const down = { fault: { kind: 'status' as const, status: 503 }, times: Number.POSITIVE_INFINITY };
const gocardlessItems = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => {
    const id = `BRQ${prefix}${String(i).padStart(4, '0')}`;
    system.gocardless.add(id, 'pending');
    return { provider: 'gocardless', billingRequestId: id };
  });
const trueworkItems = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => {
    const id = `ORD${prefix}${String(i).padStart(4, '0')}`;
    system.truework.add(id, ['processing']);
    return { provider: 'truework', orderId: id };
  });
const requestsFor = (ids: string[]) =>
  system.gocardless.requests.filter((r) => r.method === 'POST' && ids.some((id) => r.path.includes(id))).length;

describe('rounds until the deadline, and a circuit per provider', () => {
  it('a provider down and then back: the batch waits (visible), then every item is cancelled once', async () => {
    system.gocardless.inject(down);
    const gc = gocardlessItems('A', 12);
    const tw = trueworkItems('A', 4);
    const execution = start({ reason: 'declined', items: [...gc, ...tw] });

    // While GoCardless is down the batch says so: waiting, for GoCardless, its circuit open, and when it tries next.
    let seen: Awaited<ReturnType<typeof read>> | undefined;
    await until(async () => {
      seen = await read(execution.name);
      return seen.status === 'waiting' && seen.waiting?.waitingFor.some((w) => w.circuit === 'open') === true;
    }, 'the batch to wait for an open circuit');
    expect(seen?.waiting?.waitingFor).toEqual([
      { provider: 'gocardless', items: 12, circuit: 'open', since: expect.any(String) },
    ]);
    expect(seen?.waiting?.pending).toBe(12);
    expect(Date.parse(seen?.waiting?.nextAttemptAt ?? '')).not.toBeNaN();
    expect((await circuits.get('gocardless'))?.state).toBe('open');
    expect(system.gocardless.effectiveCancels.size).toBe(0);

    system.gocardless.clearFaults();
    const result = await outputOf(execution);
    expect(result.status).toBe('completed');
    expect(result.results.map((r) => r.outcome)).toEqual(Array(16).fill('canceled'));
    expect(result.summary).toMatchObject({ lost: 0, byOutcome: { canceled: 16, failed: 0 } });
    expect(result.rounds).toMatchObject({ ended: 'settled' });
    expect(result.rounds?.count).toBeGreaterThan(1);
    // Exactly one effective cancel per item, rounds notwithstanding; the probe that succeeded closed the circuit.
    const cancels = new Map([...system.gocardless.effectiveCancels, ...system.truework.effectiveCancels]);
    expect(cancels.size).toBe(16);
    expect([...cancels.values()].every((n) => n === 1)).toBe(true);
    expect((await circuits.get('gocardless'))?.state).toBe('closed');
  });

  it('a provider down past the deadline: its items end failed, saying why; final outcomes are final at once', async () => {
    system.truework.inject(down);
    const tw = trueworkItems('B', 3);
    const gc = gocardlessItems('B', 2);
    const deadline = new Date(Date.now() + 1_500).toISOString();
    const result = await outputOf(
      start({
        reason: 'declined',
        deadline,
        items: [...tw, ...gc, { provider: 'gocardless', billingRequestId: 'BRQ000UNKNOWN' }],
      }),
    );
    expect(result.status).toBe('completed_with_failures');
    expect(result.results.map((r) => [r.provider, r.outcome])).toEqual([
      ['truework', 'failed'],
      ['truework', 'failed'],
      ['truework', 'failed'],
      ['gocardless', 'canceled'],
      ['gocardless', 'canceled'],
      ['gocardless', 'not_found'],
    ]);
    for (const r of result.results.slice(0, 3)) {
      expect(r.failure).toBe('transient');
      expect(r.message).toContain(`still failing when the batch's deadline ${deadline} passed`);
    }
    expect(result.rounds).toMatchObject({ deadline, ended: 'deadline' });
    expect(result.rounds?.message).toMatch(/^3 item\(s\) of truework still failing when the batch's deadline/);
    expect(result.summary.lost).toBe(0);
    expect(system.truework.effectiveCancels.size).toBe(0);
    // The not-found item was asked once: a final outcome is not retried in rounds.
    expect(system.gocardless.received('POST', /BRQ000UNKNOWN/)).toHaveLength(1);
  });

  it('a function throttled at every attempt (a reservation of 0): an inline batch gives its items up, saying why, instead of outgrowing its history', async () => {
    // Each item spends every throttle retry (41 attempts, 3 history events each) in this Standard execution's
    // history: 150 items take about 19,400 events a round, so a second round would pass 25,000 and fail the
    // execution with no outcome for any item (as it did here before the rounds counted throttled tasks).
    throttled.add('cancel-billing-request');
    const items = gocardlessItems('T', 150);
    const execution = start({ reason: 'declined', items });
    const result = await outputOf(execution);
    expect(execution.stats.historyEvents).toBeGreaterThan(150 * 41 * 3);
    expect(execution.stats.historyEvents).toBeLessThan(HISTORY_LIMIT);
    expect(result.rounds).toMatchObject({ count: 1, ended: 'history' });
    expect(result.rounds?.message).toMatch(
      /^150 item\(s\) of gocardless given up after 1 round\(s\): the execution's history has no room/,
    );
    expect(result.results).toHaveLength(150);
    for (const r of result.results) {
      expect(r.outcome).toBe('failed');
      expect(r.message).toContain('Lambda.TooManyRequestsException');
    }
    expect(system.gocardless.requests.filter((r) => r.method === 'POST')).toHaveLength(0);
    // A small batch, throttled the same, waits in rounds as before.
    const few = start({ reason: 'declined', items: gocardlessItems('U', 10) });
    await until(async () => (await read(few.name)).status === 'waiting', 'the small batch to wait for a second round');
    throttled.clear();
    const drained = await outputOf(few);
    expect(drained.summary.byOutcome.canceled).toBe(10);
  }, 60_000);

  it('items throttled 30 times each, then failing: the rounds count the history Summarize reads, not their estimate, and stop in time', async () => {
    // Each item costs about 100 history events (31 attempts and more), where the estimate says 12: by the estimate
    // a second round of 150 fits, and it would pass 25,000 (the twin, like AWS, fails the execution there). Summarize
    // reads the history (GetExecutionHistory's latest event) and reserves the next round at what this one cost.
    throttledFirst.set('cancel-billing-request', 30);
    system.gocardless.inject(down);
    const execution = start({ reason: 'declined', items: gocardlessItems('V', 150) });
    const result = await outputOf(execution);
    expect(execution.stats.historyEvents).toBeGreaterThan(150 * 31 * 3);
    expect(execution.stats.historyEvents).toBeLessThan(HISTORY_LIMIT);
    expect(result.rounds).toMatchObject({ count: 1, ended: 'history' });
    expect(result.summary.byOutcome.failed).toBe(150);
    // Each item was throttled 30 times, then ran.
    expect(Math.min(...throttles.values())).toBe(30);
  }, 60_000);

  it("the largest inline batch failing every item, with the longest reason and requester, stays under Step Functions' 256 KiB per state", async () => {
    // Each caught item used to carry its batch (reason and all) into the round's results: 150 of them made
    // Summarize's input 310 KB, and Step Functions fails such an execution (States.DataLimitExceeded, which no Catch
    // catches) with no outcome for any item. The local runner enforces the quota as AWS does.
    system.gocardless.inject(down);
    system.truework.inject(down);
    const items = [...gocardlessItems('Z', 75), ...trueworkItems('Z', 75)];
    const execution = start({
      reason: 'r'.repeat(1000),
      requestedBy: `${'q'.repeat(300)}@example.com`,
      creditApplicationId: 'd4c1b0f5-8a7e-4d3c-9fa0-917c6d5e4f43',
      deadline: new Date(Date.now() + 2_000).toISOString(),
      items,
    });
    const result = await outputOf(execution);
    expect(result.summary.byOutcome.failed).toBe(150);
    expect(execution.stats.payloadBytesMax).toBeGreaterThan(50_000);
    expect(execution.stats.payloadBytesMax).toBeLessThan(PAYLOAD_LIMIT_BYTES);
  }, 60_000);

  it('the circuit is shared: a second execution finds it open and only probes, and both drain when it closes', async () => {
    system.gocardless.inject(down);
    const a = gocardlessItems('C', 10);
    const b = gocardlessItems('D', 10);
    const first = start({ reason: 'declined', items: a });
    await until(
      async () => (await circuits.get('gocardless'))?.state === 'open',
      'the first execution to open the circuit',
    );

    const bStarted = Date.now();
    const second = start({ reason: 'declined', items: b });
    await until(async () => (await read(second.name)).status === 'waiting', 'the second execution to wait');
    await new Promise((r) => setTimeout(r, 5 * PROBE_SECONDS * 1000));
    // The second execution never opened the circuit itself: it found it open, and its items reached GoCardless
    // only as the circuit's probes, at most one per probe interval (shared with the first execution's probes).
    const elapsed = (Date.now() - bStarted) / 1000;
    const bIds = b.map((i) => i.billingRequestId);
    expect(requestsFor(bIds)).toBeLessThanOrEqual(1 + Math.floor(elapsed / PROBE_SECONDS));
    // The first execution is still at it, between rounds or in one: not given up.
    expect(first.status).toBe('RUNNING');

    system.gocardless.clearFaults();
    const [ra, rb] = await Promise.all([outputOf(first), outputOf(second)]);
    for (const result of [ra, rb]) {
      expect(result.status).toBe('completed');
      expect(result.results.every((r) => r.outcome === 'canceled')).toBe(true);
      expect(result.rounds?.count).toBeGreaterThan(1);
    }
    expect(system.gocardless.effectiveCancels.size).toBe(20);
    expect([...system.gocardless.effectiveCancels.values()].every((n) => n === 1)).toBe(true);
    expect((await circuits.get('gocardless'))?.state).toBe('closed');
  });

  it('the manifest path (Distributed Maps) waits in rounds as well, keeping its rounds in S3, and drains', async () => {
    system.gocardless.inject(down);
    const items = [...gocardlessItems('E', 30), ...trueworkItems('E', 30)];
    const key = 'manifests/outage.jsonl';
    system.cloud.s3.put(system.cloud.bucket, key, items.map((i) => JSON.stringify(i)).join('\n'));
    const execution = start({ reason: 'declined', manifest: { bucket: system.cloud.bucket, key } });
    // Each child takes its 25 items one after another, each failing through its Lambda's own retries until the circuit
    // opens: the first round takes a while in the Lambda containers.
    await until(async () => (await read(execution.name)).status === 'waiting', 'the manifest batch to wait', 90_000);
    expect((await read(execution.name)).waiting?.waitingFor.map((w) => [w.provider, w.items])).toEqual([
      ['gocardless', 30],
    ]);
    // A second round finds GoCardless still down: the batch waits again.
    await until(async () => ((await read(execution.name)).waiting?.round ?? 0) >= 2, 'a second round to wait', 90_000);

    system.gocardless.clearFaults();
    const result = (await outputOf(execution)) as unknown as {
      status: string;
      summary: BatchResult['summary'];
      rounds: BatchResult['rounds'];
      results: { bucket: string; key: string; count: number };
    };
    expect(result.status).toBe('completed');
    expect(result.summary).toMatchObject({ total: 60, lost: 0, byOutcome: { canceled: 60, failed: 0 } });
    expect(result.rounds?.count).toBeGreaterThan(1);
    const lines = (system.cloud.s3.get(result.results.bucket, result.results.key) ?? '').trim().split('\n');
    const outcomes = lines.map((l) => JSON.parse(l) as { index: number; outcome: string });
    expect(outcomes.map((o) => o.index)).toEqual(Array.from({ length: 60 }, (_, i) => i));
    expect(outcomes.every((o) => o.outcome === 'canceled')).toBe(true);
    // Each round kept only what it settled (the first: the 30 Truework items), never everything so far again.
    const base = result.results.key.replace(/\/results\.jsonl$/, '');
    const kept = Array.from({ length: (result.rounds?.count ?? 1) - 1 }, (_, n) =>
      (system.cloud.s3.get(result.results.bucket, `${base}/rounds/${n + 1}/settled.jsonl`) ?? '')
        .split('\n')
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as { index: number }).index),
    );
    expect(kept.length).toBeGreaterThanOrEqual(2);
    expect(kept[0]).toHaveLength(30);
    expect(new Set(kept.flat()).size).toBe(kept.flat().length);
    const cancels = new Map([...system.gocardless.effectiveCancels, ...system.truework.effectiveCancels]);
    expect(cancels.size).toBe(60);
    expect([...cancels.values()].every((n) => n === 1)).toBe(true);
  }, 180_000);

  it('a guard whose provider is down waits in rounds (visible), cancels nothing until it has read the application, then the batch runs', async () => {
    system.mycreditapp.inject(down);
    const gc = gocardlessItems('G', 3);
    const app = MYCREDITAPP_DEMO.declinedApplication;
    const execution = start({ reason: 'expired', guard: { creditApplicationId: app }, items: gc });

    // Past the guard's own retries, the batch waits for mycreditapp in rounds, as items do, and says so.
    let seen: Awaited<ReturnType<typeof read>> | undefined;
    await until(async () => {
      seen = await read(execution.name);
      return (seen.waiting?.round ?? 0) >= 2;
    }, 'the guard to wait a second round');
    expect(seen?.status).toBe('waiting');
    expect(seen?.waiting?.waitingFor).toEqual([{ provider: 'mycreditapp', items: 3, guard: app }]);
    // The guard's lookups go through mycreditapp's circuit: three failures in a row opened it, and it says so.
    expect(seen?.waiting?.lastFailure?.mycreditapp).toMatch(
      /^mycreditapp guard: Provider\.(Transient: HTTP 503 \(after \d attempt\(s\)\)|CircuitOpen: mycreditapp is unreachable \(circuit open since .+)$/,
    );
    expect((await circuits.get('mycreditapp'))?.state).toBe('open');
    expect(system.gocardless.received('POST', /actions\/cancel$/)).toHaveLength(0);

    system.mycreditapp.clearFaults();
    const result = await outputOf(execution);
    expect(result).toMatchObject({ status: 'completed', guard: { found: true, skip: false, status: 'declined' } });
    expect(result.results.map((r) => r.outcome)).toEqual(['canceled', 'canceled', 'canceled']);
    expect(result.rounds).toMatchObject({ ended: 'settled' });
    expect(result.rounds?.count).toBeGreaterThan(2);
    expect([...system.gocardless.effectiveCancels.values()]).toEqual([1, 1, 1]);
    // The probe that read the application closed the circuit.
    expect((await circuits.get('mycreditapp'))?.state).toBe('closed');
  });

  it('a guard whose provider stays down past the deadline: every item ends failed, not attempted, saying why', async () => {
    system.mycreditapp.inject(down);
    const gc = gocardlessItems('H', 2);
    const tw = trueworkItems('H', 1);
    const app = MYCREDITAPP_DEMO.declinedApplication;
    const deadline = new Date(Date.now() + 1_500).toISOString();
    const result = await outputOf(
      start({ reason: 'expired', deadline, guard: { creditApplicationId: app }, items: [...gc, ...tw] }),
    );
    expect(result.status).toBe('completed_with_failures');
    expect(result.summary).toMatchObject({ total: 3, lost: 0, byOutcome: { failed: 3, canceled: 0 } });
    const why = new RegExp(
      `^mycreditapp guard: Provider\\.(Transient|CircuitOpen): .+ \\(not attempted: the batch's guard could not read mycreditapp credit application ${app} before the batch's deadline ${deadline.replace(/\./g, '\\.')} passed, after \\d+ round\\(s\\)\\)$`,
    );
    expect(result.results.map((r) => [r.provider, r.outcome, r.attempts])).toEqual([
      ['gocardless', 'failed', 0],
      ['gocardless', 'failed', 0],
      ['truework', 'failed', 0],
    ]);
    for (const r of result.results) expect(r.message).toMatch(why);
    expect(result.rounds).toMatchObject({ deadline, ended: 'deadline' });
    expect(result.rounds?.message).toMatch(/^3 item\(s\) not attempted: the batch's guard could not read/);
    // Nothing reached a provider; the guard tried, and its lookup retried, until the deadline.
    expect(system.gocardless.received('POST', /actions\/cancel$/)).toHaveLength(0);
    expect(system.truework.requests).toHaveLength(0);
    expect(system.mycreditapp.requests.length).toBeGreaterThan(4);
    // Each item's record is in the ledger, as for items given up after their own rounds.
    const ledger = new DynamoLedger(
      system.cloud.dynamo.tables.ledger,
      new DynamoDb({ endpoint: system.cloud.dynamo.url }),
    );
    const { entries } = await ledger.query({
      provider: 'gocardless',
      target: `billingRequestId=${gc[0]?.billingRequestId}`,
    });
    expect(entries.map((e) => [e.outcome, e.source, e.attempts])).toEqual([['failed', 'task', 0]]);
    expect(entries[0]?.message).toMatch(why);
  });

  it('a manifest batch whose guard never reads its application: the same, its results written to S3', async () => {
    system.mycreditapp.inject(down);
    const items = [...gocardlessItems('M', 3), ...trueworkItems('M', 2)];
    const key = 'manifests/guard-down.jsonl';
    system.cloud.s3.put(system.cloud.bucket, key, items.map((i) => JSON.stringify(i)).join('\n'));
    const deadline = new Date(Date.now() + 1_500).toISOString();
    const result = (await outputOf(
      start({
        reason: 'expired',
        deadline,
        guard: { creditApplicationId: MYCREDITAPP_DEMO.declinedApplication },
        manifest: { bucket: system.cloud.bucket, key },
      }),
    )) as unknown as {
      status: string;
      summary: BatchResult['summary'];
      rounds: BatchResult['rounds'];
      results: { bucket: string; key: string; count: number };
    };
    expect(result.status).toBe('completed_with_failures');
    expect(result.summary).toMatchObject({ total: 5, lost: 0, byOutcome: { failed: 5 } });
    expect(result.rounds).toMatchObject({ ended: 'deadline' });
    const lines = (system.cloud.s3.get(result.results.bucket, result.results.key) ?? '').trim().split('\n');
    const outcomes = lines.map((l) => JSON.parse(l) as { index: number; outcome: string; message: string });
    expect(outcomes.map((o) => [o.index, o.outcome])).toEqual([0, 1, 2, 3, 4].map((i) => [i, 'failed']));
    for (const o of outcomes) expect(o.message).toContain("(not attempted: the batch's guard could not read");
    expect(system.gocardless.requests).toHaveLength(0);
    expect(system.truework.requests).toHaveLength(0);
  });
});
