/**
 * The adapters' classifiers, exhaustively, on answers real providers give (GoCardless's own fixtures) and on the
 * plausible variants PROVIDERS.md marks unknown: other wordings, statuses and body shapes than our simulators use.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { RawResponse } from '#shared/http/types.ts';
import * as auco from '#shared/providers/auco/adapter.ts';
import * as gocardless from '#shared/providers/gocardless/adapter.ts';
import * as mycreditapp from '#shared/providers/mycreditapp/adapter.ts';
import * as truework from '#shared/providers/truework/adapter.ts';

const res = (status: number, body: unknown, headers: Record<string, string> = {}): RawResponse => ({
  status,
  headers: { 'content-type': 'application/json', ...headers },
  body: typeof body === 'string' ? body : JSON.stringify(body),
});
const fixture = (path: string) => readFileSync(new URL(`../fixtures/gocardless/${path}`, import.meta.url), 'utf8');
const outcome = (c: { kind: string; outcome?: string }) => (c.kind === 'decided' ? c.outcome : c.kind);

describe('GoCardless classification, on GoCardless fixtures', () => {
  it.each([
    ['gocardless-nodejs/invalid_state.json', 422, 'check-state'],
    ['gocardless-nodejs/unauthorized.json', 401, 'unauthorized'],
    ['gocardless-nodejs/insufficent_permissions.json', 403, 'rejected'],
    ['gocardless-nodejs/validation_failed.json', 422, 'rejected'],
    ['gocardless-nodejs/invalid_api_usage.json', 400, 'rejected'],
    ['gocardless-nodejs/idempotency_conflict.json', 409, 'check-state'],
    ['gocardless-nodejs/string_error.json', 400, 'rejected'],
    ['gocardless-pro-python/idempotent_creation_conflict_error.json', 409, 'check-state'],
  ])('%s (HTTP %i) is %s', (path, status, expected) => {
    expect(outcome(gocardless.classifyCancel(res(status, fixture(path))))).toBe(expected);
  });

  it('reads the idempotency-conflict reason and the request id from the envelope', () => {
    const parsed = gocardless.parseGoCardlessError(fixture('gocardless-nodejs/idempotency_conflict.json'));
    expect(parsed?.reasons).toContain('idempotent_creation_conflict');
    expect(parsed?.type).toBe('invalid_state');
  });

  it('the bare-string error form is understood', () => {
    expect(gocardless.parseGoCardlessError(fixture('gocardless-nodejs/string_error.json'))?.message).toBeTruthy();
  });

  it.each([
    ['cancelled', 'already_canceled'],
    ['fulfilled', 'not_cancelable'],
    ['fulfilling', 'not_cancelable'],
    ['pending', 'rejected'],
    [undefined, 'failed'],
  ])('a billing request read back as %s after a refusal is %s', (status, expected) => {
    expect(outcome(gocardless.classifyState(status, 'refused'))).toBe(expected);
  });

  it.each([
    ['cancelled', 'already_canceled'],
    ['fulfilled', 'not_cancelable'],
    ['pending', 'failed'],
    [undefined, 'failed'],
  ])(
    'a billing request read back as %s after an unconfirmed 2xx is %s (never final without a state)',
    (status, expected) => {
      expect(outcome(gocardless.classifyState(status, 'answered 200', true))).toBe(expected);
    },
  );

  it.each([
    [200, { billing_requests: { id: 'BRQ1' } }, 'check-state'],
    [200, { unexpected: true }, 'check-state'],
    [404, { error: { type: 'invalid_api_usage', errors: [{ reason: 'resource_not_found' }] } }, 'not_found'],
    [404, { error: { type: 'invalid_api_usage', errors: [{ reason: 'not_found' }] } }, 'not_found'],
    [404, { error: { type: 'invalid_api_usage', errors: [{ reason: 'path_not_found' }] } }, 'rejected'],
    [404, '<html><body>Not Found</body></html>', 'rejected'],
    [404, '', 'rejected'],
  ])('HTTP %i %j is %s', (status, body, expected) => {
    expect(outcome(gocardless.classifyCancel(res(status, body)))).toBe(expected);
  });

  it('a 404 that is not GoCardless saying the resource does not exist names the configuration', () => {
    const c = gocardless.classifyCancel(res(404, '<html>Not Found</html>', { 'content-type': 'text/html' }));
    expect(c).toMatchObject({ kind: 'decided', outcome: 'rejected' });
    expect(c.kind === 'decided' && c.message).toMatch(/route was not found.*gocardless\.baseUrl/);
    expect(outcome(gocardless.classifyReadBack(res(404, ''), 'refused'))).toBe('rejected');
    expect(gocardless.unreadableBillingRequest(res(200, { billing_requests: {} }))).toBeTruthy();
    expect(gocardless.unreadableBillingRequest(res(200, { billing_requests: { status: 'pending' } }))).toBeUndefined();
  });

  it("the python fixture's cancel example (generated status 'pending') is not taken for a cancellation", () => {
    const example = JSON.parse(fixture('gocardless-pro-python/billing_requests.json')).cancel.body;
    expect(outcome(gocardless.classifyCancel(res(200, example)))).toBe('check-state');
    example.billing_requests.status = 'cancelled';
    expect(outcome(gocardless.classifyCancel(res(200, example)))).toBe('canceled');
  });
});

describe('mycreditapp cancel classification: refusal wordings the docs leave open', () => {
  const detail = (msg: string, code = 'error', loc: string[] = []) => ({ detail: [{ loc, msg, type: 'error', code }] });
  const cases: [number, unknown, string, string?][] = [
    [409, detail('Document request already canceled', 'already_canceled'), 'already_canceled'],
    [400, detail('Request is already cancelled'), 'already_canceled'],
    [422, detail('Document request status is canceled', 'document_request_canceled'), 'already_canceled'],
    [409, { detail: 'Document request has been canceled already' }, 'already_canceled'],
    [400, { status: 'canceled', id: 'x' }, 'already_canceled'],
    [
      400,
      detail('Cannot cancel a document request with status completed', 'invalid_status'),
      'not_cancelable',
      'completed',
    ],
    [409, detail('Document request has expired', 'document_request_expired'), 'not_cancelable', 'expired'],
    [422, detail('Only pending requests can be canceled; this one is completed'), 'not_cancelable', 'completed'],
    [409, detail('Document request cannot be cancelled', 'cannot_cancel'), 'not_cancelable'],
    [409, 'Conflict', 'not_cancelable'],
    [422, detail('Input should be a valid UUID', 'uuid_parsing', ['path', 'request_id']), 'rejected'],
    [400, { message: 'Bad request' }, 'rejected'],
    [403, detail('Organizations are not connected'), 'rejected'],
    [404, detail('Not found', 'document_request_not_found'), 'not_found'],
    [404, '<html>Not Found</html>', 'rejected'],
    [404, '', 'rejected'],
    [404, { detail: 'Not Found' }, 'rejected'],
    [404, detail('No route for POST /x', 'route_not_found'), 'rejected'],
    [401, detail('Token expired', 'oauth_token_expired'), 'unauthorized'],
  ];
  it.each(cases)('HTTP %i %j is %s', (status, body, expected, state) => {
    const c = mycreditapp.classifyCancel(res(status, body), Date.now());
    expect(outcome(c)).toBe(expected);
    if (state) expect(c.kind === 'decided' && c.providerStatus).toBe(state);
  });

  it('a 200 canceled object: fresh is canceled (to be checked against the ledger), old is already_canceled', () => {
    const now = Date.now();
    const fresh = mycreditapp.classifyCancel(
      res(200, { status: 'canceled', updated_at: new Date(now).toISOString().replace('Z', '') }),
      now - 50,
    );
    expect(outcome(fresh)).toBe('canceled');
    expect(fresh.uncertainRepeat).toBe(true);
    const old = mycreditapp.classifyCancel(
      res(200, { status: 'canceled', updated_at: '2025-01-02T12:00:00.123456' }),
      now,
    );
    expect(outcome(old)).toBe('already_canceled');
    expect(outcome(mycreditapp.classifyCancel(res(200, { status: 'completed' }), now))).toBe('not_cancelable');
    expect(outcome(mycreditapp.classifyCancel(res(200, { status: 'cancelled' }), now))).toBe('canceled');
    expect(outcome(mycreditapp.classifyCancel(res(200, {}), now))).toBe('failed');
    expect(outcome(mycreditapp.classifyCancel(res(200, { unexpected: true }), now))).toBe('failed');
    expect(outcome(mycreditapp.classifyCancel(res(200, { error: { code: 'x' } }), now))).toBe('failed');
    expect(mycreditapp.unprovenCancel(res(200, { unexpected: true }))).toBeTruthy();
    expect(mycreditapp.unprovenCancel(res(200, { status: 'canceled' }))).toBeUndefined();
    expect(outcome(mycreditapp.classifyCancel(res(200, { status: 'pending' }), now))).toBe('failed');
  });

  it('maintenance is transient at any status, by code or by type', () => {
    expect(
      mycreditapp.isMaintenance(
        res(503, { detail: [{ loc: [], msg: 'm', type: 'maintenance', code: 'service_under_maintenance' }] }),
      ),
    ).toBeTruthy();
    expect(mycreditapp.isMaintenance(res(400, { detail: [{ msg: 'm', type: 'maintenance' }] }))).toBeTruthy();
    expect(mycreditapp.isMaintenance(res(400, { detail: [{ msg: 'bad', type: 'value_error' }] }))).toBeUndefined();
  });

  it('the API root: a path is kept, a bare origin gets the version, nothing is production', () => {
    const s = { clientId: 'a', clientSecret: 'b' };
    expect(mycreditapp.apiRoot({ ...s, baseUrl: 'http://127.0.0.1:4001/v1-beta/' })).toBe(
      'http://127.0.0.1:4001/v1-beta',
    );
    expect(mycreditapp.apiRoot({ ...s, baseUrl: 'http://127.0.0.1:4001' })).toBe('http://127.0.0.1:4001/v1-beta');
    expect(mycreditapp.apiRoot({ ...s, baseUrl: 'http://127.0.0.1:4001', apiVersion: 'v1' })).toBe(
      'http://127.0.0.1:4001/v1',
    );
    expect(mycreditapp.apiRoot(s)).toBe('https://api.mycreditapp.ai/v1-beta');
  });

  it('a credit application: lenient timestamps, unknown statuses kept, terminal and expired derived', () => {
    const now = Date.parse('2026-11-22T10:00:00Z');
    const found = mycreditapp.classifyLookup(
      res(200, { id: 'a', status: 'finalized', expires_at: '2026-11-22T09:59:59.999999', extra: 1 }),
      now,
    );
    expect(found).toMatchObject({
      kind: 'found',
      application: {
        status: 'finalized',
        terminal: true,
        expired: true,
        expires_at: '2026-11-22T09:59:59.999Z',
        extra: 1,
      },
    });
    const zoned = mycreditapp.classifyLookup(
      res(200, { id: 'a', status: 'brand_new_status', expires_at: '2026-11-22T12:00:00+01:00' }),
      now,
    );
    expect(zoned).toMatchObject({
      kind: 'found',
      application: { terminal: false, expired: false, expires_at: '2026-11-22T11:00:00.000Z' },
    });
    expect(mycreditapp.classifyLookup(res(200, { id: 'a', status: 'pending', expires_at: null }), now)).toMatchObject({
      application: { expired: false },
    });
  });
});

describe('Truework classification', () => {
  const order = (...states: string[]) => ({
    id: 'o',
    verification_requests: states.map((s, i) => ({ id: `vr${i}`, state: { canonical_value: s, raw_value: s } })),
  });
  it.each([
    [200, order('canceled', 'completed'), 'canceled'],
    [200, order('completed'), 'not_cancelable'],
    [200, order('invalid', 'completed'), 'not_cancelable'],
    [200, order('processing'), 'failed'],
    [200, { id: 'o', verification_requests: null }, 'failed'],
    [200, { id: 'o' }, 'failed'],
    [404, { error: { message: 'Not found' } }, 'not_found'],
    [404, '<html>Not Found</html>', 'rejected'],
    [404, '', 'rejected'],
    [400, { error: { message: 'Bad Request or Order not found' } }, 'not_found'],
    [
      400,
      { error: { message: 'Invalid field values provided', invalid_fields: { cancellation_reason: ['bad'] } } },
      'rejected',
    ],
    [400, { error: { message: 'Order cannot be canceled' } }, 'check-state'],
    [403, { error: { message: 'Verification request cannot be canceled' } }, 'check-state'],
    [406, { error: { message: 'version' } }, 'rejected'],
    [451, { error: { message: 'Frozen SSN' } }, 'rejected'],
    [401, { error: { message: 'bad key' } }, 'unauthorized'],
  ])('HTTP %i %j is %s', (status, body, expected) => {
    expect(outcome(truework.classifyCancel(res(status, body)))).toBe(expected);
  });

  it.each([
    [order('canceled', 'canceled'), 'already_canceled'],
    [order('canceled', 'completed'), 'already_canceled'],
    [order('completed', 'invalid'), 'not_cancelable'],
    [order('pending-approval'), 'rejected'],
  ])('an order read back after a refusal %j is %s', (body, expected) => {
    expect(outcome(truework.classifyReadBack(res(200, body), 'HTTP 403'))).toBe(expected);
  });

  it('parses the documented signature header form', () => {
    expect(
      truework.parseSignatureHeader('keyId="tw-2021-11-11", headers="date content-length", signature="abc=="'),
    ).toEqual({
      keyId: 'tw-2021-11-11',
      headers: ['date', 'content-length'],
      signature: 'abc==',
    });
    expect(truework.parseSignatureHeader('garbage')).toBeUndefined();
  });
});

describe('Auco classification', () => {
  it.each([
    [200, { success: 2, errors: { cant: 0 } }, ['A', 'B'], { canceled: ['A', 'B'], check: [] }],
    [200, { success: 1, errors: { cant: 1, documents: ['B'] } }, ['A', 'B'], { canceled: ['A'], check: ['B'] }],
    [200, { success: 0, errors: { cant: 2, documents: ['A', 'B'] } }, ['A', 'B'], { canceled: [], check: ['A', 'B'] }],
    [400, { success: 0, errors: { cant: 2, documents: ['A', 'B'] } }, ['A', 'B'], { canceled: [], check: ['A', 'B'] }],
    // Counts without the list: nothing is known cancelled, everything is read back.
    [200, { success: 1, errors: { cant: 1 } }, ['A', 'B'], { canceled: [], check: ['A', 'B'] }],
  ])('HTTP %i %j', (status, body, codes, expected) => {
    expect(auco.classifyCancel(res(status, body), codes)).toMatchObject({ kind: 'counted', ...expected });
  });

  it('a 400 without counts is a refusal of the whole call; a 401 is the key', () => {
    expect(auco.classifyCancel(res(400, { message: 'bad' }), ['A'])).toMatchObject({ kind: 'refused', check: ['A'] });
    expect(auco.classifyCancel(res(400, 'plain text'), ['A'])).toMatchObject({ kind: 'refused' });
    expect(auco.classifyCancel(res(401, {}), ['A']).kind).toBe('unauthorized');
  });

  it('a 404 to the cancel itself is a wrong route (it exists at Auco): no code is read back', () => {
    expect(auco.classifyCancel(res(404, '<html>Not Found</html>'), ['A'])).toMatchObject({ kind: 'misrouted' });
    expect(auco.malformedStatus(res(200, { unexpected: true }))).toBeTruthy();
    expect(auco.malformedStatus(res(200, ''))).toBeUndefined();
  });

  it.each([
    [200, { status: 'REJECTED' }, 'already_canceled'],
    [200, { status: 'rejected' }, 'already_canceled'],
    [200, { status: 'FINISH' }, 'not_cancelable'],
    [200, { status: 'EXPIRED' }, 'not_cancelable'],
    [200, { status: 'CREATED' }, 'rejected'],
    [200, {}, 'failed'],
    [200, { unexpected: true }, 'failed'],
    [200, '', 'not_found'],
    [404, { message: 'not found' }, 'not_found'],
    [404, '<html>Not Found</html>', 'rejected'],
    [404, '', 'rejected'],
    [400, { message: 'bad code' }, 'not_found'],
  ])('a status read HTTP %i %j is %s', (status, body, expected) => {
    const state = auco.classifyStatus(res(status, body), undefined);
    expect('outcome' in state && state.outcome).toBe(expected);
  });
});
