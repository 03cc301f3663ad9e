/**
 * Fault injection, provider by provider: every fault PROVIDERS.md lets a provider produce (or a network between
 * us), on a single call through the handler. A fault that passes is retried and the cancellation lands once; a
 * fault that persists ends `failed` with the right kind; nothing hangs past the Lambda's budget.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { handler as cancelBillingRequest } from '#functions/cancel-billing-request/handler.ts';
import { handler as cancelDocumentRequest } from '#functions/cancel-document-request/handler.ts';
import { handler as cancelSigningProcesses } from '#functions/cancel-signing-processes/handler.ts';
import { handler as cancelVerificationOrder } from '#functions/cancel-verification-order/handler.ts';
import type { Fault, Simulator } from '#local/simulators/base.ts';
import { MYCREDITAPP_DEMO as D } from '#local/simulators/mycreditapp.ts';
import { clearTokens } from '#shared/providers/mycreditapp/session.ts';
import { callApi } from '#test/support/invoke.ts';
import { startTestSystem, type TestSystem } from '#test/support/system.ts';

let system: TestSystem;
beforeAll(async () => {
  system = await startTestSystem();
});
afterAll(() => system.stop());
beforeEach(async () => {
  await system.reset();
  clearTokens();
});

interface Case {
  provider: 'gocardless' | 'truework' | 'auco' | 'mycreditapp';
  sim: () => Simulator;
  /** Adds a fresh cancellable resource and returns a call that cancels it through the handler. */
  fresh: (n: number) => { id: string; call: (timeoutMs?: number) => ReturnType<typeof callApi> };
  /** Faults apply to the cancel request only (tokens and status reads are left alone). */
  path: string;
}

const CASES: Case[] = [
  {
    provider: 'gocardless',
    sim: () => system.gocardless,
    path: '^/billing_requests/.+/actions/cancel$',
    fresh: (n) => {
      const id = `BRQFAULT${n}`;
      system.gocardless.add(id, 'pending');
      return {
        id,
        call: (timeoutMs) =>
          callApi(cancelBillingRequest, {
            method: 'POST',
            route: 'r',
            path: 'p',
            pathParameters: { billingRequestId: id },
            ...(timeoutMs ? { timeoutMs } : {}),
          }),
      };
    },
  },
  {
    provider: 'truework',
    sim: () => system.truework,
    path: '^/orders/.+/cancel$',
    fresh: (n) => {
      const id = `ORDER_FAULT_${n}`;
      system.truework.add(id, ['processing']);
      return {
        id,
        call: (timeoutMs) =>
          callApi(cancelVerificationOrder, {
            method: 'POST',
            route: 'r',
            path: 'p',
            pathParameters: { orderId: id },
            body: { reason: 'other' },
            ...(timeoutMs ? { timeoutMs } : {}),
          }),
      };
    },
  },
  {
    provider: 'auco',
    sim: () => system.auco,
    path: '^/document/cancel$',
    fresh: (n) => {
      const id = `TRFAULT${n}`;
      system.auco.add(id, 'CREATED');
      return {
        id,
        call: (timeoutMs) =>
          callApi(cancelSigningProcesses, {
            method: 'POST',
            route: 'r',
            path: 'p',
            body: { codes: [id], message: 'declined', email: 'ops@example.com' },
            ...(timeoutMs ? { timeoutMs } : {}),
          }),
      };
    },
  },
  {
    provider: 'mycreditapp',
    sim: () => system.mycreditapp,
    path: '^/organizations/',
    fresh: (n) => {
      const id = `fa000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
      system.mycreditapp.addDocumentRequest(id, 'pending');
      return {
        id,
        call: (timeoutMs) =>
          callApi(cancelDocumentRequest, {
            method: 'POST',
            route: 'r',
            path: 'p',
            pathParameters: { orgId: D.hostOrg, requestId: id },
            headers: { 'requester-organization-id': D.hostOrg, 'target-organization-id': D.guestOrg },
            ...(timeoutMs ? { timeoutMs } : {}),
          }),
      };
    },
  },
];

/** Faults that pass after one occurrence: the retry lands the cancellation, exactly once. */
const PASSING: [string, Fault][] = [
  ['429 with Retry-After', { kind: 'status', status: 429, headers: { 'retry-after': '1' } }],
  ['429 without headers', { kind: 'status', status: 429 }],
  ['429 with an HTML body', { kind: 'status', status: 429, html: true }],
  ['500', { kind: 'status', status: 500 }],
  ['502 (HTML)', { kind: 'status', status: 502, html: true }],
  ['503', { kind: 'status', status: 503 }],
  ['a connection reset', { kind: 'reset' }],
  ['a truncated answer (after the cancel took effect)', { kind: 'truncate' }],
  ['malformed JSON (after the cancel took effect)', { kind: 'malformed' }],
  ['a slow answer, within the budget', { kind: 'delay', ms: 300 }],
];

const outcomeOf = (res: Awaited<ReturnType<typeof callApi>>) =>
  (res.body.outcome ?? (res.body.outcomes as { outcome: string }[] | undefined)?.[0]?.outcome) as string;

describe.each(CASES)('$provider under injected faults', ({ sim, fresh, path }) => {
  it.each(PASSING)('%s once: retried, canceled, one effective cancel', async (_label, fault) => {
    const { id, call } = fresh(1);
    sim().inject({ fault, path });
    const res = await call();
    expect(outcomeOf(res)).toBe('canceled');
    expect(sim().effectiveCancels.get(id)).toBe(1);
  });

  it('a 5xx that persists: failed (503), the resource left as it was', async () => {
    const { id, call } = fresh(2);
    sim().inject({ fault: { kind: 'status', status: 500 }, path, times: Number.POSITIVE_INFINITY });
    const res = await call();
    expect(res.status).toBe(503);
    expect(outcomeOf(res)).toBe('failed');
    expect(sim().effectiveCancels.has(id)).toBe(false);
  });

  it('a 429 asking for a long wait: failed fast as rate_limited, with Retry-After', async () => {
    const { call } = fresh(3);
    sim().inject({
      fault: { kind: 'status', status: 429, headers: { 'retry-after': '600' } },
      path,
      times: Number.POSITIVE_INFINITY,
    });
    const started = Date.now();
    const res = await call();
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('600');
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("an answer slower than the Lambda's budget: failed as a timeout (504) before the Lambda would time out", async () => {
    const { call } = fresh(4);
    sim().inject({ fault: { kind: 'hang' }, path, times: Number.POSITIVE_INFINITY });
    const started = Date.now();
    const res = await call(3_000);
    expect(res.status).toBe(504);
    expect(res.body.outcome ?? (res.body.outcomes as { failure: string }[])[0]?.failure).toBeDefined();
    expect(Date.now() - started).toBeLessThan(3_000);
  });
});
