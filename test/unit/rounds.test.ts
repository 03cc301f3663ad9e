/** Rounds (shared/batch/rounds.ts): which items go again, how long the batch waits, and when it gives up. Pure. */
import { describe, expect, it } from 'vitest';
import type { PreparedTask } from '#shared/batch/prepare.ts';
import { notAttempted, planGuardRound, planNextRound, ROUNDS, splitRound } from '#shared/batch/rounds.ts';
import type { IterationResult } from '#shared/batch/summarize.ts';
import { reloadConfig } from '#shared/config.ts';
import { base, settle } from '#shared/core/cancel.ts';
import { MemoryLedger } from '#shared/core/ledger.ts';
import type { Outcome } from '#shared/core/outcome.ts';
import { emitGivenUpMetrics } from '#shared/observability/metrics.ts';

const NOW = Date.parse('2026-12-01T00:00:00Z');
const task = (provider: 'gocardless' | 'truework', index: number): PreparedTask => ({
  item:
    provider === 'gocardless'
      ? { provider, billingRequestId: `BRQ${index}` }
      : { provider, orderId: `ORD${index}`, reason: 'other' },
  index,
  idempotencyKey: `key-${index}`,
});
const failed = (t: PreparedTask, message = 'HTTP 503 (after 4 attempt(s))'): Outcome => ({
  provider: t.item.provider,
  operation: t.item.provider === 'gocardless' ? 'cancel-billing-request' : 'cancel-verification-order',
  target:
    t.item.provider === 'gocardless'
      ? { billingRequestId: String(t.item.billingRequestId) }
      : { orderId: String(t.item.orderId) },
  outcome: 'failed',
  failure: 'transient',
  attempts: 4,
  durationMs: 10,
  message,
});
const plan = (over: Partial<Parameters<typeof planNextRound>[0]> = {}) =>
  planNextRound({
    mode: 'manifest',
    deadline: new Date(NOW + 24 * 3_600_000).toISOString(),
    now: NOW,
    round: { number: 1, eventsBefore: 0, ran: 1 },
    retry: [{ task: task('gocardless', 0), last: [{ index: 0, outcome: failed(task('gocardless', 0)) }] }],
    held: [],
    open: {},
    lastFailure: {},
    ...over,
  });

describe('rounds', () => {
  it('waits 30 s, then twice as long each round, at most 5 minutes, for a 24 h deadline', () => {
    const waits = [1, 2, 3, 4, 5, 6].map((number) => {
      const d = plan({ round: { number, eventsBefore: number * 60, ran: 1 } });
      return d.kind === 'wait' ? d.round.waitSeconds : undefined;
    });
    expect(waits).toEqual([30, 60, 120, 240, 300, 300]);
  });

  it('never waits past the deadline, and gives up at it: failed, saying why, with the last failure', () => {
    const near = plan({
      deadline: new Date(NOW + 10_000).toISOString(),
      round: { number: 5, eventsBefore: 300, ran: 1 },
    });
    expect(near.kind === 'wait' && near.round.waitSeconds).toBe(10);
    const deadline = new Date(NOW - 1).toISOString();
    const past = plan({ deadline, round: { number: 7, eventsBefore: 420, ran: 1 } });
    expect(past.kind).toBe('final');
    if (past.kind !== 'final') return;
    expect(past.report).toMatchObject({ count: 7, deadline, ended: 'deadline' });
    expect(past.report.message).toBe(
      `1 item(s) of gocardless still failing when the batch's deadline ${deadline} passed, after 7 round(s)`,
    );
    expect(past.failed).toHaveLength(1);
    expect(past.failed[0]?.outcome).toMatchObject({
      outcome: 'failed',
      failure: 'transient',
      target: { billingRequestId: 'BRQ0' },
    });
    expect(past.failed[0]?.outcome.message).toMatch(
      /^HTTP 503 \(after 4 attempt\(s\)\) \(still failing when the batch's deadline/,
    );
  });

  it('keeps the history under 25,000 events: a far deadline spaces rounds out; no room left gives up', () => {
    const week = plan({ deadline: new Date(NOW + 7 * 86_400_000).toISOString() });
    expect(week.kind === 'wait' && week.round.waitSeconds).toBeGreaterThan(ROUNDS.maxWaitSeconds);
    const full = plan({ round: { number: 300, eventsBefore: ROUNDS.historyEvents - 50, ran: 1 } });
    expect(full.kind === 'final' && full.report.ended).toBe('history');
    // An inline round counts its items' events too, and keeps room for one round that runs all still pending.
    const inline = plan({ mode: 'inline', round: { number: 1, eventsBefore: 0, ran: 150 } });
    expect(inline.kind === 'wait' && inline.round.events).toBe(
      ROUNDS.eventsPerRound + 150 * ROUNDS.eventsPerInlineTask,
    );
  });

  it('counts the history Summarize read when it could, and reserves the next round at what this one cost a task', () => {
    const retry = Array.from({ length: 100 }, (_, i) => {
      const t = task('gocardless', i);
      return { task: t, last: [{ index: i, outcome: failed(t) }] };
    });
    // Read: the events are the history so far and what is left of this round, whatever the estimate says.
    const read = plan({ mode: 'inline', retry, round: { number: 1, eventsBefore: 0, ran: 100, history: 5_000 } });
    expect(read.kind === 'wait' && read.round.events).toBe(5_000 + ROUNDS.eventsAfterRead);
    // Tasks that cost (14,000 - 60) / 100, about 140 events each, this round: 100 more would not fit after 14,010...
    const costly = plan({ mode: 'inline', retry, round: { number: 1, eventsBefore: 0, ran: 100, history: 14_000 } });
    expect(costly).toMatchObject({ kind: 'final', report: { ended: 'history' } });
    // ...where the estimate (12 a task) would have planned another round.
    const guessed = plan({ mode: 'inline', retry, round: { number: 1, eventsBefore: 0, ran: 100 } });
    expect(guessed.kind).toBe('wait');
    // A round that ran only a probe does not make every held task look expensive.
    const probe = plan({ mode: 'inline', retry, round: { number: 20, eventsBefore: 4_000, ran: 1, history: 4_100 } });
    expect(probe.kind).toBe('wait');
  });

  it('sends one item of a provider whose circuit is open (its probe), holds the rest, and says what it waits for', () => {
    const gc = [0, 1, 2].map((i) => task('gocardless', i));
    const tw = task('truework', 3);
    const d = plan({
      retry: [...gc, tw].map((t) => ({ task: t, last: [{ index: t.index ?? 0, outcome: failed(t) }] })),
      open: { gocardless: { since: NOW - 60_000 } },
    });
    expect(d.kind).toBe('wait');
    if (d.kind !== 'wait') return;
    expect(d.groups.gocardless.map((t) => t.index)).toEqual([0]);
    expect(d.groups.truework.map((t) => t.index)).toEqual([3]);
    expect(d.held.map((t) => t.index)).toEqual([1, 2]);
    expect(d.round.pending).toBe(4);
    expect(d.round.waitingFor).toEqual([
      { provider: 'truework', items: 1 },
      { provider: 'gocardless', items: 3, circuit: 'open', since: new Date(NOW - 60_000).toISOString() },
    ]);
    expect(d.round.nextAttemptAt).toBe(new Date(NOW + 30_000).toISOString());
  });

  it('drains at once what it held back for a circuit that has closed since', () => {
    const d = plan({ round: { number: 6, eventsBefore: 360, ran: 1 }, held: [task('gocardless', 1)], open: {} });
    expect(d.kind === 'wait' && d.round.waitSeconds).toBe(1);
    const still = plan({
      round: { number: 6, eventsBefore: 360, ran: 1 },
      held: [task('gocardless', 1)],
      open: { gocardless: {} },
    });
    expect(still.kind === 'wait' && still.round.waitSeconds).toBe(300);
  });

  it('ends when nothing is pending', () => {
    expect(plan({ retry: [] })).toEqual({
      kind: 'final',
      failed: [],
      report: expect.objectContaining({ ended: 'settled' }),
    });
  });

  it('splits a round: final outcomes stay, transient ones go again with their key, an Auco chunk with its failed codes only, crashes end', () => {
    const gc = task('gocardless', 0);
    const auco: PreparedTask = {
      item: { provider: 'auco', codes: ['A1', 'A2', 'A3'], message: 'm', email: 'e@x.io' },
      indexes: [1, 2, 3],
      idempotencyKey: 'auco-key',
    };
    const codeOutcome = (code: string, outcome: Outcome['outcome']): Outcome => ({
      provider: 'auco',
      operation: 'cancel-signing-processes',
      target: { code },
      outcome,
      ...(outcome === 'failed' ? { failure: 'transient' as const } : {}),
      attempts: 1,
      durationMs: 1,
    });
    const cause = (value: unknown) =>
      JSON.stringify({
        errorType: 'x',
        errorMessage: typeof value === 'string' ? value : JSON.stringify(value),
        trace: [],
      });
    const iterations: IterationResult[] = [
      { ...gc, error: { Error: 'Provider.Transient', Cause: cause(failed(gc)) } },
      {
        ...auco,
        error: {
          Error: 'Provider.Transient',
          Cause: cause([codeOutcome('A1', 'canceled'), codeOutcome('A2', 'failed'), codeOutcome('A3', 'failed')]),
        },
      },
      { ...task('truework', 4), error: { Error: 'Provider.CircuitOpen', Cause: cause('truework is unreachable') } },
      { ...task('truework', 5), error: { Error: 'TypeError', Cause: cause('boom') } },
      // A message that parses as JSON but is no outcome carries none.
      { ...task('truework', 7), error: { Error: 'Provider.CircuitOpen', Cause: cause('"quoted"') } },
      { index: 6, outcome: { ...failed(task('gocardless', 6)), outcome: 'not_found', failure: undefined } as Outcome },
    ];
    const { settled, retry, crashes } = splitRound(iterations, 'exec-1');
    expect(settled.map((s) => [s.index, s.outcome.outcome])).toEqual([
      [1, 'canceled'],
      [5, 'failed'],
      [6, 'not_found'],
    ]);
    expect(retry.map((r) => r.task.indexes ?? r.task.index)).toEqual([0, [2, 3], 4, 7]);
    expect(retry[2]?.last[0]?.outcome).toMatchObject({ outcome: 'failed', target: { orderId: 'ORD4' } });
    expect(retry[2]?.last[0]?.outcome.message).toBe('Provider.CircuitOpen: truework is unreachable');
    expect(retry[0]?.task.idempotencyKey).toBe(gc.idempotencyKey);
    expect(retry[1]?.task.item.codes).toEqual(['A2', 'A3']);
    expect(retry[1]?.task.idempotencyKey).toMatch(/^batch-/);
    expect(retry[1]?.task.idempotencyKey).not.toBe('auco-key');
    expect(crashes.map((c) => c.index)).toEqual([5]);
  });

  it("a round after our own lost answer reports canceled, not already_canceled; someone else's cancel stays already_canceled", async () => {
    const target = { orderId: 'ORD9' };
    const outcomeBase = base('truework', 'cancel-verification-order', target);
    const ledger = new MemoryLedger();
    await ledger.record([
      {
        ...outcomeBase,
        outcome: 'failed',
        failure: 'transient',
        attempts: 4,
        durationMs: 9,
        message: 'HTTP 503 (after 4 attempt(s))',
        at: '2026-12-01T00:00:00.000Z',
        source: 'task',
        idempotencyKey: 'ours',
      },
    ]);
    const answer = async () => ({
      outcome: 'already_canceled' as const,
      attempts: 1,
      message: 'Order already canceled',
    });
    const ours = await settle(outcomeBase, answer, { repeat: { ledger, idempotencyKey: 'ours' } });
    expect(ours.outcome).toBe('canceled');
    expect(ours.message).toContain('our earlier attempt of this request took effect at 2026-12-01T00:00:00.000Z');
    const theirs = await settle(outcomeBase, answer, { repeat: { ledger, idempotencyKey: 'another' } });
    expect(theirs.outcome).toBe('already_canceled');
  });

  it('an Auco code a round sends again in a chunk of its own: canceled when this batch execution cancelled it before', async () => {
    const outcomeBase = base('auco', 'cancel-signing-processes', { code: 'A1' });
    const ledger = new MemoryLedger();
    await ledger.record([
      {
        ...outcomeBase,
        outcome: 'canceled',
        attempts: 1,
        durationMs: 9,
        at: '2026-12-01T00:00:00.000Z',
        source: 'task',
        executionId: 'exec-1',
        idempotencyKey: 'chunk-a',
      },
    ]);
    const answer = async () => ({ outcome: 'already_canceled' as const, attempts: 1, message: 'Already REJECTED' });
    const again = await settle(outcomeBase, answer, {
      repeat: { ledger, idempotencyKey: 'chunk-b', executionId: 'exec-1' },
    });
    expect(again.outcome).toBe('canceled');
    const otherBatch = await settle(outcomeBase, answer, {
      repeat: { ledger, idempotencyKey: 'chunk-c', executionId: 'exec-2' },
    });
    expect(otherBatch.outcome).toBe('already_canceled');
  });
});

describe('a guard that cannot read its credit application yet', () => {
  const APP = 'd4c1b0f5-8a7e-4d3c-9fa0-917c6d5e4f43';
  const guardPlan = (over: Partial<Parameters<typeof planGuardRound>[0]> = {}) =>
    planGuardRound({
      mode: 'inline',
      deadline: new Date(NOW + 24 * 3_600_000).toISOString(),
      now: NOW,
      items: 10,
      creditApplicationId: APP,
      failure: 'mycreditapp answered 503 four times',
      ...over,
    });

  it('waits in rounds as items do, growing to 5 minutes, every item waiting for the guard, and says why', () => {
    const first = guardPlan();
    expect(first).toEqual({
      kind: 'wait',
      round: {
        number: 1,
        events: ROUNDS.eventsPerRound,
        pending: 10,
        waitingFor: [{ provider: 'mycreditapp', items: 10, guard: APP }],
        waitSeconds: ROUNDS.firstWaitSeconds,
        nextAttemptAt: new Date(NOW + ROUNDS.firstWaitSeconds * 1000).toISOString(),
        lastFailure: { mycreditapp: 'mycreditapp guard: mycreditapp answered 503 four times' },
      },
    });
    const later = guardPlan({ round: { number: 6, events: 400 } });
    expect(later.kind === 'wait' && [later.round.number, later.round.events, later.round.waitSeconds]).toEqual([
      7,
      400 + ROUNDS.eventsPerRound,
      ROUNDS.maxWaitSeconds,
    ]);
    // Never past the deadline.
    const near = guardPlan({ deadline: new Date(NOW + 12_500).toISOString(), round: { number: 3, events: 180 } });
    expect(near.kind === 'wait' && near.round.waitSeconds).toBe(13);
  });

  it('ends at the deadline, or when the history has no room left: every item failed, not attempted, saying why', () => {
    const deadline = new Date(NOW - 1).toISOString();
    const why = `not attempted: the batch's guard could not read mycreditapp credit application ${APP} before the batch's deadline ${deadline} passed, after 5 round(s)`;
    expect(guardPlan({ deadline, round: { number: 4, events: 240 } })).toEqual({
      kind: 'final',
      why,
      lastFailure: 'mycreditapp guard: mycreditapp answered 503 four times',
      report: {
        count: 5,
        deadline,
        ended: 'deadline',
        message: `10 item(s) ${why}. Last failure: mycreditapp answered 503 four times`,
      },
    });
    const given = notAttempted([task('gocardless', 0), task('truework', 3)], why, 'mycreditapp guard: HTTP 503');
    expect(given).toEqual([
      {
        index: 0,
        outcome: {
          provider: 'gocardless',
          operation: 'cancel-billing-request',
          target: { billingRequestId: 'BRQ0' },
          outcome: 'failed',
          failure: 'transient',
          attempts: 0,
          durationMs: 0,
          message: `mycreditapp guard: HTTP 503 (${why})`,
        },
      },
      {
        index: 3,
        outcome: expect.objectContaining({ provider: 'truework', target: { orderId: 'ORD3' }, outcome: 'failed' }),
      },
    ]);
    // An inline batch keeps room for a round that runs every item.
    const full = guardPlan({ round: { number: 300, events: ROUNDS.historyEvents - 100 } });
    expect(full).toMatchObject({ kind: 'final', report: { ended: 'history' } });
    expect(full.kind === 'final' && full.why).toMatch(/while the execution's history had room for another round/);
    expect(guardPlan({ mode: 'manifest', items: 1000, round: { number: 2, events: 120 } }).kind).toBe('wait');
  });

  it('a guard caught throttled counts every throttle retry it spent, in either mode, and keeps room for as many again', () => {
    for (const mode of ['inline', 'manifest'] as const) {
      const throttled = guardPlan({ mode, throttled: true, round: { number: 2, events: 1_000 } });
      expect(throttled.kind === 'wait' && throttled.round.events).toBe(
        1_000 + ROUNDS.eventsPerRound + ROUNDS.eventsPerThrottledTask,
      );
    }
    // Room for one more untroubled guard round, but not for one more throttled out.
    const events = ROUNDS.historyEvents - 10 * ROUNDS.eventsPerInlineTask - 2 * ROUNDS.eventsPerRound;
    expect(guardPlan({ round: { number: 40, events } }).kind).toBe('wait');
    expect(guardPlan({ throttled: true, round: { number: 40, events } })).toMatchObject({
      kind: 'final',
      report: { ended: 'history' },
    });
  });
});

describe('items given up at the deadline, counted for the alarm', () => {
  it('Summarize writes GivenUp per provider as EMF (the alarm reads it); nothing without a namespace', () => {
    const lines: string[] = [];
    const given = [{ provider: 'truework' }, { provider: 'truework' }, { provider: 'gocardless' }] as const;
    process.env.METRICS_NAMESPACE = 'Cancellations/test';
    reloadConfig();
    try {
      emitGivenUpMetrics(given, (l) => lines.push(l));
    } finally {
      delete process.env.METRICS_NAMESPACE;
      reloadConfig();
    }
    const emf = lines.map((l) => JSON.parse(l) as Record<string, unknown> & { _aws: { CloudWatchMetrics: unknown } });
    expect(emf.map(({ Provider, GivenUp }) => [Provider, GivenUp])).toEqual([
      ['truework', 2],
      ['gocardless', 1],
    ]);
    expect(emf[0]?._aws.CloudWatchMetrics).toEqual([
      { Namespace: 'Cancellations/test', Dimensions: [['Provider']], Metrics: [{ Name: 'GivenUp', Unit: 'Count' }] },
    ]);
    emitGivenUpMetrics(given, (l) => lines.push(l));
    expect(lines).toHaveLength(2);
  });
});
