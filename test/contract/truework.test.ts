/**
 * Truework contract: the cancel-verification-order handler, through both event shapes, against the simulator over
 * real loopback HTTP, for every item of PROVIDERS.md 3.6 and the unknowns it leaves open.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { handler } from '#functions/cancel-verification-order/handler.ts';
import { TRUEWORK_DEMO, TrueworkSimulator } from '#local/simulators/truework.ts';
import { reloadConfig } from '#shared/config.ts';
import { HttpClient } from '#shared/http/client.ts';
import { callApi, callTask } from '#test/support/invoke.ts';
import { useSecrets } from '#test/support/providers.ts';

const sim = new TrueworkSimulator();
beforeAll(async () => {
  await sim.start();
});
afterAll(() => sim.stop());

const secret = (extra: Record<string, unknown> = {}) => ({
  apiKey: TRUEWORK_DEMO.apiKey,
  baseUrl: sim.url,
  publicKeys: { [sim.keyId]: sim.publicKey },
  ...extra,
});
beforeEach(() => {
  sim.reset();
  useSecrets({ truework: secret() });
});

const cancel = (
  orderId: string,
  body: unknown = { reason: 'other', details: 'application declined' },
  headers: Record<string, string> = {},
) =>
  callApi(handler, {
    method: 'POST',
    route: '/v1/truework/orders/{orderId}/cancel',
    path: `/v1/truework/orders/${orderId}/cancel`,
    pathParameters: { orderId },
    body,
    headers,
  });
const puts = () => sim.received('PUT', /\/cancel$/);

describe('Truework: cancel a verification order', () => {
  it('cancels every open verification request with PUT, the reason and the details, verified by signature', async () => {
    const res = await cancel(TRUEWORK_DEMO.open);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      provider: 'truework',
      operation: 'cancel-verification-order',
      target: { orderId: TRUEWORK_DEMO.open },
      outcome: 'canceled',
      providerStatus: '2 canceled',
    });
    const [sent] = puts();
    expect(sent?.headers.authorization).toMatch(/^Bearer tw_sk_/);
    expect(sent?.headers.accept).toBe('application/json; version=2023-10-30');
    expect(JSON.parse(sent?.body ?? '')).toEqual({
      cancellation_reason: 'other',
      cancellation_details: 'application declined',
    });
    expect(sim.orders.get(TRUEWORK_DEMO.open)?.verification_requests[0]?.cancellation_reason).toEqual({
      canonical_value: 'other',
      raw_value: 'other',
    });
  });

  it('a mixed order: the open request is canceled, the completed one kept; the outcome carries each state', async () => {
    const res = await cancel(TRUEWORK_DEMO.mixed);
    expect(res.body.outcome).toBe('canceled');
    const details = res.body.details as { verificationRequests: { state: string }[] };
    expect(details.verificationRequests.map((v) => v.state)).toEqual(['canceled', 'completed']);
  });

  it.each(['200', '400', '403'] as const)(
    'a repeated cancel is already_canceled when a terminal order answers %s',
    async (mode) => {
      sim.options.terminalOrder = mode;
      expect((await cancel(TRUEWORK_DEMO.open)).body.outcome).toBe('canceled');
      const again = await cancel(TRUEWORK_DEMO.open);
      expect(again.status).toBe(200);
      expect(again.body.outcome).toBe('already_canceled');
      expect(sim.effectiveCancels.get(TRUEWORK_DEMO.open)).toBe(1);
    },
  );

  it.each(['200', '400', '403'] as const)(
    'an order cancelled elsewhere is already_canceled when it answers %s',
    async (mode) => {
      sim.options.terminalOrder = mode;
      const res = await cancel(TRUEWORK_DEMO.canceled);
      // A 200 echo of an order cancelled elsewhere cannot be told from a first cancel: the states say canceled.
      expect(res.body.outcome).toBe(mode === '200' ? 'canceled' : 'already_canceled');
    },
  );

  it.each(['200', '400', '403'] as const)(
    'a completed order is not_cancelable (409) when it answers %s',
    async (mode) => {
      sim.options.terminalOrder = mode;
      const res = await cancel(TRUEWORK_DEMO.completed);
      expect(res.status).toBe(409);
      expect(res.body).toMatchObject({ outcome: 'not_cancelable', providerStatus: '1 completed' });
    },
  );

  it.each(['404', '400'] as const)('an unknown order is not_found when the provider answers %s', async (mode) => {
    sim.options.notFound = mode;
    const res = await cancel('ORDER_UNKNOWN');
    expect(res.status).toBe(404);
    expect(res.body.outcome).toBe('not_found');
  });

  it('validates the reason before sending: "no-match" and a missing reason are 400, nothing sent', async () => {
    const res = await cancel(TRUEWORK_DEMO.open, { reason: 'no-match' });
    expect(res.status).toBe(400);
    expect(res.body.issues).toEqual([
      {
        path: 'body.reason',
        message:
          'must be one of immediate, high-turnaround-time, competitor, wrong-info, other ("no-match" is output-only)',
      },
    ]);
    expect((await cancel(TRUEWORK_DEMO.open, {})).body.issues).toEqual([
      { path: 'body.reason', message: 'is required' },
    ]);
    expect(sim.requests).toHaveLength(0);
  });

  it('the simulator itself refuses a bad reason with invalid_fields (as Truework does)', async () => {
    const res = await fetch(`${sim.url}/orders/${TRUEWORK_DEMO.open}/cancel`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TRUEWORK_DEMO.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ cancellation_reason: 'no-match' }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({
      error: {
        message: 'Invalid field values provided',
        invalid_fields: { cancellation_reason: [expect.any(String)] },
      },
    });
  });

  it('a bad key is rejected after one refresh, and the key never appears in the outcome', async () => {
    useSecrets({ truework: secret({ apiKey: 'tw_sk_test_wrong_key_000' }) });
    const res = await cancel(TRUEWORK_DEMO.open);
    expect(res.status).toBe(502);
    expect(res.body.message).toMatch(/rejected the API key/);
    expect(JSON.stringify(res.body)).not.toContain('wrong_key');
    expect(puts()).toHaveLength(2);
  });

  it('an older API version is refused (406) and rejected with how to fix it; an unversioned Accept works', async () => {
    useSecrets({ truework: secret({ apiVersion: '2020-01-01' }) });
    const old = await cancel(TRUEWORK_DEMO.open);
    expect(old.body).toMatchObject({ outcome: 'rejected', httpStatus: 406 });
    expect(old.body.message).toMatch(/truework\.apiVersion/);
    useSecrets({ truework: secret({ apiVersion: '' }) });
    expect((await cancel(TRUEWORK_DEMO.open)).body.outcome).toBe('canceled');
    expect(puts().at(-1)?.headers.accept).toBe('application/json');
  });

  it('a tampered answer fails signature verification: rejected with a clear message', async () => {
    sim.inject({ fault: { kind: 'tamper' }, method: 'PUT' });
    const res = await cancel(TRUEWORK_DEMO.open);
    expect(res.status).toBe(502);
    expect(res.body.outcome).toBe('rejected');
    expect(res.body.message).toMatch(
      /failed signature verification: the X-Truework-Signature does not match the answer/,
    );
  });

  it('an unknown key id, and a missing signature, are rejected when keys are configured; accepted when not', async () => {
    useSecrets({
      truework: secret({ publicKeys: { 'tw-2021-11-11': 'Ad14e4K+/6At51wUH2B3M4ONNlRmLiSpI4NUAl+IcyA=' } }),
    });
    expect((await cancel(TRUEWORK_DEMO.open)).body.message).toMatch(
      /key id "sim-1", which is not among truework.publicKeys/,
    );
    sim.options.sign = false;
    useSecrets({ truework: secret() });
    expect((await cancel(TRUEWORK_DEMO.mixed)).body.message).toMatch(/carries no X-Truework-Signature/);
    useSecrets({ truework: secret({ publicKeys: undefined }) });
    expect((await cancel(TRUEWORK_DEMO.mixed)).body.outcome).toBe('canceled');
  });

  it.each([
    ['text/plain', 'text/plain'],
    ['no content type', null],
  ])('an unsigned answer sent as %s is verified all the same: rejected', async (_label, contentType) => {
    const order = sim.orders.get(TRUEWORK_DEMO.open);
    sim.inject({ fault: { kind: 'status', status: 200, body: order, contentType }, method: 'PUT' });
    const res = await cancel(TRUEWORK_DEMO.open);
    expect(res.status).toBe(502);
    expect(res.body.outcome).toBe('rejected');
    expect(res.body.message).toMatch(/failed signature verification: the answer carries no X-Truework-Signature/);
  });

  it('a 200 without verification_requests is never final: retried, then failed (503)', async () => {
    sim.inject({ fault: { kind: 'status', status: 200, body: { id: TRUEWORK_DEMO.open } }, method: 'PUT' });
    useSecrets({ truework: secret({ publicKeys: undefined }) });
    expect((await cancel(TRUEWORK_DEMO.open)).body).toMatchObject({ outcome: 'canceled', attempts: 2 });
    sim.inject({
      fault: { kind: 'status', status: 200, body: { id: TRUEWORK_DEMO.mixed, verification_requests: null } },
      method: 'PUT',
      times: Number.POSITIVE_INFINITY,
    });
    const res = await cancel(TRUEWORK_DEMO.mixed);
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ outcome: 'failed', failure: 'transient', attempts: 4 });
    expect(res.body.message).toMatch(/without the order's verification_requests/);
  });

  it.each([
    ['an HTML 404 page (a proxy)', { kind: 'status' as const, status: 404, html: true }],
    ['an empty 404', { kind: 'status' as const, status: 404 }],
  ])('%s is rejected naming the configuration, never not_found', async (_label, fault) => {
    sim.inject({ fault, method: 'PUT' });
    const res = await cancel(TRUEWORK_DEMO.open);
    expect(res.status).toBe(502);
    expect(res.body.outcome).toBe('rejected');
    expect(res.body.message).toMatch(/route was not found, not the resource.*truework\.baseUrl/);
  });

  it.each(['200', '403'] as const)(
    'every attempt loses its answer after the cancel took effect; the retry with the same key (fully terminal order answers %s) is canceled',
    async (mode) => {
      sim.options.terminalOrder = mode;
      const key = { 'idempotency-key': `tw-lost-${mode}` };
      sim.inject({ fault: { kind: 'truncate' }, method: 'PUT', times: Number.POSITIVE_INFINITY });
      const lost = await cancel(TRUEWORK_DEMO.open, undefined, key);
      expect(lost.status).toBe(503);
      expect(lost.body).toMatchObject({ outcome: 'failed', details: { mayHaveTakenEffect: true } });
      sim.clearFaults();
      expect((await cancel(TRUEWORK_DEMO.open, undefined, key)).body.outcome).toBe('canceled');
      expect((await cancel(TRUEWORK_DEMO.open, undefined, { 'idempotency-key': 'tw-other' })).body.outcome).toBe(
        'already_canceled',
      );
      expect(sim.effectiveCancels.get(TRUEWORK_DEMO.open)).toBe(1);
    },
  );

  it('stays within 10 requests/second: a burst of cancels gets no 429', async () => {
    for (let i = 0; i < 25; i++) sim.add(`ORDER_BURST_${i}`, ['processing']);
    const results = await Promise.all(Array.from({ length: 25 }, (_, i) => cancel(`ORDER_BURST_${i}`)));
    expect(results.every((r) => r.body.outcome === 'canceled')).toBe(true);
    expect(sim.requests.filter((r) => r.status === 429)).toHaveLength(0);
  });

  it.each([false, true])('backs off on a 429 (Retry-After header: %s) and then cancels', async (retryAfterHeader) => {
    sim.options.retryAfterHeader = retryAfterHeader;
    sim.inject({
      fault: {
        kind: 'status',
        status: 429,
        body: { error: { message: 'Too many requests' } },
        ...(retryAfterHeader ? { headers: { 'retry-after': '1' } } : {}),
      },
    });
    const res = await cancel(TRUEWORK_DEMO.open);
    expect(res.body).toMatchObject({ outcome: 'canceled', attempts: 2 });
  });

  it('a real token-bucket 429 from the simulator is backed off too (pacing off)', async () => {
    // Bypass our own pacing to provoke the simulator's limit: 15 concurrent calls on a fresh client.
    process.env.TRUEWORK_RATE_PER_SECOND = '1000';
    reloadConfig();
    try {
      useSecrets(
        { truework: secret() },
        new HttpClient({ retry: { baseDelayMs: 100, maxDelayMs: 1_000, maxAttempts: 6 } }),
      );
      for (let i = 0; i < 15; i++) sim.add(`ORDER_STORM_${i}`, ['processing']);
      const results = await Promise.all(Array.from({ length: 15 }, (_, i) => cancel(`ORDER_STORM_${i}`)));
      expect(sim.requests.some((r) => r.status === 429)).toBe(true);
      expect(results.map((r) => r.body.outcome)).toEqual(Array(15).fill('canceled'));
    } finally {
      delete process.env.TRUEWORK_RATE_PER_SECOND;
    }
  });

  it.each([451, 501])('a %i is rejected and not retried', async (status) => {
    sim.inject({ fault: { kind: 'status', status, body: { error: { message: 'nope' } } } });
    const res = await cancel(TRUEWORK_DEMO.open);
    expect(res.body).toMatchObject({ outcome: 'rejected', httpStatus: status, attempts: 1 });
  });

  it('a 500 is retried; a persistent one is failed (503)', async () => {
    sim.inject({ fault: { kind: 'status', status: 500 } });
    expect((await cancel(TRUEWORK_DEMO.open)).body).toMatchObject({ outcome: 'canceled', attempts: 2 });
    sim.inject({ fault: { kind: 'status', status: 500 }, times: Number.POSITIVE_INFINITY });
    expect((await cancel(TRUEWORK_DEMO.mixed)).status).toBe(503);
  });

  it('a reset after the cancel took effect is retried and reported canceled, once', async () => {
    sim.inject({ fault: { kind: 'truncate' }, method: 'PUT' });
    const res = await cancel(TRUEWORK_DEMO.open);
    expect(res.body).toMatchObject({ outcome: 'canceled', attempts: 2 });
    expect(sim.effectiveCancels.get(TRUEWORK_DEMO.open)).toBe(1);
  });

  it('as a task: the reason defaults to "other" with the batch reason as details', async () => {
    const { result } = await callTask(handler, {
      item: { provider: 'truework', orderId: TRUEWORK_DEMO.open },
      reason: 'Credit application declined',
    });
    expect(result).toMatchObject({ outcome: 'canceled' });
    expect(JSON.parse(puts()[0]?.body ?? '')).toEqual({
      cancellation_reason: 'other',
      cancellation_details: 'Credit application declined',
    });
  });
});
