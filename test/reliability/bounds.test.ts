/**
 * A bound on every input (issue 14): sizes are counted before anything is validated, a list of problems is capped
 * (the first 100 and a count), and what used to be a 500 (a bad cursor, a deeply nested body with an
 * Idempotency-Key, a broken percent-escape in a path) is a 400 that says what is wrong. The API also refuses to
 * name S3 objects: a manifest is for the console. Sizes of answers are asserted, never timings.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { handler as batches } from '#functions/batches/handler.ts';
import { handler as cancelBillingRequest } from '#functions/cancel-billing-request/handler.ts';
import { handler as cancelVerificationOrder } from '#functions/cancel-verification-order/handler.ts';
import { handler as cancellations } from '#functions/cancellations/handler.ts';
import { LocalApi } from '#local/api.ts';
import { LOCAL_TABLES, type LocalDynamo, startLocalDynamo } from '#local/aws/dynamodb.ts';
import { apiGatewayV2Event, lambdaContext } from '#local/lambda-events.ts';
import { DynamoLedger } from '#shared/aws/ledger-table.ts';
import { MANIFEST_LIMIT, parseManifest } from '#shared/batch/input.ts';
import { defaultDeps, setDefaultDeps } from '#shared/core/cancel.ts';
import type { LedgerEntry } from '#shared/core/ledger.ts';
import { MAX_BODY_DEPTH, MAX_BODY_VALUES } from '#shared/handler/events.ts';
import { setLogSink } from '#shared/observability/log.ts';
import { useSecrets } from '#test/support/providers.ts';

/** Anything that leaves the process (providers, S3, Step Functions) lands here: it must stay silent. */
let calls = 0;
let trap: http.Server;
let dynamo: LocalDynamo;
let restoreLogs: (line: string) => void;
const saved = { ...process.env };

beforeAll(async () => {
  trap = http.createServer((_req, res) => {
    calls++;
    res.writeHead(500).end();
  });
  await new Promise<void>((resolve) => trap.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(trap.address() as AddressInfo).port}`;
  dynamo = await startLocalDynamo();
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_SFN: url,
    AWS_ENDPOINT_URL_S3: url,
    AWS_ENDPOINT_URL_DYNAMODB: dynamo.url,
    STATE_MACHINE_ARN: 'arn:aws:states:eu-west-1:111111111111:stateMachine:Batch',
    BATCH_BUCKET: 'batches',
  });
  restoreLogs = setLogSink(() => undefined);
});
afterAll(async () => {
  setLogSink(restoreLogs);
  process.env = saved;
  await dynamo.stop();
  await new Promise<void>((resolve) => trap.close(() => resolve()));
});
beforeEach(() => {
  useSecrets({ gocardless: { accessToken: 'sandbox_bounds_token_1', baseUrl: `http://127.0.0.1:9` } });
  calls = 0;
});

type Handler = (event: never, context: never) => Promise<unknown>;
async function send(
  handler: Handler,
  method: string,
  options: {
    body?: string;
    headers?: Record<string, string>;
    query?: Record<string, string>;
    path?: Record<string, string>;
  },
) {
  const event = apiGatewayV2Event({
    method,
    routeKey: `${method} /bounds`,
    path: '/bounds',
    ...(options.path ? { pathParameters: options.path } : {}),
    headers: { 'content-type': 'application/json', ...options.headers },
    ...(options.query ? { query: new URLSearchParams(options.query) } : {}),
    ...(options.body !== undefined ? { body: options.body } : {}),
  });
  const res = (await handler(event as never, lambdaContext('bounds') as never)) as { statusCode: number; body: string };
  return {
    status: res.statusCode,
    bytes: Buffer.byteLength(res.body),
    body: JSON.parse(res.body) as {
      error?: string;
      message: string;
      issues?: { path: string; message: string }[];
      issueCount?: number;
      cancellations?: LedgerEntry[];
      next?: string;
    },
  };
}
const postBatch = (body: string, headers: Record<string, string> = {}) => send(batches, 'POST', { body, headers });

describe('a bound on every input', () => {
  it('a batch over the limit is refused by its count, not item by item: 20,000 empty items get one small problem', async () => {
    const res = await postBatch(JSON.stringify({ reason: 'x', items: Array.from({ length: 20_000 }, () => ({})) }));
    expect(res.status).toBe(400);
    expect(res.body.issues).toEqual([
      {
        path: 'items',
        message: 'holds 20000 items; POST /v1/batches takes at most 10000: split it into several batches',
      },
    ]);
    expect(res.bytes).toBeLessThan(1_000);
    expect(calls).toBe(0);
  });

  it('a 6 MB body of 2,000,000 values is refused by counting, before it is parsed or validated', async () => {
    const body = JSON.stringify({ reason: 'x', items: Array.from({ length: 2_000_000 }, () => ({})) });
    expect(body.length).toBeGreaterThan(6_000_000);
    const res = await postBatch(body);
    expect(res.status).toBe(400);
    expect(res.body.message).toBe(
      `The request is invalid: body holds more than ${MAX_BODY_VALUES} values; the largest request, a batch of 10,000 items, holds far fewer: split it`,
    );
    expect(res.bytes).toBeLessThan(1_000);
  });

  it('the list of problems is capped: the first 100 and a count, whatever the number', async () => {
    const res = await postBatch(JSON.stringify({ reason: 'x', items: Array.from({ length: 10_000 }, () => ({})) }));
    expect(res.status).toBe(400);
    expect(res.body.issues).toHaveLength(100);
    expect(res.body.issues?.[99]).toEqual({ path: 'items[99].provider', message: 'is required' });
    expect(res.body.issueCount).toBe(10_000);
    expect(res.body.message).toMatch(/items\[99\]\.provider is required; and 9900 more problem\(s\)$/);
    expect(res.bytes).toBeLessThan(10_000);
    // A small list is listed whole, with its count.
    const one = await postBatch(JSON.stringify({ reason: 'x', items: [{}] }));
    expect(one.body).toMatchObject({ issues: [{ path: 'items[0].provider' }], issueCount: 1 });
  });

  it('thousands of unknown fields are named a few at a time', async () => {
    const body = Object.fromEntries(Array.from({ length: 50_000 }, (_, i) => [`field${i}`, 1]));
    const res = await send(cancelBillingRequest, 'POST', {
      body: JSON.stringify(body),
      path: { billingRequestId: 'BRQ000BOUNDS1' },
    });
    expect(res.status).toBe(400);
    expect(res.body.message).toBe(
      'The request is invalid: body unknown field(s) "field0", "field1", "field2", "field3", "field4", "field5", "field6", "field7", "field8", "field9" and 49990 more: remove or correct them',
    );
  });

  it('a body nested 20,000 (or 200,000) levels deep is a 400 saying so, with or without an Idempotency-Key', async () => {
    for (const depth of [20_000, 200_000]) {
      for (const body of ['['.repeat(depth) + ']'.repeat(depth), `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`]) {
        for (const headers of [{ 'idempotency-key': `deep-${depth}` }, {}] as Record<string, string>[]) {
          const res = await postBatch(body, headers);
          expect(res.status, `${depth} ${JSON.stringify(headers)}`).toBe(400);
          expect(res.body.issues).toEqual([
            {
              path: 'body',
              message: `is nested more than ${MAX_BODY_DEPTH} levels deep; no request of this API needs more than a few`,
            },
          ]);
        }
      }
    }
    // Brackets inside strings are text, not nesting.
    const text = await postBatch(JSON.stringify({ reason: '['.repeat(100), items: [{}] }));
    expect(text.body.issues?.map((i) => i.path)).toEqual(['items[0].provider']);
    expect(calls).toBe(0);
  });
});

describe('a manifest (console batches) is counted before its lines are parsed', () => {
  it('100,001 lines, none of them JSON, get one problem: the limit', () => {
    const { items, issues } = parseManifest('not json\n'.repeat(MANIFEST_LIMIT + 1));
    expect(issues).toEqual([{ path: 'manifest', message: `a manifest holds at most ${MANIFEST_LIMIT} items` }]);
    expect(items).toEqual([]);
    // At the limit, lines are parsed and each bad one named.
    expect(parseManifest('{}\nnot json\n').issues).toEqual([{ path: 'line 2', message: 'is not valid JSON' }]);
  });
});

describe('GET /v1/cancellations: a cursor is checked before DynamoDB sees it', () => {
  const ledger = new DynamoLedger(LOCAL_TABLES.ledger);
  const application = '4c1d2e3f-5a6b-4c7d-8e9f-0a1b2c3d4e5f';
  const entry = (i: number, target: string): LedgerEntry => ({
    provider: 'gocardless',
    operation: 'cancel-billing-request',
    target: { billingRequestId: target },
    outcome: 'canceled',
    attempts: 1,
    durationMs: 5,
    at: new Date(Date.UTC(2026, 10, 30, 10, 0, i)).toISOString(),
    source: 'api',
    creditApplicationId: application,
  });
  const query = (q: Record<string, string>) => send(cancellations, 'GET', { query: q });
  const encode = (key: unknown) => Buffer.from(JSON.stringify(key)).toString('base64url');

  beforeAll(async () => {
    await ledger.record([
      ...Array.from({ length: 3 }, (_, i) => entry(i, 'BRQ000CURSOR1')),
      ...Array.from({ length: 3 }, (_, i) => entry(i + 3, 'BRQ000CURSOR2')),
    ]);
  });
  beforeEach(() => setDefaultDeps({ ...defaultDeps(), ledger }));

  it('a cursor a page returned pages on, by target and by credit application', async () => {
    const byTarget = { provider: 'gocardless', billingRequestId: 'BRQ000CURSOR1', limit: '2' };
    const first = await query(byTarget);
    expect(first.status).toBe(200);
    expect(first.body.cancellations).toHaveLength(2);
    const second = await query({ ...byTarget, cursor: first.body.next ?? '' });
    expect(second.status).toBe(200);
    expect(second.body.cancellations).toHaveLength(1);
    const byApplication = { creditApplicationId: application, limit: '4' };
    const page = await query(byApplication);
    const rest = await query({ ...byApplication, cursor: page.body.next ?? '' });
    expect([page.body.cancellations?.length, rest.status, rest.body.cancellations?.length]).toEqual([4, 200, 2]);
  });

  it('a cursor that is not one (garbage, edited, or from another query) is a 400 naming the cursor', async () => {
    const other = await query({ provider: 'gocardless', billingRequestId: 'BRQ000CURSOR2', limit: '1' });
    const byApplication = await query({ creditApplicationId: application, limit: '1' });
    const byTarget = { provider: 'gocardless', billingRequestId: 'BRQ000CURSOR1' };
    const bad = [
      'abc',
      'e30',
      encode([1, 2]),
      encode({ pk: { S: 'gocardless#billingRequestId=BRQ000CURSOR1' } }),
      encode({ pk: { S: 'gocardless#billingRequestId=BRQ000CURSOR1' }, sk: { N: '1' } }),
      encode({ pk: { S: 'gocardless#billingRequestId=BRQ000CURSOR1' }, sk: { S: 'x' }, extra: { S: 'y' } }),
      other.body.next ?? '',
      byApplication.body.next ?? '',
    ];
    for (const cursor of bad) {
      const res = await query({ ...byTarget, cursor });
      expect(res.status, cursor).toBe(400);
      expect(res.body.issues, cursor).toEqual([
        { path: 'query.cursor', message: expect.stringMatching(/^is not a cursor this query returned/) },
      ]);
    }
    // And a page cursor of one application does not page through another's.
    const foreign = await query({
      creditApplicationId: '00000000-0000-4000-8000-000000000000',
      cursor: byApplication.body.next ?? '',
    });
    expect(foreign.status).toBe(400);
  });

  it('without a table (local in-process ledger), a cursor that is not a page number is a 400 too', async () => {
    useSecrets({});
    const res = await query({ creditApplicationId: application, cursor: 'abc' });
    expect(res.status).toBe(400);
    expect(res.body.issues?.[0]?.path).toBe('query.cursor');
  });
});

describe('paths: a broken percent-escape is a 400 from the local API', () => {
  let api: LocalApi;
  beforeAll(async () => {
    api = new LocalApi({
      functions: { batches, 'cancel-verification-order': cancelVerificationOrder },
      openapi: () => ({}),
    });
    await api.listen(0);
  });
  afterAll(() => api.close());

  it('%zz, a lone % and a truncated escape each get a 400 naming the path parameter', async () => {
    for (const [path, parameter] of [
      ['/v1/truework/orders/%zz/cancel', 'path.orderId'],
      ['/v1/truework/orders/ORDER%/cancel', 'path.orderId'],
      ['/v1/batches/ab%2', 'path.batchId'],
      ['/v1/batches/%E0%A4%A', 'path.batchId'],
    ] as const) {
      const res = await fetch(`${api.url}${path}`, { method: path.endsWith('cancel') ? 'POST' : 'GET' });
      const body = (await res.json()) as { message: string; issues: { path: string; message: string }[] };
      expect(res.status, path).toBe(400);
      expect(body.issues, path).toEqual([
        { path: parameter, message: expect.stringMatching(/write a literal % as %25/) },
      ]);
      expect(body.message, path).toMatch(/^The request is invalid: path\.\w+ is not valid percent-encoding/);
    }
    // A well-formed escape still reaches the function, decoded (and is then validated there).
    const escaped = await fetch(`${api.url}/v1/batches/ab%2Fcd`);
    expect(escaped.status).toBe(400);
    expect(((await escaped.json()) as { issues: { path: string }[] }).issues[0]?.path).toBe('path.batchId');
  });
});

describe('POST /v1/batches does not name S3 objects', () => {
  it('a manifest is refused, alone or beside items, and nothing is read or started', async () => {
    const manifest = { bucket: 'batches', key: 'manifests/someone-elses.jsonl' };
    const alone = await postBatch(JSON.stringify({ reason: 'x', manifest }));
    expect(alone.status).toBe(400);
    expect(alone.body.issues).toEqual([
      {
        path: 'manifest',
        message: expect.stringMatching(
          /^is not accepted by the API: send the items themselves \(up to 10000; .*\); a manifest already in S3 is started from the Step Functions console$/,
        ),
      },
    ]);
    const beside = await postBatch(
      JSON.stringify({ reason: 'x', manifest, items: [{ provider: 'gocardless', billingRequestId: 'BRQ000X1' }] }),
    );
    expect(beside.status).toBe(400);
    expect(beside.body.issues?.map((i) => i.path)).toEqual(['manifest', 'items']);
    const overLimit = await postBatch(JSON.stringify({ reason: 'x', manifest, items: Array(10_001).fill({}) }));
    expect(overLimit.body.issues?.map((i) => i.path)).toEqual(['manifest', 'items']);
    expect(calls).toBe(0);
  });
});
