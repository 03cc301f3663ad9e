/**
 * Fuzzing (fast-check): for every route, and for the batch and expiration inputs, at least 10,000 generated bad
 * requests each, with any headers and query strings beside them; ledger cursors, forged or foreign, against the
 * DynamoDB ledger; and every route through the local API with percent-escapes in its path. Every one gets a 4xx
 * with a message; never a 5xx, never a call to a provider or to AWS.
 *
 * "Bad" is decided by the route's own schema: random requests (random path values, headers, JSON bodies, and
 * mutations of valid bodies) are kept when the schema rejects them. The property is about the pipeline: whatever
 * is invalid is refused cleanly before anything leaves the process.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as z from 'zod/mini';
import { handler as batches, Post as batchPost } from '#functions/batches/handler.ts';
import {
  handler as cancelBillingRequest,
  Api as cancelBillingRequestApi,
} from '#functions/cancel-billing-request/handler.ts';
import {
  handler as cancelDocumentRequest,
  Api as cancelDocumentRequestApi,
} from '#functions/cancel-document-request/handler.ts';
import {
  handler as cancelSigningProcesses,
  Api as cancelSigningProcessesApi,
} from '#functions/cancel-signing-processes/handler.ts';
import {
  handler as cancelVerificationOrder,
  Api as cancelVerificationOrderApi,
} from '#functions/cancel-verification-order/handler.ts';
import { handler as cancellations, Query as cancellationsQuery } from '#functions/cancellations/handler.ts';
import { ById, handler as expirations } from '#functions/expirations/handler.ts';
import {
  handler as getCreditApplication,
  Api as getCreditApplicationApi,
} from '#functions/get-credit-application/handler.ts';
import { LocalApi } from '#local/api.ts';
import { apiGatewayV2Event, lambdaContext } from '#local/lambda-events.ts';
import { DynamoLedger } from '#shared/aws/ledger-table.ts';
import { validateBatch } from '#shared/batch/input.ts';
import { reloadConfig } from '#shared/config.ts';
import { defaultDeps, setDefaultDeps } from '#shared/core/cancel.ts';
import { ExpirationRequest } from '#shared/core/expirations.ts';
import { ROUTES } from '#shared/handler/routes.ts';
import { setLogSink } from '#shared/observability/log.ts';
import { useSecrets } from '#test/support/providers.ts';

const RUNS = 10_000;

/** Anything that leaves the process lands here: providers and AWS endpoints alike. It must stay silent. */
let calls = 0;
let trap: http.Server;
let restoreLogs: (line: string) => void;
beforeAll(async () => {
  trap = http.createServer((_req, res) => {
    calls++;
    res.writeHead(500).end();
  });
  await new Promise<void>((resolve) => trap.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(trap.address() as AddressInfo).port}`;
  useSecrets({
    gocardless: { accessToken: 'sandbox_fuzz_token_1', baseUrl: url },
    truework: { apiKey: 'tw_sk_test_fuzz_0000001', baseUrl: url },
    auco: { privateKey: 'prk_fuzz_000001', publicKey: 'puk_fuzz_000001', baseUrl: url },
    mycreditapp: { clientId: 'fuzz', clientSecret: 'fuzz-secret-0001', baseUrl: url },
  });
  for (const service of ['SFN', 'SCHEDULER', 'LAMBDA', 'S3', 'DYNAMODB'])
    process.env[`AWS_ENDPOINT_URL_${service}`] = url;
  Object.assign(process.env, {
    STATE_MACHINE_ARN: 'arn:aws:states:eu-west-1:111111111111:stateMachine:Batch',
    BATCH_BUCKET: 'batches',
    SCHEDULE_GROUP: 'g',
    SCHEDULER_ROLE_ARN: 'arn:aws:iam::111111111111:role/r',
    SCHEDULER_DLQ_ARN: 'arn:aws:sqs:eu-west-1:111111111111:q',
    LOOKUP_FUNCTION_NAME: 'lookup',
  });
  reloadConfig();
  restoreLogs = setLogSink(() => undefined);
});
afterAll(async () => {
  setLogSink(restoreLogs);
  await new Promise<void>((resolve) => trap.close(() => resolve()));
});

type Handler = (event: never, context: never) => Promise<unknown>;
interface Request {
  path: Record<string, string>;
  headers: Record<string, string>;
  query: Record<string, string>;
  body: unknown;
  /** Send the body as this raw text instead (not JSON, wrong content type). */
  raw?: string;
}

async function send(handler: Handler, method: string, request: Request) {
  const event = apiGatewayV2Event({
    method,
    routeKey: `${method} /fuzz`,
    path: '/fuzz',
    pathParameters: request.path,
    headers: { 'content-type': 'application/json', ...request.headers },
    query: new URLSearchParams(request.query),
    ...(request.raw !== undefined
      ? { body: request.raw }
      : request.body !== undefined
        ? { body: JSON.stringify(request.body) }
        : {}),
  });
  return (await handler(event as never, lambdaContext('fuzz') as never)) as { statusCode: number; body?: string };
}

const text = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constantFrom(
    '',
    ' ',
    '../..',
    '%00',
    'BRQ',
    'BRQ!!',
    'tw_sk_',
    '<script>',
    'null',
    '00000000-0000-0000-0000-00000000000g',
  ),
  fc.string({ minLength: 1000, maxLength: 3000 }),
);
const anyJson = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.constantFrom(null, [], {}, '', 0, true, { items: null }, { codes: [] }),
);
/** Mutations of a valid body: a field dropped, retyped, or an unknown one added. */
const mutated = (valid: Record<string, unknown>) =>
  fc.oneof(
    fc
      .constantFrom(...Object.keys(valid))
      .map((k) => Object.fromEntries(Object.entries(valid).filter(([key]) => key !== k))),
    fc.tuple(fc.constantFrom(...Object.keys(valid)), anyJson).map(([k, v]) => ({ ...valid, [k]: v })),
    fc.tuple(text, anyJson).map(([k, v]) => ({ ...valid, [`x${k}`]: v })),
  );

/** Percent-escapes as a caller might send them in a query or a path: valid, broken, encoded controls and bytes. */
const percentEscape = fc.constantFrom(
  '%zz',
  '%',
  '%4',
  '%E0%A4%A',
  '%C3%28',
  '%00',
  '%2F',
  '%25',
  '%20',
  '%0A',
  '%C3%A9',
  '%FF',
);
/** Any header a caller (or a proxy) may add, on every route: the content type, case variants, huge values. */
const anyHeaders = fc.dictionary(
  fc.oneof(
    fc.constantFrom(
      'content-type',
      'Content-Type',
      'IDEMPOTENCY-KEY',
      'content-encoding',
      'content-length',
      'authorization',
      'x-amz-date',
      'x-amz-security-token',
      'x-requested-by',
      'requester-organization-id',
      'Target-Organization-Id',
      'host',
      'accept',
    ),
    fc.stringMatching(/^[a-z][a-z0-9-]{0,30}$/),
  ),
  fc.oneof(
    text,
    percentEscape,
    fc.constantFrom(
      'application/json; charset=utf-8',
      'text/plain',
      'application/x-www-form-urlencoded',
      'application/vnd.api+json',
      'multipart/form-data; boundary=x',
      'gzip',
      '-1',
      '',
    ),
    fc.string({ minLength: 8000, maxLength: 9000 }),
  ),
  { maxKeys: 4 },
);

function request(
  body: fc.Arbitrary<unknown>,
  path: fc.Arbitrary<Record<string, string>> = fc.constant({}),
  extraHeaders: fc.Arbitrary<Record<string, string>> = fc.constant({}),
) {
  return fc.record({
    path,
    headers: fc
      .tuple(anyHeaders, extraHeaders, fc.option(text, { nil: undefined }))
      .map(([any, h, key]) => ({ ...any, ...h, ...(key === undefined ? {} : { 'idempotency-key': key }) })),
    query: fc.dictionary(
      fc.oneof(
        fc.constantFrom('provider', 'creditApplicationId', 'billingRequestId', 'limit', 'cursor', 'x'),
        fc.string({ maxLength: 20 }),
        percentEscape,
      ),
      fc.oneof(
        text,
        percentEscape,
        fc.tuple(text, percentEscape).map(([t, e]) => `${t}${e}`),
      ),
      { maxKeys: 3 },
    ),
    body,
    raw: fc.option(fc.oneof(text, fc.constant('{"unterminated": '), fc.constant('<xml/>')), {
      nil: undefined,
      freq: 8,
    }),
  }) as fc.Arbitrary<Request>;
}

/** A request the route's schema rejects (or that is not JSON at all). */
function rejectedBy(
  schema: z.core.$ZodType,
  arbitrary: fc.Arbitrary<Request>,
  extra?: (r: Request) => boolean,
): fc.Arbitrary<Request> {
  return arbitrary.filter((r) => {
    if (r.raw !== undefined) {
      try {
        JSON.parse(r.raw);
      } catch {
        return r.raw !== '';
      }
    }
    const parts = {
      path: r.path,
      headers: Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k.toLowerCase(), v])),
      query: r.query,
      body: r.raw !== undefined ? safeParse(r.raw) : r.body,
    };
    return !z.safeParse(schema, parts).success || (extra?.(r) ?? false);
  });
}

function safeParse(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}

async function check(handler: Handler, method: string, arbitrary: fc.Arbitrary<Request>, runs = RUNS) {
  const before = calls;
  await fc.assert(
    fc.asyncProperty(arbitrary, async (r) => {
      const res = await send(handler, method, r);
      const body = JSON.parse(res.body ?? '{}') as { message?: unknown };
      expect(res.statusCode, JSON.stringify(r).slice(0, 300)).toBeGreaterThanOrEqual(400);
      expect(res.statusCode, `${res.statusCode} for ${JSON.stringify(r).slice(0, 300)}: ${res.body}`).toBeLessThan(500);
      expect(typeof body.message).toBe('string');
    }),
    { numRuns: runs },
  );
  expect(calls - before).toBe(0);
}

const uuid = '3f2b8c1e-9a4d-4e2f-8b7a-1c2d3e4f5a6b';
const item = { provider: 'gocardless', billingRequestId: 'BRQ000FUZZ1' };
const headers = fc.dictionary(
  fc.constantFrom('requester-organization-id', 'target-organization-id', 'x-other'),
  fc.oneof(text, fc.constant(uuid)),
  { maxKeys: 3 },
);

// 10,000 handler calls take a few seconds alone, but over a minute on a 2-core machine busy with other suites: the
// time limit guards against a hang, it asserts no speed (benches measure speed).
describe('fuzzing: 10,000 bad requests per route, a clean 4xx each, nothing sent', { timeout: 300_000 }, () => {
  it('POST /v1/gocardless/billing-requests/{billingRequestId}/cancel', async () => {
    const path = fc.record({ billingRequestId: fc.oneof(text, fc.constant('BRQ000FUZZ1')) });
    await check(
      cancelBillingRequest,
      'POST',
      rejectedBy(cancelBillingRequestApi, request(fc.oneof(anyJson, mutated({ metadata: { a: 'b' } })), path)),
    );
  });

  it('POST /v1/truework/orders/{orderId}/cancel', async () => {
    const path = fc.record({ orderId: fc.oneof(text, fc.constant('ORDER_1')) });
    await check(
      cancelVerificationOrder,
      'POST',
      rejectedBy(
        cancelVerificationOrderApi,
        request(fc.oneof(anyJson, mutated({ reason: 'other', details: 'x' })), path),
      ),
    );
  });

  it('POST /v1/auco/documents/cancel', async () => {
    const valid = { codes: ['TR1'], message: 'declined', email: 'ops@example.com' };
    await check(
      cancelSigningProcesses,
      'POST',
      rejectedBy(cancelSigningProcessesApi, request(fc.oneof(anyJson, mutated(valid)))),
    );
  });

  it('POST /v1/mycreditapp/organizations/{orgId}/document-requests/{requestId}/cancel', async () => {
    const path = fc.record({ orgId: fc.oneof(text, fc.constant(uuid)), requestId: fc.oneof(text, fc.constant(uuid)) });
    await check(
      cancelDocumentRequest,
      'POST',
      rejectedBy(cancelDocumentRequestApi, request(fc.oneof(anyJson, mutated({ reason: 'x' })), path, headers)),
    );
  });

  it('GET /v1/mycreditapp/credit-applications/{creditApplicationId}', async () => {
    const path = fc.record({ creditApplicationId: fc.oneof(text, fc.constant(uuid)) });
    await check(
      getCreditApplication,
      'GET',
      rejectedBy(getCreditApplicationApi, request(fc.constant(undefined), path, headers)),
    );
  });

  it('GET /v1/cancellations', async () => {
    const needsTarget = (r: Request) =>
      !r.query.creditApplicationId &&
      !(r.query.provider && (r.query.billingRequestId || r.query.orderId || r.query.code || r.query.requestId));
    await check(
      cancellations,
      'GET',
      rejectedBy(z.object({ query: cancellationsQuery }), request(fc.constant(undefined)), needsTarget),
    );
  });

  it('POST /v1/batches: the batch input', async () => {
    const valid = { reason: 'declined', requestedBy: 'ops@example.com', items: [item] };
    const body = fc.oneof(
      anyJson,
      mutated(valid),
      fc.array(anyJson, { minLength: 1, maxLength: 5 }).map((items) => ({ reason: 'declined', items })),
      fc.array(mutated(item), { minLength: 1, maxLength: 3 }).map((items) => ({ reason: 'declined', items })),
    );
    const invalidBatch = (r: Request) => {
      try {
        validateBatch(r.raw !== undefined ? safeParse(r.raw) : r.body, undefined, 'items', 10_000);
        return false;
      } catch {
        return true;
      }
    };
    await check(
      batches,
      'POST',
      request(body).filter((r) => invalidBatch(r) || !z.safeParse(batchPost, { headers: r.headers }).success),
    );
  });

  it('POST /v1/expirations: the expiration input', async () => {
    const valid = { creditApplicationId: uuid, expiresAt: '2026-12-24T10:00:00Z', items: [item] };
    const body = fc.oneof(
      anyJson,
      mutated(valid),
      fc
        .oneof(text, fc.constantFrom('2099-01-01T00:00:00Z', 'tomorrow', '2026-13-40T99:00:00'))
        .map((expiresAt) => ({ ...valid, expiresAt })),
      fc.array(mutated(item), { minLength: 1, maxLength: 3 }).map((items) => ({ ...valid, items })),
    );
    await check(
      expirations,
      'POST',
      rejectedBy(z.object({ body: ExpirationRequest }), request(body), (r) => {
        const b = (r.raw !== undefined ? safeParse(r.raw) : r.body) as { items?: unknown; expiresAt?: unknown } | null;
        try {
          validateBatch({ reason: 'x', items: b?.items }, undefined, 'items');
        } catch {
          return true;
        }
        return typeof b?.expiresAt === 'string' && Date.parse(b.expiresAt) - Date.now() > 400 * 86_400_000;
      }),
    );
  });

  it('GET and DELETE /v1/expirations/{id}', async () => {
    const path = fc.record({ id: text });
    await check(expirations, 'GET', rejectedBy(ById, request(fc.constant(undefined), path)));
    await check(expirations, 'DELETE', rejectedBy(ById, request(fc.constant(undefined), path)));
  });

  it('GET /v1/cancellations: forged, edited and foreign cursors, against the DynamoDB ledger and the in-process one', async () => {
    const target = { provider: 'gocardless', billingRequestId: 'BRQ000FUZZ1' };
    const encode = (v: unknown) => Buffer.from(JSON.stringify(v) ?? '').toString('base64url');
    const attribute = fc.oneof(
      text.map((S) => ({ S })),
      fc.integer().map((n) => ({ N: String(n) })),
      anyJson,
    );
    const cursor = fc.oneof(
      text,
      fc.stringMatching(/^[A-Za-z0-9_-]{1,200}$/),
      anyJson.map(encode),
      // Shaped like a start key, of another partition (the query's own would be a real page).
      fc
        .record(
          { pk: attribute, sk: attribute, creditApplicationId: attribute, at: attribute, extra: attribute },
          { requiredKeys: [] },
        )
        .map(encode),
      fc.tuple(text, text).map(([pk, sk]) => encode({ pk: { S: `gocardless#${pk}` }, sk: { S: sk } })),
    );
    const queries = fc.record({
      query: fc.oneof(
        cursor.map((c) => ({ ...target, cursor: c })),
        cursor.map((c) => ({ creditApplicationId: uuid, cursor: c })),
      ),
      path: fc.constant({}),
      headers: anyHeaders,
      body: fc.constant(undefined),
    }) as fc.Arbitrary<Request>;
    // A page number is a real cursor of the in-process ledger; everything else must be refused by both.
    const notAPage = queries.filter((r) => !/^\d{1,9}$/.test(r.query.cursor ?? ''));
    await check(cancellations, 'GET', notAPage, RUNS / 2);
    const saved = defaultDeps();
    setDefaultDeps({ ...saved, ledger: new DynamoLedger('ledger') });
    try {
      await check(cancellations, 'GET', queries, RUNS / 2);
    } finally {
      setDefaultDeps(saved);
    }
  });

  it('every route through the local API, with percent-escapes in its path: a 4xx from the API or the function', async () => {
    const functions = { batches, cancellations, expirations } as Record<string, Handler>;
    Object.assign(functions, {
      'cancel-billing-request': cancelBillingRequest,
      'cancel-verification-order': cancelVerificationOrder,
      'cancel-signing-processes': cancelSigningProcesses,
      'cancel-document-request': cancelDocumentRequest,
      'get-credit-application': getCreditApplication,
    });
    const api = new LocalApi({ functions: functions as never, openapi: () => ({}) });
    await api.listen(0);
    // Each parameter holds an percentEscape that is broken, or decodes to a character no id may hold ("/", "%", " ",
    // a control, a non-ASCII letter): never a valid id, so nothing may be called.
    const segment = fc
      .tuple(fc.stringMatching(/^[A-Za-z0-9_-]{0,12}$/), percentEscape, fc.stringMatching(/^[A-Za-z0-9_-]{0,12}$/))
      .map(([a, e, b]) => `${a}${e}_${b}`); // "_" so no escape is completed by what follows it
    const routed = fc
      .tuple(
        fc.constantFrom(...ROUTES.filter((r) => r.path.includes('{'))),
        fc.array(segment, { minLength: 3, maxLength: 3 }),
      )
      .map(([route, values]) => ({
        method: route.method,
        path: route.path.replace(/\{\w+\}/g, () => values.shift() ?? '%zz'),
      }));
    const stray = fc
      .tuple(
        fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH'),
        fc.array(fc.oneof(segment, text.map(encodeURIComponent)), { maxLength: 5 }),
      )
      .map(([method, parts]) => ({ method, path: `/v1/${parts.join('/')}` }));
    const before = calls;
    try {
      await fc.assert(
        fc.asyncProperty(fc.oneof(routed, stray), async ({ method, path }) => {
          const res = await fetch(`${api.url}${path}`, { method });
          const body = (await res.json()) as { message?: unknown };
          expect(res.status, `${method} ${path}`).toBeGreaterThanOrEqual(400);
          expect(res.status, `${method} ${path}: ${JSON.stringify(body)}`).toBeLessThan(500);
          expect(typeof body.message).toBe('string');
        }),
        { numRuns: RUNS },
      );
    } finally {
      await api.close();
    }
    expect(calls - before).toBe(0);
  });

  it('GET /v1/batches/{batchId}', async () => {
    const path = fc.record({ batchId: text.filter((t) => !/^[A-Za-z0-9_-]{1,80}$/.test(t)) });
    await check(batches, 'GET', request(fc.constant(undefined), path));
  });
});
