import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RateLimitedError, TransientError } from '#shared/core/errors.ts';
import { HttpClient } from '#shared/http/client.ts';
import { backoffDelay, DEFAULT_RETRY, parseRequestedWait } from '#shared/http/retry.ts';
import { hang, type Loopback, reply, reset, startLoopback, truncated } from '#test/support/loopback.ts';

let server: Loopback;
beforeAll(async () => {
  server = await startLoopback();
});
afterAll(() => server.close());
beforeEach(() => {
  server.requests.length = 0;
});

const fast = { retry: { baseDelayMs: 1, maxDelayMs: 5 } };

describe('HttpClient retry rules', () => {
  it('retries 503, 503 then returns the 200: three attempts', async () => {
    // Prepare
    server.script(reply(503), reply(503), reply(200, { ok: true }));
    // Act
    const res = await new HttpClient(fast).send({ method: 'POST', url: `${server.url}/cancel`, body: '{}' });
    // Assess
    expect(res.status).toBe(200);
    expect(res.attempts).toBe(3);
    expect(res.ambiguous).toBe(true);
    expect(server.requests).toHaveLength(3);
  });

  it('never retries a 400: one attempt, the answer returned', async () => {
    server.script(reply(400, { error: 'bad' }), reply(200));
    const res = await new HttpClient(fast).send({ method: 'POST', url: `${server.url}/cancel` });
    expect(res.status).toBe(400);
    expect(res.attempts).toBe(1);
    expect(server.requests).toHaveLength(1);
  });

  it.each([401, 403, 404, 409, 422])('never retries a %i', async (status) => {
    server.script(reply(status), reply(200));
    const res = await new HttpClient(fast).send({ method: 'GET', url: `${server.url}/x` });
    expect(res.status).toBe(status);
    expect(server.requests).toHaveLength(1);
  });

  it('returns a rate-limited error carrying a long Retry-After without sleeping', async () => {
    server.script(reply(429, { error: 'slow down' }, { 'retry-after': '120' }));
    const started = Date.now();
    const error = await new HttpClient(fast).send({ method: 'POST', url: `${server.url}/cancel` }).catch((e) => e);
    expect(error).toBeInstanceOf(RateLimitedError);
    expect(error.name).toBe('Provider.RateLimited');
    expect(error.retryAfterMs).toBe(120_000);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(server.requests).toHaveLength(1);
  });

  it('treats a 429 with an HTML body as a rate limit', async () => {
    server.script(
      reply(429, '<html><title>Error: Rate limit exceeded - GoCardless</title></html>', {
        'content-type': 'text/html',
      }),
    );
    const error = await new HttpClient({ retry: { maxAttempts: 2, baseDelayMs: 1 } })
      .send({ method: 'POST', url: `${server.url}/cancel` })
      .catch((e) => e);
    expect(error).toBeInstanceOf(RateLimitedError);
    expect(error.retryAfterMs).toBeUndefined();
    expect(server.requests).toHaveLength(2);
  });

  it('sleeps a short Retry-After, then succeeds', async () => {
    server.script(reply(429, '', { 'retry-after': '1' }), reply(200, { ok: true }));
    const started = Date.now();
    const res = await new HttpClient(fast).send({ method: 'GET', url: `${server.url}/x` });
    expect(res.status).toBe(200);
    expect(res.attempts).toBe(2);
    expect(res.ambiguous).toBe(false);
    expect(server.requests[1]!.at - server.requests[0]!.at).toBeGreaterThanOrEqual(990);
    expect(Date.now() - started).toBeGreaterThanOrEqual(990);
  });

  it("waits until GoCardless's ratelimit-reset (an HTTP-date)", async () => {
    // A date on whole seconds, two seconds after the server's own Date header.
    const now = new Date(Math.floor(Date.now() / 1000) * 1000);
    const reset = new Date(now.getTime() + 2_000);
    server.script(
      reply(
        429,
        { error: { type: 'invalid_api_usage' } },
        { date: now.toUTCString(), 'ratelimit-reset': reset.toUTCString() },
      ),
      reply(200, {}),
    );
    const res = await new HttpClient({ retry: { maxWaitMs: 10_000 } }).send({ method: 'POST', url: `${server.url}/x` });
    expect(res.status).toBe(200);
    const gap = server.requests[1]!.at - server.requests[0]!.at;
    expect(gap).toBeGreaterThanOrEqual(1_990);
  });

  it('ends a hung response at the deadline as a timeout', async () => {
    server.script(hang);
    const started = Date.now();
    const error = await new HttpClient(fast)
      .send({ method: 'GET', url: `${server.url}/slow` }, { deadline: Date.now() + 400 })
      .catch((e) => e);
    expect(error).toBeInstanceOf(TransientError);
    expect(error.timeout).toBe(true);
    expect(error.message).toMatch(/deadline/);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('stops at the AbortSignal of the invocation', async () => {
    server.script(hang);
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('early timeout')), 200);
    const error = await new HttpClient(fast)
      .send({ method: 'GET', url: `${server.url}/slow` }, { signal: controller.signal })
      .catch((e) => e);
    expect(error).toBeInstanceOf(TransientError);
    expect(error.timeout).toBe(true);
    expect(server.requests).toHaveLength(1);
  });

  it('retries a reset connection and a truncated body', async () => {
    server.script(reset, truncated('{"billing_requests":'), reply(200, { ok: 1 }));
    const res = await new HttpClient(fast).send({ method: 'POST', url: `${server.url}/x`, body: '{}' });
    expect(res.status).toBe(200);
    expect(res.attempts).toBe(3);
    expect(res.ambiguous).toBe(true);
  });

  it('retries what the caller names transient (a malformed 200), then gives up with a transient error', async () => {
    server.script(reply(200, '{"truncated'));
    const isTransient = (r: { body: string }) => {
      try {
        JSON.parse(r.body);
        return undefined;
      } catch {
        return 'malformed JSON';
      }
    };
    const error = await new HttpClient({ retry: { maxAttempts: 3, baseDelayMs: 1 } })
      .send({ method: 'GET', url: `${server.url}/x` }, { isTransient })
      .catch((e) => e);
    expect(error).toBeInstanceOf(TransientError);
    expect(error.message).toMatch(/malformed JSON \(after 3 attempt/);
    expect(server.requests).toHaveLength(3);
  });

  it('stops retrying when most calls fail (retry budget)', async () => {
    server.script(reply(503));
    const client = new HttpClient({
      retry: { maxAttempts: 5, baseDelayMs: 1, maxDelayMs: 1 },
      budget: { capacity: 20, retryCost: 5, timeoutCost: 10, successRefund: 1 },
    });
    for (let i = 0; i < 3; i++) await client.send({ method: 'GET', url: `${server.url}/x` }).catch(() => undefined);
    // 20 tokens pay for 4 retries in all: the first call used them, later calls get one attempt each.
    expect(server.requests).toHaveLength(5 + 1 + 1);
    expect(client.retryBudget(server.url)).toBe(0);
  });

  it('reuses one keep-alive connection for sequential calls', async () => {
    server.script(reply(200, {}));
    const client = new HttpClient(fast);
    for (let i = 0; i < 5; i++) await client.send({ method: 'GET', url: `${server.url}/x` });
    const ports = new Set(server.requests.map((r) => r.remotePort));
    expect(server.requests).toHaveLength(5);
    expect(ports.size).toBe(1);
  });

  it('paces requests that share a key', async () => {
    server.script(reply(200, {}));
    const client = new HttpClient(fast);
    await Promise.all(
      Array.from({ length: 6 }, () =>
        client.send({ method: 'GET', url: `${server.url}/x` }, { pace: { key: 'p', perSecond: 20 } }),
      ),
    );
    const span = server.requests.at(-1)!.at - server.requests[0]!.at;
    expect(span).toBeGreaterThanOrEqual(5 * 50 - 10);
  });

  it('spaces requests by when they actually left: one held up after taking its slot pushes the next back', async () => {
    server.script(reply(200, {}));
    const client = new HttpClient(fast);
    await client.send({ method: 'GET', url: `${server.url}/warm` }); // a keep-alive connection to reuse
    server.requests.length = 0;
    const pace = { key: 'late', perSecond: 10 };
    // The first takes its slot at once, then its thread is held up (a busy loop, as a starved container's would be)
    // for 60 ms before the request can leave.
    const first = client.send({ method: 'GET', url: `${server.url}/a` }, { pace });
    const until = Date.now() + 60;
    while (Date.now() < until) {
      // busy
    }
    await first;
    await client.send({ method: 'GET', url: `${server.url}/b` }, { pace });
    // Spaced from the first's departure (100 ms at 10/s), not from its slot (which would leave 40 ms between them).
    // Measured at arrival, in this same process: a few milliseconds of the server's own lateness either way.
    const gap = server.requests[1]!.at - server.requests[0]!.at;
    expect(gap).toBeGreaterThanOrEqual(80);
  });

  it('keeps a sub-millisecond pace over many requests (waits under 1 ms are carried, not slept)', async () => {
    // 2,500/s is 0.4 ms apart: no single wait reaches a timer's 1 ms, but the slots still add up.
    server.script(reply(200, {}));
    const client = new HttpClient(fast);
    const started = Date.now();
    await Promise.all(
      Array.from({ length: 250 }, () =>
        client.send({ method: 'GET', url: `${server.url}/x` }, { pace: { key: 'fast', perSecond: 2_500 } }),
      ),
    );
    expect(server.requests).toHaveLength(250);
    expect(Date.now() - started).toBeGreaterThanOrEqual(249 * 0.4 - 2);
  });
});

describe('wait and backoff arithmetic', () => {
  it('reads Retry-After as seconds or an HTTP-date, and RateLimit-Reset as a date', () => {
    const now = Date.parse('2026-11-22T10:00:00Z');
    expect(parseRequestedWait({ 'retry-after': '3' }, now)).toBe(3_000);
    // HTTP-dates have one-second precision: a second is added so the retry does not land before the reset.
    expect(parseRequestedWait({ 'retry-after': 'Sun, 22 Nov 2026 10:00:30 GMT' }, now)).toBe(31_000);
    expect(parseRequestedWait({ 'ratelimit-reset': 'Sun, 22 Nov 2026 10:01:00 GMT' }, now)).toBe(61_000);
    // A reset the clock has already passed still waits out the precision.
    expect(parseRequestedWait({ 'ratelimit-reset': 'Sun, 22 Nov 2026 09:59:59 GMT' }, now)).toBe(1_000);
    // Relative to the server's Date header, not our clock.
    expect(
      parseRequestedWait(
        { date: 'Sun, 22 Nov 2026 09:59:00 GMT', 'ratelimit-reset': 'Sun, 22 Nov 2026 09:59:10 GMT' },
        now,
      ),
    ).toBe(11_000);
    expect(parseRequestedWait({ 'retry-after': 'soon' }, now)).toBeUndefined();
    expect(parseRequestedWait({}, now)).toBeUndefined();
  });

  it('draws full jitter under a capped exponential step', () => {
    const policy = { ...DEFAULT_RETRY, baseDelayMs: 100, maxDelayMs: 1_000 };
    expect(backoffDelay(1, policy, () => 0.999)).toBe(99);
    expect(backoffDelay(3, policy, () => 0.5)).toBe(200);
    expect(backoffDelay(10, policy, () => 0.999)).toBe(999);
    expect(backoffDelay(4, policy, () => 0)).toBe(0);
  });
});
