/**
 * Idempotent requests: a retried request with the same key returns the first answer without a second provider
 * call; the same key with a different request is refused; concurrent duplicates wait for the first.
 *
 * Records (as Powertools' idempotency utility keeps them): INPROGRESS while the first request runs, with the
 * deadline of the invocation that holds it (a crashed invocation's record can be taken over after it), then
 * COMPLETED with the answer. Answers that should be retried (a 5xx, a `failed` outcome, an error) are not kept.
 * DynamoDB in AWS and with `npm start` (dynalite); a process-local map where no table is configured.
 */
import { createHash } from 'node:crypto';
import { DynamoError, dynamoDb, unmarshallItem } from './aws/dynamodb.ts';
import { IDEMPOTENCY_TABLE } from './aws/tables.ts';
import { sleep } from './http.ts';
import { log, scrub } from './log.ts';

export type Begin =
  | { kind: 'new' }
  | { kind: 'completed'; data: unknown }
  | { kind: 'in_progress' }
  | { kind: 'mismatch' };

export interface IdempotencyStore {
  /** Claims `key` for a request with this payload hash until `holdUntil` (epoch ms). */
  begin(key: string, hash: string, holdUntil: number): Promise<Begin>;
  complete(key: string, data: unknown): Promise<void>;
  release(key: string): Promise<void>;
}

/** The key reused with a different request: 422 at the API. */
export class IdempotencyMismatchError extends Error {
  override readonly name = 'Idempotency.Mismatch';
}

/** A request with this key is still running and did not finish in time: 409, retry later. */
export class IdempotencyInProgressError extends Error {
  override readonly name = 'Idempotency.InProgress';
}

const TTL_SECONDS = () => Number(process.env.IDEMPOTENCY_TTL_SECONDS ?? 86_400);

export function payloadHash(value: unknown): string {
  return createHash('sha256')
    .update(JSON.stringify(value) ?? '')
    .digest('hex');
}

export class MemoryIdempotencyStore implements IdempotencyStore {
  private readonly records = new Map<
    string,
    { status: 'INPROGRESS' | 'COMPLETED'; hash: string; holdUntil: number; data?: unknown; expires: number }
  >();

  async begin(key: string, hash: string, holdUntil: number): Promise<Begin> {
    const now = Date.now();
    const record = this.records.get(key);
    if (!record || record.expires < now || (record.status === 'INPROGRESS' && record.holdUntil < now)) {
      this.records.set(key, { status: 'INPROGRESS', hash, holdUntil, expires: now + TTL_SECONDS() * 1000 });
      return { kind: 'new' };
    }
    if (record.hash !== hash) return { kind: 'mismatch' };
    return record.status === 'COMPLETED' ? { kind: 'completed', data: record.data } : { kind: 'in_progress' };
  }

  async complete(key: string, data: unknown): Promise<void> {
    const record = this.records.get(key);
    if (record) Object.assign(record, { status: 'COMPLETED', data, expires: Date.now() + TTL_SECONDS() * 1000 });
  }

  async release(key: string): Promise<void> {
    if (this.records.get(key)?.status === 'INPROGRESS') this.records.delete(key);
  }
}

export class DynamoIdempotencyStore implements IdempotencyStore {
  private readonly table: string;
  constructor(table: string) {
    this.table = table;
  }

  async begin(key: string, hash: string, holdUntil: number): Promise<Begin> {
    const now = Date.now();
    try {
      await dynamoDb().call('PutItem', {
        TableName: this.table,
        Item: {
          id: { S: key },
          status: { S: 'INPROGRESS' },
          hash: { S: hash },
          holdUntil: { N: String(holdUntil) },
          [IDEMPOTENCY_TABLE.ttlAttribute]: { N: String(Math.floor(now / 1000) + TTL_SECONDS()) },
        },
        ConditionExpression: 'attribute_not_exists(#id) OR #exp < :nowS OR (#st = :inProgress AND #hold < :nowMs)',
        ExpressionAttributeNames: {
          '#id': 'id',
          '#exp': IDEMPOTENCY_TABLE.ttlAttribute,
          '#st': 'status',
          '#hold': 'holdUntil',
        },
        ExpressionAttributeValues: {
          ':nowS': { N: String(Math.floor(now / 1000)) },
          ':nowMs': { N: String(now) },
          ':inProgress': { S: 'INPROGRESS' },
        },
      });
      return { kind: 'new' };
    } catch (error) {
      if (!(error instanceof DynamoError) || error.type !== 'ConditionalCheckFailedException') throw error;
    }
    const answer = await dynamoDb().call<{ Item?: Parameters<typeof unmarshallItem>[0] }>('GetItem', {
      TableName: this.table,
      Key: { id: { S: key } },
      ConsistentRead: true,
    });
    if (!answer.Item) return this.begin(key, hash, holdUntil);
    const record = unmarshallItem(answer.Item) as { status: string; hash: string; data?: string };
    if (record.hash !== hash) return { kind: 'mismatch' };
    return record.status === 'COMPLETED'
      ? { kind: 'completed', data: record.data === undefined ? undefined : JSON.parse(record.data) }
      : { kind: 'in_progress' };
  }

  async complete(key: string, data: unknown): Promise<void> {
    await dynamoDb().call('UpdateItem', {
      TableName: this.table,
      Key: { id: { S: key } },
      UpdateExpression: 'SET #st = :completed, #data = :data, #exp = :exp',
      ExpressionAttributeNames: { '#st': 'status', '#data': 'data', '#exp': IDEMPOTENCY_TABLE.ttlAttribute },
      ExpressionAttributeValues: {
        ':completed': { S: 'COMPLETED' },
        ':data': { S: JSON.stringify(data ?? null) },
        ':exp': { N: String(Math.floor(Date.now() / 1000) + TTL_SECONDS()) },
      },
    });
  }

  async release(key: string): Promise<void> {
    await dynamoDb()
      .call('DeleteItem', {
        TableName: this.table,
        Key: { id: { S: key } },
        ConditionExpression: '#st = :inProgress',
        ExpressionAttributeNames: { '#st': 'status' },
        ExpressionAttributeValues: { ':inProgress': { S: 'INPROGRESS' } },
      })
      .catch((error) => {
        if (!(error instanceof DynamoError && error.type === 'ConditionalCheckFailedException')) throw error;
      });
  }
}

let store: IdempotencyStore | undefined;
export function idempotencyStore(): IdempotencyStore {
  store ??= process.env.IDEMPOTENCY_TABLE
    ? new DynamoIdempotencyStore(process.env.IDEMPOTENCY_TABLE)
    : new MemoryIdempotencyStore();
  return store;
}
export function setIdempotencyStore(next: IdempotencyStore | undefined): void {
  store = next;
}

/**
 * Runs `work` once per key: a completed key returns its kept answer (`replayed`), a key in progress is waited for
 * until `deadline`, a key reused with a different payload is refused. `keep` says whether an answer is final.
 */
export async function onceFor<T>(
  key: string,
  hash: string,
  deadline: number,
  work: () => Promise<T>,
  keep: (result: T) => boolean,
): Promise<{ result: T; replayed: boolean }> {
  const store = idempotencyStore();
  for (;;) {
    const begin = await store.begin(key, hash, deadline);
    if (begin.kind === 'mismatch') {
      throw new IdempotencyMismatchError(
        'This Idempotency-Key was already used with a different request; use a new key for a new request',
      );
    }
    if (begin.kind === 'completed') return { result: begin.data as T, replayed: true };
    if (begin.kind === 'in_progress') {
      if (Date.now() + 100 >= deadline)
        throw new IdempotencyInProgressError('A request with this Idempotency-Key is still in progress; retry shortly');
      await sleep(100);
      continue;
    }
    let result: T;
    try {
      result = await work();
    } catch (error) {
      await store.release(key).catch((e) => log.error('idempotency record not released', { error: e }));
      throw error;
    }
    if (keep(result)) await store.complete(key, scrub(result));
    else await store.release(key);
    return { result, replayed: false };
  }
}
