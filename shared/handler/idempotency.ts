/**
 * Idempotent requests: a retried request with the same key returns the first answer without a second provider
 * call; the same key with a different request is refused; concurrent duplicates wait for the first.
 *
 * Records (as Powertools' idempotency utility keeps them): INPROGRESS while the first request runs, with the
 * deadline of the invocation that holds it (a crashed invocation's record can be taken over after it) and a claim
 * token, then COMPLETED with the answer. Only the holder of the claim completes or releases the record: an
 * invocation that outlived its hold cannot overwrite the answer of the one that took it over. Answers that should
 * be retried (a 5xx, a `failed` outcome, an error) are not kept.
 *
 * The fingerprint that tells "the same request" is a hash of a canonical JSON form (object keys sorted), so the
 * same object written in another key order is the same request; callers hash everything that reaches the
 * provider (shared/handler/middleware.ts hashes the validated input, headers that change the request included).
 * DynamoDB in AWS and with `npm start` (dynalite); a process-local map where no table is configured.
 */
import { createHash, randomUUID } from 'node:crypto';
import { DynamoError, dynamoDb, unmarshallItem } from '#shared/aws/dynamodb.ts';
import { IDEMPOTENCY_TABLE } from '#shared/aws/tables.ts';
import { config, table as configuredTable } from '#shared/config.ts';
import { sleep } from '#shared/http/sleep.ts';
import { log, scrub } from '#shared/observability/log.ts';

export type Begin =
  /** The key is ours: `claim` is the token that lets us complete or release it. */
  | { kind: 'new'; claim: string }
  | { kind: 'completed'; data: unknown }
  | { kind: 'in_progress' }
  | { kind: 'mismatch' };

export interface IdempotencyStore {
  /** Claims `key` for a request with this payload hash until `holdUntil` (epoch ms). */
  begin(key: string, hash: string, holdUntil: number): Promise<Begin>;
  /** Keeps the answer, if the record is still in progress under our claim; false when it was taken over. */
  complete(key: string, claim: string, data: unknown): Promise<boolean>;
  /** Deletes the record, if it is still in progress under our claim. */
  release(key: string, claim: string): Promise<void>;
}

/** The key reused with a different request: 422 at the API. */
export class IdempotencyMismatchError extends Error {
  override readonly name = 'Idempotency.Mismatch';
}

/** A request with this key is still running and did not finish in time: 409, retry later. */
export class IdempotencyInProgressError extends Error {
  override readonly name = 'Idempotency.InProgress';
}

const TTL_SECONDS = () => config().idempotencyTtlSeconds;

/**
 * JSON with every object's keys sorted, at any depth: the same data gives the same text whatever the key order.
 * Iterative, so a deeply nested body cannot overflow the stack. Like JSON.stringify, undefined fields are left out
 * (and undefined array elements written as null).
 */
export function canonicalJson(value: unknown): string {
  const out: string[] = [];
  const work: ({ text: string } | { value: unknown })[] = [{ value }];
  for (let next = work.pop(); next !== undefined; next = work.pop()) {
    if ('text' in next) {
      out.push(next.text);
      continue;
    }
    const v = next.value;
    if (v === null || typeof v !== 'object') {
      out.push(JSON.stringify(v) ?? 'null');
    } else if (Array.isArray(v)) {
      out.push('[');
      work.push({ text: ']' });
      for (let i = v.length - 1; i >= 0; i--) {
        work.push({ value: v[i] });
        if (i) work.push({ text: ',' });
      }
    } else {
      const entries = Object.entries(v)
        .filter(([, x]) => x !== undefined && typeof x !== 'function')
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      out.push('{');
      work.push({ text: '}' });
      for (let i = entries.length - 1; i >= 0; i--) {
        const [k, x] = entries[i] as [string, unknown];
        work.push({ value: x });
        work.push({ text: `${i ? ',' : ''}${JSON.stringify(k)}:` });
      }
    }
  }
  return out.join('');
}

/** The fingerprint of a request: SHA-256 of its canonical JSON. */
export function payloadHash(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex');
}

export class MemoryIdempotencyStore implements IdempotencyStore {
  private readonly records = new Map<
    string,
    {
      status: 'INPROGRESS' | 'COMPLETED';
      hash: string;
      holdUntil: number;
      claim: string;
      data?: unknown;
      expires: number;
    }
  >();

  async begin(key: string, hash: string, holdUntil: number): Promise<Begin> {
    const now = Date.now();
    const record = this.records.get(key);
    if (!record || record.expires < now || (record.status === 'INPROGRESS' && record.holdUntil < now)) {
      const claim = randomUUID();
      this.records.set(key, { status: 'INPROGRESS', hash, holdUntil, claim, expires: now + TTL_SECONDS() * 1000 });
      return { kind: 'new', claim };
    }
    if (record.hash !== hash) return { kind: 'mismatch' };
    return record.status === 'COMPLETED' ? { kind: 'completed', data: record.data } : { kind: 'in_progress' };
  }

  async complete(key: string, claim: string, data: unknown): Promise<boolean> {
    const record = this.records.get(key);
    if (record?.status !== 'INPROGRESS' || record.claim !== claim) return false;
    Object.assign(record, { status: 'COMPLETED', data, expires: Date.now() + TTL_SECONDS() * 1000 });
    return true;
  }

  async release(key: string, claim: string): Promise<void> {
    const record = this.records.get(key);
    if (record?.status === 'INPROGRESS' && record.claim === claim) this.records.delete(key);
  }
}

export class DynamoIdempotencyStore implements IdempotencyStore {
  private readonly table: string;
  constructor(table: string) {
    this.table = table;
  }

  async begin(key: string, hash: string, holdUntil: number): Promise<Begin> {
    const now = Date.now();
    const claim = randomUUID();
    try {
      await dynamoDb().call('PutItem', {
        TableName: this.table,
        Item: {
          id: { S: key },
          status: { S: 'INPROGRESS' },
          hash: { S: hash },
          holdUntil: { N: String(holdUntil) },
          claim: { S: claim },
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
      return { kind: 'new', claim };
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

  async complete(key: string, claim: string, data: unknown): Promise<boolean> {
    try {
      await dynamoDb().call('UpdateItem', {
        TableName: this.table,
        Key: { id: { S: key } },
        UpdateExpression: 'SET #st = :completed, #data = :data, #exp = :exp',
        ConditionExpression: '#st = :inProgress AND #claim = :claim',
        ExpressionAttributeNames: {
          '#st': 'status',
          '#data': 'data',
          '#exp': IDEMPOTENCY_TABLE.ttlAttribute,
          '#claim': 'claim',
        },
        ExpressionAttributeValues: {
          ':completed': { S: 'COMPLETED' },
          ':inProgress': { S: 'INPROGRESS' },
          ':claim': { S: claim },
          ':data': { S: JSON.stringify(data ?? null) },
          ':exp': { N: String(Math.floor(Date.now() / 1000) + TTL_SECONDS()) },
        },
      });
      return true;
    } catch (error) {
      if (error instanceof DynamoError && error.type === 'ConditionalCheckFailedException') return false;
      throw error;
    }
  }

  async release(key: string, claim: string): Promise<void> {
    await dynamoDb()
      .call('DeleteItem', {
        TableName: this.table,
        Key: { id: { S: key } },
        ConditionExpression: '#st = :inProgress AND #claim = :claim',
        ExpressionAttributeNames: { '#st': 'status', '#claim': 'claim' },
        ExpressionAttributeValues: { ':inProgress': { S: 'INPROGRESS' }, ':claim': { S: claim } },
      })
      .catch((error) => {
        if (!(error instanceof DynamoError && error.type === 'ConditionalCheckFailedException')) throw error;
      });
  }
}

let store: IdempotencyStore | undefined;
export function idempotencyStore(): IdempotencyStore {
  if (!store) {
    const table = configuredTable('IDEMPOTENCY_TABLE');
    store = table ? new DynamoIdempotencyStore(table) : new MemoryIdempotencyStore();
  }
  return store;
}
export function setIdempotencyStore(next: IdempotencyStore | undefined): void {
  store = next;
}

/**
 * Claims `key` for this request until `deadline`: a completed key gives its kept answer (`replayed`), a key in
 * progress is waited for until `deadline`, a key reused with a different payload is refused.
 */
export async function claimOnce(
  key: string,
  hash: string,
  deadline: number,
): Promise<{ claim: string } | { replayed: unknown }> {
  const store = idempotencyStore();
  for (;;) {
    const begin = await store.begin(key, hash, deadline);
    if (begin.kind === 'mismatch') {
      throw new IdempotencyMismatchError(
        'This Idempotency-Key was already used with a different request; use a new key for a new request',
      );
    }
    if (begin.kind === 'completed') return { replayed: begin.data };
    if (begin.kind === 'new') return { claim: begin.claim };
    if (Date.now() + 100 >= deadline)
      throw new IdempotencyInProgressError('A request with this Idempotency-Key is still in progress; retry shortly');
    await sleep(100);
  }
}

/** Keeps the answer of a claimed key when `keep` says it is final, else releases the key so a retry runs again. */
export async function settleOnce<T>(key: string, claim: string, result: T, keep: (result: T) => boolean) {
  const store = idempotencyStore();
  if (!keep(result)) await store.release(key, claim);
  else if (!(await store.complete(key, claim, scrub(result))))
    // We outlived our hold and another invocation took the key over: its record stands, ours is not kept.
    log.warn('idempotency record was taken over by another invocation; this answer is not kept', { key });
}

/** Releases a claimed key after the work failed (the failure is the caller's to report; a release that fails is
 * logged, and the record expires with its hold). */
export async function releaseOnce(key: string, claim: string): Promise<void> {
  await idempotencyStore()
    .release(key, claim)
    .catch((e) => log.error('idempotency record not released', { error: e }));
}

/**
 * Runs `work` once per key (claimOnce, then settleOnce, or releaseOnce when it throws). `keep` says whether an
 * answer is final.
 */
export async function onceFor<T>(
  key: string,
  hash: string,
  deadline: number,
  work: () => Promise<T>,
  keep: (result: T) => boolean,
): Promise<{ result: T; replayed: boolean }> {
  const claimed = await claimOnce(key, hash, deadline);
  if ('replayed' in claimed) return { result: claimed.replayed as T, replayed: true };
  let result: T;
  try {
    result = await work();
  } catch (error) {
    await releaseOnce(key, claimed.claim);
    throw error;
  }
  await settleOnce(key, claimed.claim, result, keep);
  return { result, replayed: false };
}
