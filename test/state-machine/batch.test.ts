/**
 * The batch state machine as CDK synthesizes it, run locally (aws-local-stepfunctions, with the Distributed Map
 * emulated) with its tasks bound to the real handlers and the provider simulators on loopback.
 */
import { createRequire } from 'node:module';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { handler as batches } from '#functions/batches/handler.ts';
import { batchStateMachine } from '#local/asl.ts';
import { apiGatewayV2Event, lambdaContext } from '#local/lambda-events.ts';
import { AUCO_DEMO } from '#local/simulators/auco.ts';
import { GOCARDLESS_DEMO } from '#local/simulators/gocardless.ts';
import { MYCREDITAPP_DEMO as D } from '#local/simulators/mycreditapp.ts';
import { TRUEWORK_DEMO } from '#local/simulators/truework.ts';
import type { BatchResult } from '#shared/batch/summarize.ts';
import { startTestSystem, type TestSystem } from '#test/support/system.ts';

let system: TestSystem;
/** Crash these item indexes' Lambda invocations (an unhandled TypeError, as a bug would). */
const crash = new Set<number>();
const RATES = ['MYCREDITAPP', 'AUCO', 'TRUEWORK', 'GOCARDLESS'].map((p) => `${p}_RATE_PER_SECOND`);

beforeAll(async () => {
  for (const name of RATES) process.env[name] = '1000';
  system = await startTestSystem({
    retryIntervalMs: 5,
    // The containers pace as fast as the simulators allow (the stack's own shares are asserted in test/infra).
    env: Object.fromEntries(RATES.map((name) => [name, '1000'])),
    intercept: async (_fn, event, invoke) => {
      const index = (event as { index?: number }).index;
      if (index !== undefined && crash.has(index))
        throw new TypeError(`Cannot read properties of undefined (reading 'id') at item ${index}`);
      return invoke();
    },
  });
});
afterAll(async () => {
  await system.stop();
  for (const name of RATES) delete process.env[name];
});
beforeEach(async () => {
  await system.reset();
  crash.clear();
});

const mycreditapp = (requestId: string) => ({
  provider: 'mycreditapp',
  orgId: D.hostOrg,
  requestId,
  requesterOrganizationId: D.hostOrg,
  targetOrganizationId: D.guestOrg,
});
let counter = 0;
async function run(input: unknown) {
  const execution = system.cloud.stepFunctions.start(JSON.stringify(input), `test-${++counter}`);
  await execution.done;
  return {
    ...execution,
    result: execution.output
      ? (JSON.parse(execution.output) as BatchResult & { guard?: unknown; message?: string })
      : undefined,
  };
}
/** Requests that would cancel something (tokens and status reads excluded). */
const cancelRequests = () =>
  [system.gocardless, system.truework, system.auco, system.mycreditapp].reduce(
    (n, sim) => n + sim.requests.filter((r) => r.method !== 'GET' && !r.path.endsWith('/oauth2/token')).length,
    0,
  );

describe('batch state machine (synthesized definition, run locally)', () => {
  it('the definition is valid ASL, JSONPath only, with one Distributed Map per provider', () => {
    const { definition } = batchStateMachine();
    const validate = createRequire(import.meta.url)('asl-validator') as (d: unknown) => {
      isValid: boolean;
      errors: unknown[];
    };
    const { isValid, errors } = validate(definition);
    expect(errors).toEqual([]);
    expect(isValid).toBe(true);
    const text = JSON.stringify(definition);
    expect(text).not.toContain('JSONata');
    expect(text.match(/"Mode":"DISTRIBUTED"/g)).toHaveLength(4);
  });

  it('runs a mixed inline batch: one outcome per item, in input order, duplicates removed and counted', async () => {
    const { status, result } = await run({
      reason: 'Credit application declined',
      requestedBy: 'ops@example.com',
      items: [
        { provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending },
        { provider: 'truework', orderId: TRUEWORK_DEMO.mixed },
        { provider: 'auco', code: AUCO_DEMO.created },
        { provider: 'auco', code: AUCO_DEMO.signed },
        mycreditapp(D.pendingRequest),
        { provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending },
        { provider: 'gocardless', billingRequestId: 'BRQ000UNKNOWN' },
        { provider: 'truework', orderId: TRUEWORK_DEMO.completed },
      ],
    });
    expect(status).toBe('SUCCEEDED');
    expect(result?.status).toBe('completed');
    expect(result?.results.map((r) => [r.index, r.provider, r.outcome])).toEqual([
      [0, 'gocardless', 'canceled'],
      [1, 'truework', 'canceled'],
      [2, 'auco', 'canceled'],
      [3, 'auco', 'not_cancelable'],
      [4, 'mycreditapp', 'canceled'],
      [5, 'gocardless', 'canceled'],
      [6, 'gocardless', 'not_found'],
      [7, 'truework', 'not_cancelable'],
    ]);
    expect(result?.results[5]?.duplicateOf).toBe(0);
    expect(result?.summary).toMatchObject({
      total: 8,
      unique: 7,
      duplicates: 1,
      lost: 0,
      byOutcome: { canceled: 4, not_cancelable: 2, not_found: 1 },
    });
    expect(result?.summary.byProvider.gocardless).toMatchObject({ canceled: 1, not_found: 1 });
    // The duplicate was not sent twice.
    expect(system.gocardless.received('POST', /actions\/cancel$/)).toHaveLength(2);
    // Auco got the batch's reason as its message and requestedBy as its email.
    expect(system.auco.notices).toEqual([
      { code: AUCO_DEMO.created, message: 'Credit application declined', email: 'ops@example.com' },
    ]);
  });

  it('the guard skips a batch whose application is in skipIfStatusIn: a clear skipped result, nothing cancelled', async () => {
    const { status, result } = await run({
      reason: 'expired',
      guard: { creditApplicationId: D.approvedApplication },
      items: [{ provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending }],
    });
    expect(status).toBe('SUCCEEDED');
    expect(result).toMatchObject({
      status: 'skipped',
      message: 'Skipped: the credit application is approved, one of approved, finalized',
    });
    expect(cancelRequests()).toBe(0);
  });

  it('the guard proceeds when the status is not listed', async () => {
    const { result } = await run({
      reason: 'expired',
      guard: { creditApplicationId: D.declinedApplication, skipIfStatusIn: ['approved'] },
      items: [{ provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending }],
    });
    expect(result).toMatchObject({ status: 'completed', guard: { found: true, skip: false, status: 'declined' } });
    expect(result?.results[0]?.outcome).toBe('canceled');
  });

  it('invalid input fails the execution with every bad item listed by index and field, before any cancel', async () => {
    const { status, error, cause } = await run({
      reason: '',
      guard: { creditApplicationId: D.approvedApplication, skipIfStatusIn: ['aproved'] },
      items: [
        { provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending },
        { provider: 'truework' },
        { provider: 'stripe', id: 'x' },
        { provider: 'truework', orderId: 'O1', reason: 'no-match', extra: 1 },
        { provider: 'auco', code: 'TR1' },
      ],
    });
    expect(status).toBe('FAILED');
    expect(error).toBe('Input.Invalid');
    const message = (JSON.parse(cause ?? '{}') as { errorMessage: string }).errorMessage;
    for (const problem of [
      'reason: must say why',
      'guard.skipIfStatusIn[0]: must be mycreditapp credit application statuses',
      'items[1].orderId: is required',
      'items[2].provider: must name a provider',
      'items[3].reason: must be one of immediate',
      'items[3]: unknown field(s) "extra"',
      'items[4].email: is required for Auco when requestedBy is not an email address',
    ]) {
      expect(message).toContain(problem);
    }
    expect(cancelRequests()).toBe(0);
  });

  it('an inline item whose Lambda crashes ends failed; the others are unaffected', async () => {
    crash.add(1);
    const { result } = await run({
      reason: 'declined',
      items: [
        { provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending },
        { provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.ready },
      ],
    });
    expect(result?.status).toBe('completed_with_failures');
    expect(result?.results.map((r) => r.outcome)).toEqual(['canceled', 'failed']);
    expect(result?.results[1]?.message).toMatch(/^TypeError: Cannot read properties of undefined/);
    expect(result?.summary.lost).toBe(0);
  });

  it('1,000 mixed items through POST /v1/batches (the manifest path) with 429 storms, 5xx, resets and crashes: none lost', async () => {
    const { gocardless, truework, auco, mycreditapp: mc } = system;
    const items: unknown[] = [];
    for (let i = 0; i < 1000; i++) {
      const id = String(i).padStart(5, '0');
      switch (i % 4) {
        case 0:
          gocardless.add(`BRQ${id}`, 'pending');
          items.push({ provider: 'gocardless', billingRequestId: `BRQ${id}` });
          break;
        case 1:
          truework.add(`ORD${id}`, ['processing']);
          items.push({ provider: 'truework', orderId: `ORD${id}` });
          break;
        case 2:
          auco.add(`AU${id}`, 'CREATED');
          items.push({ provider: 'auco', code: `AU${id}` });
          break;
        default: {
          const requestId = `00000000-0000-4000-8000-0000000${id}`;
          mc.addDocumentRequest(requestId, 'pending');
          items.push(mycreditapp(requestId));
        }
      }
    }
    const soon = () => new Date(Date.now() + 300).toUTCString();
    gocardless.inject({
      fault: {
        kind: 'status',
        status: 429,
        headers: { 'ratelimit-reset': soon() },
        body: { error: { type: 'invalid_api_usage' } },
      },
      probability: 0.1,
      times: 15,
    });
    gocardless.inject({ fault: { kind: 'status', status: 429, html: true }, probability: 0.3, times: 100 });
    truework.inject({ fault: { kind: 'status', status: 503 }, probability: 0.2, times: 100 });
    mc.inject({ fault: { kind: 'reset' }, probability: 0.1, times: 50, path: '/organizations' });
    mc.inject({ fault: { kind: 'truncate' }, probability: 0.1, times: 30, path: '/organizations' });
    auco.inject({ fault: { kind: 'status', status: 500 }, probability: 0.3, times: 5, method: 'POST' });
    const crashed = [3, 400, 401, 777];
    for (const i of crashed) crash.add(i);

    const start = (await batches(
      apiGatewayV2Event({
        method: 'POST',
        routeKey: 'POST /v1/batches',
        path: '/v1/batches',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ reason: 'declined', requestedBy: 'ops@example.com', items }),
      }) as never,
      lambdaContext('batches'),
    )) as { statusCode: number; body: string };
    expect(start.statusCode).toBe(202);
    const { batchId } = JSON.parse(start.body) as { batchId: string };
    const execution = [...system.cloud.stepFunctions.executions.values()].find((e) => e.name === batchId);
    await execution?.done;

    const read = (await batches(
      apiGatewayV2Event({
        method: 'GET',
        routeKey: 'GET /v1/batches/{batchId}',
        path: `/v1/batches/${batchId}`,
        pathParameters: { batchId },
      }) as never,
      lambdaContext('batches'),
    )) as { statusCode: number; body: string };
    const body = JSON.parse(read.body) as {
      status: string;
      summary: BatchResult['summary'];
      results: { bucket: string; key: string; count: number };
    };
    expect(read.statusCode).toBe(200);
    expect(body.summary).toMatchObject({ total: 1000, unique: 1000, lost: 0 });
    expect(body.results.count).toBe(1000);

    const results = (system.cloud.s3.get(body.results.bucket, body.results.key) ?? '')
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as {
            index: number;
            outcome: string;
            failure?: string;
            message?: string;
            target: Record<string, string>;
          },
      );
    // One outcome per item, in input order.
    expect(results.map((r) => r.index)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    // The crashed items are caught: failed, and named as crashes.
    expect(crashed.map((i) => results[i]?.outcome)).toEqual(['failed', 'failed', 'failed', 'failed']);
    expect(crashed.every((i) => /^TypeError: Cannot read properties/.test(results[i]?.message ?? ''))).toBe(true);
    // Every other item was cancelled or, where a storm outlasted every retry (local retry intervals are
    // milliseconds, not the definition's seconds), failed as rate limited or transient: reported, never lost.
    const stormed = results.filter((r) => !crashed.includes(r.index) && r.outcome !== 'canceled');
    expect(
      stormed.every((r) => r.outcome === 'failed' && (r.failure === 'rate_limited' || r.failure === 'transient')),
    ).toBe(true);
    expect(stormed.length).toBeLessThanOrEqual(10);
    expect(body.status).toBe('completed_with_failures');
    // Exactly one effective cancel per cancelled resource, retries and lost answers notwithstanding; none for the rest.
    const cancels = new Map([
      ...gocardless.effectiveCancels,
      ...truework.effectiveCancels,
      ...auco.effectiveCancels,
      ...mc.effectiveCancels,
    ]);
    expect([...cancels.values()].every((n) => n === 1)).toBe(true);
    for (const r of results) {
      const id = Object.values(r.target).at(-1) ?? '';
      expect(cancels.has(id)).toBe(r.outcome === 'canceled');
    }
    // The storms did happen.
    expect(gocardless.requests.filter((r) => r.served === 'fault:429').length).toBeGreaterThan(30);
    expect(truework.requests.filter((r) => r.served === 'fault:503').length).toBeGreaterThan(20);
  });
});
