/**
 * The shared rate budget (shared/aws/rate-budget.ts) against DynamoDB's wire protocol (dynalite): every caller,
 * in any container, takes a distinct slot spaced by the budget's interval; a caller that would queue past what it
 * may wait takes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalDynamo, startLocalDynamo } from '#local/aws/dynamodb.ts';
import { DynamoDb } from '#shared/aws/dynamodb.ts';
import { DynamoRateBudget } from '#shared/aws/rate-budget.ts';

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
});
