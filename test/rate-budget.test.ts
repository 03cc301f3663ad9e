/**
 * The shared rate budget (shared/aws/rate-budget.ts) against DynamoDB's wire protocol (dynalite): every caller,
 * in any container, takes a distinct slot spaced by the budget's interval; a caller that would queue past what it
 * may wait takes nothing.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer } from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalDynamo, startLocalDynamo } from '#local/aws/dynamodb.ts';
import { DynamoDb } from '#shared/aws/dynamodb.ts';
import { DynamoRateBudget } from '#shared/aws/rate-budget.ts';
import { lateLimitMs, RATE_MARGIN } from '#shared/core/cancel.ts';
import { TransientError } from '#shared/core/errors.ts';
import { HttpClient } from '#shared/http/client.ts';
import type { SharedPace } from '#shared/http/types.ts';
import { RATE as AUCO_RATE } from '#shared/providers/auco/adapter.ts';
import { RATE as MYCREDITAPP_RATE } from '#shared/providers/mycreditapp/adapter.ts';
import { RATE as TRUEWORK_RATE } from '#shared/providers/truework/adapter.ts';
import { type Loopback, reply, startLoopback } from '#test/support/loopback.ts';

let dynamo: LocalDynamo;
let budget: DynamoRateBudget;
beforeAll(async () => {
  dynamo = await startLocalDynamo();
  budget = new DynamoRateBudget(dynamo.tables.rateBudget, new DynamoDb({ endpoint: dynamo.url }));
});
afterAll(() => dynamo.stop());

describe('shared rate budget', () => {
  it('gives concurrent callers distinct slots, one interval apart, starting now', async () => {
    const now = Date.now();
    // 20 callers at once, 10 requests/s: the slots are now, +100 ms, ..., +1900 ms.
    const waits = await Promise.all(Array.from({ length: 20 }, () => budget.reserve('provider-a', 10, 5_000, now)));
    const slots = waits.map((w) => w as number).sort((a, b) => a - b);
    expect(slots[0]).toBe(0);
    for (let i = 1; i < slots.length; i++) {
      // Measured from each reply, so a little earlier than the slot spacing itself; never two in one interval.
      expect((slots[i] as number) - (slots[i - 1] as number), `slot ${i}`).toBeGreaterThan(60);
    }
    expect(slots.at(-1)).toBeGreaterThan(1_600);
    // Budgets are per provider: another key is idle.
    expect(await budget.reserve('provider-b', 10, 5_000)).toBe(0);
  });

  it('a caller that would queue past its horizon takes nothing, and is told so', async () => {
    const now = Date.now();
    for (let i = 0; i < 10; i++) await budget.reserve('provider-c', 5, 10_000, now);
    // The queue reaches about 2 s ahead: a caller that may wait 500 ms gets no slot...
    expect(await budget.reserve('provider-c', 5, 500, now)).toBeUndefined();
    // ...and left none idle: the next caller that may wait queues right behind the ten.
    const wait = (await budget.reserve('provider-c', 5, 10_000, now)) as number;
    expect(wait).toBeGreaterThan(1_500);
    expect(wait).toBeLessThan(2_300);
  });

  it('a request that left late pushes the slots after it back by as much', async () => {
    const now = Date.now();
    expect(await budget.reserve('provider-d', 10, 5_000, now)).toBe(0);
    await budget.late('provider-d', 400);
    // The next slot was now + 100 ms; 400 ms late, it is now + 500 ms.
    const wait = (await budget.reserve('provider-d', 10, 5_000, now)) as number;
    expect(wait).toBe(500);
  });

  it('a busy budget costs one write a slot; idle again, it is still taken at once, even when another caller wins the race', async () => {
    /** A container's DynamoDB client, counting its calls; `before` runs ahead of each. */
    class Counting extends DynamoDb {
      calls = 0;
      before: (call: number) => Promise<void> = async () => {};
      override async call<T>(operation: string, input: Record<string, unknown>, signal?: AbortSignal): Promise<T> {
        this.calls++;
        await this.before(this.calls);
        return super.call<T>(operation, input, signal);
      }
    }
    const db = new Counting({ endpoint: dynamo.url });
    const a = new DynamoRateBudget(dynamo.tables.rateBudget, db);
    const now = Date.now();
    expect(await a.reserve('provider-g', 10, 5_000, now)).toBe(0);
    db.calls = 0;
    const waits: (number | undefined)[] = [];
    for (let i = 0; i < 10; i++) waits.push(await a.reserve('provider-g', 10, 5_000, now));
    expect(waits).toEqual([100, 200, 300, 400, 500, 600, 700, 800, 900, 1_000]);
    // The first behind the queue found it busy after trying it idle (two writes); each after it, one.
    expect(db.calls).toBe(11);

    // Much later the queue has drained: tried behind first, then idle, it goes at once.
    db.calls = 0;
    const later = now + 10_000;
    expect(await a.reserve('provider-g', 10, 5_000, later)).toBe(0);
    expect(db.calls).toBe(2);

    // Drained again, but another container takes the idle slot between this one's two writes: this one queues
    // behind it (a third write) instead of being told the queue is too long.
    const b = new DynamoRateBudget(dynamo.tables.rateBudget, new DynamoDb({ endpoint: dynamo.url }));
    await a.reserve('provider-g', 10, 5_000, later + 10_000); // queued again in `a`'s eyes:
    await a.reserve('provider-g', 10, 5_000, later + 10_000);
    db.calls = 0;
    const race = later + 20_000;
    let other: number | undefined;
    db.before = async (call) => {
      if (call === 2) other = await b.reserve('provider-g', 10, 5_000, race);
    };
    expect(await a.reserve('provider-g', 10, 5_000, race)).toBe(100);
    expect(other).toBe(0);
    expect(db.calls).toBe(3);
  });
});

/** The shared budget, recording each slot it grants in `slots`; `afterReserve` runs once a slot is granted. */
function recordingBudget(slots: number[], afterReserve: () => void = () => {}): SharedPace {
  return {
    async reserve(key, perSecond, horizonMs, at) {
      const wait = await budget.reserve(key, perSecond, horizonMs, at);
      slots.push((at ?? Date.now()) + (wait ?? 0));
      afterReserve();
      return wait;
    },
    late: (key, ms) => budget.late(key, ms),
  };
}

describe('a request through the shared budget', () => {
  let provider: Loopback;
  beforeAll(async () => {
    provider = await startLoopback(reply(200, {}));
  });
  afterAll(() => provider.close());

  it('gives up a slot it would leave too late for, and takes another: no window gets one request too many', async () => {
    // The container's thread is held up for 60 ms right after its first slot is granted (as a starved container's
    // would be). 60 ms after the slot, the request could share a window with as many later slots as it holds.
    const slots: number[] = [];
    const starved = recordingBudget(slots, () => {
      if (slots.length === 1) {
        const until = Date.now() + 60;
        while (Date.now() < until) {
          // busy
        }
      }
    });
    const client = new HttpClient({ retry: { maxAttempts: 1 } });
    await client.send({ method: 'GET', url: `${provider.url}/warm` });
    provider.requests.length = 0;
    await client.send(
      { method: 'GET', url: `${provider.url}/cancel` },
      { pace: { key: 'provider-e', perSecond: 10, shared: starved, lateLimitMs: 20 } },
    );
    expect(slots).toHaveLength(2);
    // It left in its second slot (100 ms after the first), not 60 ms into the first.
    expect((slots[1] as number) - (slots[0] as number)).toBeGreaterThanOrEqual(99);
    expect(provider.requests).toHaveLength(1);
    expect((provider.requests[0]?.at as number) - (slots[1] as number)).toBeGreaterThanOrEqual(0);
  });
});

/**
 * An HTTPS provider on loopback whose TLS handshake takes `handshakeMs`, as a distant provider's does: a cold
 * container's first request opens its connection after its slot is granted. (A certificate for 127.0.0.1 made for
 * these tests only, trusted for their duration.)
 */
async function slowTlsProvider(handshakeMs: number) {
  const cert = readFileSync(new URL('./fixtures/tls/cert.pem', import.meta.url), 'utf8');
  const key = readFileSync(new URL('./fixtures/tls/key.pem', import.meta.url), 'utf8');
  const trusted = tls.getCACertificates('default');
  const arrivals: { path: string; at: number }[] = [];
  const https = createHttpsServer({ cert, key }, (req, res) => {
    arrivals.push({ path: req.url ?? '', at: Date.now() });
    res.end('{}');
  });
  const slow = createNetServer((socket) => setTimeout(() => https.emit('connection', socket), handshakeMs));
  await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
  tls.setDefaultCACertificates([...trusted, cert]);
  return {
    url: `https://127.0.0.1:${(slow.address() as { port: number }).port}`,
    arrivals,
    async close() {
      tls.setDefaultCACertificates(trusted);
      https.closeAllConnections();
      await new Promise((resolve) => slow.close(resolve));
    },
  };
}

describe('a request through the shared budget on a new connection', () => {
  let provider: Awaited<ReturnType<typeof slowTlsProvider>>;
  beforeAll(async () => {
    provider = await slowTlsProvider(80);
  });
  afterAll(() => provider.close());

  it('is checked against its slot once the connection is open: late by the handshake, it takes another slot', async () => {
    const slots: number[] = [];
    const recorded = recordingBudget(slots);
    const client = new HttpClient({ retry: { maxAttempts: 1 } });
    await client.send(
      { method: 'GET', url: `${provider.url}/cancel` },
      { pace: { key: 'provider-f', perSecond: 10, shared: recorded, lateLimitMs: 20 } },
    );
    // The handshake made it 80 ms late for its first slot: it left in the second (100 ms later), on time.
    expect(slots).toHaveLength(2);
    expect(provider.arrivals).toHaveLength(1);
    const arrived = provider.arrivals[0]?.at as number;
    expect(arrived - (slots[0] as number)).toBeGreaterThanOrEqual(99);
    expect(arrived - (slots[1] as number)).toBeGreaterThanOrEqual(0);
    expect(arrived - (slots[1] as number)).toBeLessThanOrEqual(20);
    // The connection stays open: the next request takes one slot and leaves in it.
    await client.send(
      { method: 'GET', url: `${provider.url}/cancel-2` },
      { pace: { key: 'provider-f', perSecond: 10, shared: recorded, lateLimitMs: 20 } },
    );
    expect(slots).toHaveLength(3);
    expect((provider.arrivals[1]?.at as number) - (slots[2] as number)).toBeLessThanOrEqual(20);
  });
});

describe('a request held at its open connection for another slot', () => {
  it('is not sent, and not ambiguous, when its attempt times out before it is written', async () => {
    const provider = await slowTlsProvider(80);
    try {
      // The handshake makes the request late for its slot; the next slot is 300 ms away, past the attempt's 200 ms.
      let reserved = 0;
      const distant: SharedPace = { reserve: async () => (reserved++ === 0 ? 0 : 300), late: async () => {} };
      const client = new HttpClient({ requestTimeoutMs: 200, retry: { maxAttempts: 1 } });
      const error = await client
        .send(
          { method: 'POST', url: `${provider.url}/cancel` },
          { pace: { key: 'provider-g', perSecond: 10, shared: distant, lateLimitMs: 20 } },
        )
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TransientError);
      // Connected but never written: it cannot have taken effect, so a retry's answer is not read as ours.
      expect((error as TransientError).ambiguous).toBe(false);
      expect(reserved).toBe(2);
      expect(provider.arrivals).toEqual([]);
    } finally {
      await provider.close();
    }
  });
});

describe('how late a request may leave after its slot', () => {
  it('is half the window N + 1 slots overrun: never N + 1 arrivals in one window, with as much again for the way', () => {
    for (const limit of [MYCREDITAPP_RATE, AUCO_RATE, TRUEWORK_RATE]) {
      const perSecond = limit.perSecond * RATE_MARGIN;
      const late = lateLimitMs(limit, perSecond);
      const n = limit.perSecond * limit.windowSeconds;
      // The first of N + 1 slots leaving `late` after it, and `late` longer on its way than the last: the N + 1
      // still arrive over the whole window.
      expect((n * 1000) / perSecond - 2 * late).toBeCloseTo(limit.windowSeconds * 1000, 6);
      expect(late).toBeCloseTo(26.32, 2);
      // At the benches' 10x, a tenth.
      expect(lateLimitMs(limit, perSecond * 10)).toBeCloseTo(2.632, 3);
    }
  });
});
