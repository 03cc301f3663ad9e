/**
 * A provider's request budget shared by every container of every function that calls it (infra/budget.ts gives one
 * to a provider whose budget several functions share). One DynamoDB item per provider holds the next free request
 * slot; a caller takes a slot atomically and waits for it, so all callers together send at most `perSecond`,
 * whichever function has work: budget one function leaves idle is the other's to use, never stranded in a static
 * share. Each request costs one conditional write (at times two or three, when the budget turns from idle to queued
 * or back), on a key written at most `perSecond` times a second, far below a partition's 1,000 writes/s.
 */
import type { SharedPace } from '#shared/http/types.ts';
import { type DynamoDb, DynamoError, dynamoDb } from './dynamodb.ts';
import { RATE_BUDGET_TABLE } from './tables.ts';

export class DynamoRateBudget implements SharedPace {
  private readonly table: string;
  private readonly db: DynamoDb;
  /** Keys whose last slot in this container was taken behind a queue: the next is tried that way first. */
  private readonly queued = new Set<string>();

  constructor(table: string, db: DynamoDb = dynamoDb()) {
    this.table = table;
    this.db = db;
  }

  /**
   * Takes the next slot for `key` at `perSecond` and returns how long after `now` it begins; undefined, taking nothing, when
   * the queue of slots already reaches `horizonMs` ahead (the caller is told to come back later, and no slot it will
   * not use is left idle).
   *
   * Two conditional writes, each of which takes a slot only in its case: `idle` (the next slot is now or past: the
   * request goes now) and `behind` (others are queued: the slot after theirs, within the horizon). A busy budget is
   * seldom idle, so a container whose last slot was taken behind a queue tries `behind` first: one write per request
   * under load instead of two (a refused conditional write costs a write too). If both miss, the budget went from
   * idle to queued between them, and `behind` is tried once more; after that, the queue is past the horizon.
   */
  async reserve(key: string, perSecond: number, horizonMs: number, now = Date.now()): Promise<number | undefined> {
    // Milliseconds with their fraction: a whole-millisecond slot would round 9.5/s at 10x speed down to 90.9/s.
    const interval = 1000 / perSecond;
    const update = <T = object>(
      expression: string,
      condition: string,
      values: Record<string, { N: string }>,
      extra = {},
    ) =>
      this.updateNext<T>(key, expression, condition, values, extra).catch((error: unknown) => {
        if (error instanceof DynamoError && error.type === 'ConditionalCheckFailedException') return undefined;
        throw error;
      });
    const idle = async () => {
      const taken = await update('SET #n = :next', 'attribute_not_exists(#n) OR #n <= :now', {
        ':next': { N: String(now + interval) },
        ':now': { N: String(now) },
      });
      return taken === undefined ? undefined : 0;
    };
    const behind = async () => {
      const taken = await update<{ Attributes?: { next?: { N?: string } } }>(
        'SET #n = #n + :i',
        '#n BETWEEN :now AND :horizon',
        { ':i': { N: String(interval) }, ':now': { N: String(now) }, ':horizon': { N: String(now + horizonMs) } },
        { ReturnValues: 'UPDATED_NEW' },
      );
      return taken === undefined ? undefined : Math.max(0, Number(taken.Attributes?.next?.N) - interval - now);
    };
    const wasQueued = this.queued.has(key);
    for (const take of wasQueued ? [behind, idle, behind] : [idle, behind]) {
      const wait = await take();
      if (wait === undefined) continue;
      if (take === behind) this.queued.add(key);
      else this.queued.delete(key);
      return wait;
    }
    return undefined;
  }

  /** Pushes every later slot back by `ms`: a request that left that much after its slot. */
  async late(key: string, ms: number): Promise<void> {
    await this.updateNext(key, 'SET #n = #n + :d', 'attribute_exists(#n)', { ':d': { N: String(Math.ceil(ms)) } });
  }

  /** A conditional update of `key`'s next slot (`#n`). */
  private updateNext<T = object>(
    key: string,
    expression: string,
    condition: string,
    values: Record<string, { N: string }>,
    extra = {},
  ): Promise<T> {
    return this.db.call<T>('UpdateItem', {
      TableName: this.table,
      Key: { [RATE_BUDGET_TABLE.partitionKey]: { S: key } },
      UpdateExpression: expression,
      ConditionExpression: condition,
      ExpressionAttributeNames: { '#n': 'next' },
      ExpressionAttributeValues: values,
      ...extra,
    });
  }
}
