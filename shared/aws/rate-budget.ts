/**
 * A provider's request budget shared by every container of every function that calls it (infra/budget.ts gives one
 * to a provider whose budget several functions share). One DynamoDB item per provider holds the next free request
 * slot; a caller takes a slot atomically and waits for it, so all callers together send at most `perSecond`,
 * whichever function has work: budget one function leaves idle is the other's to use, never stranded in a static
 * share. Each request costs one conditional write (two when callers queue), on a key written at most `perSecond`
 * times a second, far below a partition's 1,000 writes/s.
 */
import type { SharedPace } from '#shared/http/types.ts';
import { type DynamoDb, DynamoError, dynamoDb } from './dynamodb.ts';
import { RATE_BUDGET_TABLE } from './tables.ts';

export class DynamoRateBudget implements SharedPace {
  private readonly table: string;
  private readonly db: DynamoDb;

  constructor(table: string, db: DynamoDb = dynamoDb()) {
    this.table = table;
    this.db = db;
  }

  /**
   * Takes the next slot for `key` at `perSecond` and returns how long after `now` it begins; undefined, taking nothing, when
   * the queue of slots already reaches `horizonMs` ahead (the caller is told to come back later, and no slot it will
   * not use is left idle).
   */
  async reserve(key: string, perSecond: number, horizonMs: number, now = Date.now()): Promise<number | undefined> {
    // Milliseconds with their fraction: a whole-millisecond slot would round 9.5/s at 10x speed down to 90.9/s.
    const interval = 1000 / perSecond;
    const base = {
      TableName: this.table,
      Key: { [RATE_BUDGET_TABLE.partitionKey]: { S: key } },
      ExpressionAttributeNames: { '#n': 'next' },
    };
    const conditionFailed = (error: unknown) => {
      if (error instanceof DynamoError && error.type === 'ConditionalCheckFailedException') return undefined;
      throw error;
    };
    // The budget is idle (the next slot is now or past): the request goes now.
    const idle = await this.db
      .call('UpdateItem', {
        ...base,
        UpdateExpression: 'SET #n = :next',
        ConditionExpression: 'attribute_not_exists(#n) OR #n <= :now',
        ExpressionAttributeValues: { ':next': { N: String(now + interval) }, ':now': { N: String(now) } },
      })
      .then(() => 0, conditionFailed);
    if (idle === 0) return 0;
    // Others are queued: take the slot after theirs, unless the queue is longer than this caller may wait.
    const queued = await this.db
      .call<{ Attributes?: { next?: { N?: string } } }>('UpdateItem', {
        ...base,
        UpdateExpression: 'SET #n = #n + :i',
        ConditionExpression: '#n <= :horizon',
        ExpressionAttributeValues: { ':i': { N: String(interval) }, ':horizon': { N: String(now + horizonMs) } },
        ReturnValues: 'UPDATED_NEW',
      })
      .catch(conditionFailed);
    if (!queued) return undefined;
    return Math.max(0, Number(queued.Attributes?.next?.N) - interval - now);
  }

  /** Pushes every later slot back by `ms`: a request that left that much after its slot. */
  async late(key: string, ms: number): Promise<void> {
    await this.db.call('UpdateItem', {
      TableName: this.table,
      Key: { [RATE_BUDGET_TABLE.partitionKey]: { S: key } },
      UpdateExpression: 'SET #n = #n + :d',
      ConditionExpression: 'attribute_exists(#n)',
      ExpressionAttributeNames: { '#n': 'next' },
      ExpressionAttributeValues: { ':d': { N: String(Math.ceil(ms)) } },
    });
  }
}
