/**
 * Auco contract: the cancel-signing-processes handler, through both event shapes, against the simulator over
 * real loopback HTTP, for every item of PROVIDERS.md 2.4 and the unknowns it leaves open.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { handler } from '#functions/cancel-signing-processes/handler.ts';
import { AUCO_DEMO as A, AucoSimulator } from '#local/simulators/auco.ts';
import { reloadConfig } from '#shared/config.ts';
import { callApi, callTask } from '#test/support/invoke.ts';
import { useSecrets } from '#test/support/providers.ts';

const sim = new AucoSimulator();
beforeAll(async () => {
  await sim.start();
});
afterAll(() => sim.stop());

const secret = (extra: Record<string, unknown> = {}) => ({
  privateKey: A.privateKey,
  publicKey: A.publicKey,
  baseUrl: sim.url,
  ...extra,
});
beforeEach(() => {
  sim.reset();
  useSecrets({ auco: secret() });
});

const cancel = (codes: string[], extra: Record<string, unknown> = {}) =>
  callApi(handler, {
    method: 'POST',
    route: '/v1/auco/documents/cancel',
    path: '/v1/auco/documents/cancel',
    body: { codes, message: 'Your credit application was declined', email: 'ops@example.com', ...extra },
  });
const posts = () => sim.received('POST', '/document/cancel');
const gets = () => sim.received('GET', '/document');
type Outcomes = {
  outcomes: { target: { code: string }; outcome: string; providerStatus?: string; message?: string }[];
};
const byCode = (body: unknown) =>
  Object.fromEntries((body as Outcomes).outcomes.map((o) => [o.target.code, o.outcome]));

describe('Auco: cancel signing processes', () => {
  it('cancels one code with the bare private key and the documented body', async () => {
    const res = await cancel([A.created]);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      outcome: 'canceled',
      outcomes: [
        { provider: 'auco', operation: 'cancel-signing-processes', target: { code: A.created }, outcome: 'canceled' },
      ],
    });
    expect(posts()[0]?.headers.authorization).toMatch(/^prk_/);
    expect(JSON.parse(posts()[0]?.body ?? '')).toEqual({
      codes: [A.created],
      message: 'Your credit application was declined',
      email: 'ops@example.com',
    });
    expect(sim.notices).toEqual([
      { code: A.created, message: 'Your credit application was declined', email: 'ops@example.com' },
    ]);
    expect(gets()).toHaveLength(0);
  });

  it('a mixed call: one outcome per code, failed codes read back with the public key; 207', async () => {
    const res = await cancel([A.created, A.signed, A.rejected, A.expired, 'TR99UNKNOWN']);
    expect(res.status).toBe(207);
    expect(byCode(res.body)).toEqual({
      [A.created]: 'canceled',
      [A.signed]: 'not_cancelable',
      [A.rejected]: 'already_canceled',
      [A.expired]: 'not_cancelable',
      TR99UNKNOWN: 'not_found',
    });
    expect(posts()).toHaveLength(1);
    expect(gets().map((g) => g.query)).toEqual([
      `?code=${A.signed}`,
      `?code=${A.rejected}`,
      `?code=${A.expired}`,
      '?code=TR99UNKNOWN',
    ]);
    expect(gets().every((g) => g.headers.authorization?.startsWith('puk_'))).toBe(true);
  });

  it('a repeat is already_canceled: one effective cancel', async () => {
    await cancel([A.created]);
    const again = await cancel([A.created]);
    expect(again.status).toBe(200);
    expect(again.body.outcome).toBe('already_canceled');
    expect(sim.effectiveCancels.get(A.created)).toBe(1);
  });

  it.each([
    ['200', 'counts'],
    ['400', 'counts'],
    ['400', 'message'],
  ] as const)('an all-failed call answered %s (%s) gives the same outcomes', async (allFailed, allFailedBody) => {
    sim.options.allFailed = allFailed;
    sim.options.allFailedBody = allFailedBody;
    const res = await cancel([A.signed, A.rejected, 'TR99UNKNOWN']);
    expect(byCode(res.body)).toEqual({
      [A.signed]: 'not_cancelable',
      [A.rejected]: 'already_canceled',
      TR99UNKNOWN: 'not_found',
    });
  });

  it.each(['404', '400', '200'] as const)(
    'a status read of an unknown code answering %s is not_found',
    async (unknownStatus) => {
      sim.options.unknownStatus = unknownStatus;
      expect(byCode((await cancel(['TR99UNKNOWN'])).body)).toEqual({ TR99UNKNOWN: 'not_found' });
    },
  );

  it('an unknown code that makes Auco refuse the whole call (400) still gives each code its outcome', async () => {
    sim.options.unknownCode = '400';
    const res = await cancel([A.created, 'TR99UNKNOWN']);
    // Nothing was cancelled: the open document is reported rejected with Auco's reason, the unknown one not_found.
    expect(byCode(res.body)).toEqual({ [A.created]: 'rejected', TR99UNKNOWN: 'not_found' });
    expect((res.body as Outcomes).outcomes[0]?.message).toMatch(
      /still CREATED: Auco refused the cancellation \(HTTP 400: Documents not found: TR99UNKNOWN\)/,
    );
  });

  it('an email Auco does not know is rejected with its reason and a hint', async () => {
    sim.options.enrolledEmails = ['someone@else.example'];
    const res = await cancel([A.created]);
    expect(res.status).toBe(502);
    expect((res.body as Outcomes).outcomes[0]?.message).toMatch(
      /USER_NOTFOUND.*email belongs to a user of the Auco company/,
    );
  });

  it('checks the body before sending: codes, message and email, every problem listed, nothing sent', async () => {
    const res = await callApi(handler, {
      method: 'POST',
      route: '/v1/auco/documents/cancel',
      path: '/v1/auco/documents/cancel',
      body: { codes: [], message: ' ', email: 'nope' },
    });
    expect(res.status).toBe(400);
    expect(res.body.issues).toEqual([
      { path: 'body.codes', message: 'must hold at least one code' },
      { path: 'body.message', message: 'must not be empty (Auco emails it to the signers)' },
      { path: 'body.email', message: 'must be an email address (Auco records who cancelled)' },
    ]);
    expect(sim.requests).toHaveLength(0);
  });

  it('swapped keys are rejected: the private key is refreshed once, then the outcome says which key', async () => {
    useSecrets({ auco: secret({ privateKey: 'prk_not_a_real_key_0000' }) });
    const res = await cancel([A.created]);
    expect(res.status).toBe(502);
    expect((res.body as Outcomes).outcomes[0]?.message).toMatch(/rejected the private key/);
    expect(posts()).toHaveLength(2);
    useSecrets({ auco: secret({ publicKey: 'puk_not_a_real_key_0000' }) });
    expect((await cancel([A.signed])).body.outcomes).toMatchObject([
      { outcome: 'rejected', message: expect.stringMatching(/public key/) },
    ]);
  });

  it('chunks codes to AUCO_MAX_CODES_PER_CALL per provider call', async () => {
    process.env.AUCO_MAX_CODES_PER_CALL = '2';
    reloadConfig();
    try {
      const codes = Array.from({ length: 5 }, (_, i) => `TR00CHUNK${i}`);
      for (const c of codes) sim.add(c, 'CREATED');
      const res = await cancel(codes);
      expect(res.body.outcome).toBe('canceled');
      expect(posts().map((p) => JSON.parse(p.body).codes.length)).toEqual([2, 2, 1]);
    } finally {
      delete process.env.AUCO_MAX_CODES_PER_CALL;
    }
  });

  it('a 5xx and a reset are retried; codes the lost attempt cancelled are reported canceled, once', async () => {
    sim.inject({ fault: { kind: 'truncate' }, method: 'POST' });
    sim.inject({ fault: { kind: 'status', status: 502 }, method: 'POST' });
    const res = await cancel([A.created, A.created2]);
    expect(byCode(res.body)).toEqual({ [A.created]: 'canceled', [A.created2]: 'canceled' });
    expect(sim.effectiveCancels.get(A.created)).toBe(1);
    expect(posts()).toHaveLength(3);
  });

  it('a 429 is retried; a storm of them fails every code of the chunk (503) and, as a task, raises Provider.RateLimited', async () => {
    sim.inject({ fault: { kind: 'status', status: 429 }, method: 'POST' });
    expect((await cancel([A.created])).body.outcome).toBe('canceled');
    sim.inject({ fault: { kind: 'status', status: 429, headers: { 'retry-after': '90' } }, times: 2 });
    const res = await cancel([A.created2, A.signed]);
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('90');
    const task = await callTask(handler, {
      item: { provider: 'auco', codes: [A.created2], message: 'declined', email: 'ops@example.com' },
    });
    expect(task.error?.name).toBe('Provider.RateLimited');
    expect(JSON.parse(task.error?.message ?? '')).toMatchObject([{ target: { code: A.created2 }, outcome: 'failed' }]);
  });

  it('the cancel succeeds for some codes, then every read-back fails: the confirmed codes are canceled, only the unread fail', async () => {
    sim.inject({ fault: { kind: 'status', status: 500 }, method: 'GET', times: Number.POSITIVE_INFINITY });
    const res = await cancel([A.created, A.signed, A.created2, A.rejected]);
    expect(res.status).toBe(207);
    expect(byCode(res.body)).toEqual({
      [A.created]: 'canceled',
      [A.created2]: 'canceled',
      [A.signed]: 'failed',
      [A.rejected]: 'failed',
    });
  });

  it('every attempt loses its answer after the cancel took effect (503); the retry with the same key is canceled', async () => {
    const call = (key: string) =>
      callApi(handler, {
        method: 'POST',
        route: '/v1/auco/documents/cancel',
        path: '/v1/auco/documents/cancel',
        headers: { 'idempotency-key': key },
        body: { codes: [A.created, A.signed], message: 'declined', email: 'ops@example.com' },
      });
    sim.inject({ fault: { kind: 'truncate' }, method: 'POST', times: Number.POSITIVE_INFINITY });
    const lost = await call('auco-lost-1');
    expect(lost.status).toBe(503);
    expect((lost.body as Outcomes).outcomes[0]).toMatchObject({
      outcome: 'failed',
      details: { mayHaveTakenEffect: true },
    });
    expect(sim.effectiveCancels.get(A.created)).toBe(1);
    sim.clearFaults();
    const retried = await call('auco-lost-1');
    expect(byCode(retried.body)).toEqual({ [A.created]: 'canceled', [A.signed]: 'not_cancelable' });
    // Another request (another key) learns it was already cancelled.
    expect(byCode((await call('auco-other-2')).body)).toMatchObject({ [A.created]: 'already_canceled' });
    expect(sim.effectiveCancels.get(A.created)).toBe(1);
  });

  it('a 404 HTML page to the cancel is rejected for every code, naming the configuration; nothing is read back', async () => {
    sim.inject({ fault: { kind: 'status', status: 404, html: true }, method: 'POST' });
    const res = await cancel([A.created, A.signed]);
    expect(res.status).toBe(502);
    expect(byCode(res.body)).toEqual({ [A.created]: 'rejected', [A.signed]: 'rejected' });
    expect((res.body as Outcomes).outcomes[0]?.message).toMatch(/route was not found.*auco\.baseUrl/);
    expect(gets()).toHaveLength(0);
  });

  it('a 404 HTML page to a status read is rejected, never not_found', async () => {
    sim.inject({ fault: { kind: 'status', status: 404, html: true }, method: 'GET' });
    const res = await cancel([A.signed]);
    expect(res.body.outcome).toBe('rejected');
  });

  it('a malformed 200 is retried', async () => {
    sim.inject({ fault: { kind: 'malformed' }, method: 'POST' });
    const res = await cancel([A.created]);
    expect(res.body.outcome).toBe('canceled');
    expect(posts()).toHaveLength(2);
  });
});
