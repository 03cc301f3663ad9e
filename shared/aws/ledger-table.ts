/**
 * The audit ledger in DynamoDB. One item per outcome: partition `<provider>#<target>` (every outcome of one
 * target, in time order), and a sparse index by credit application. The full entry is kept as JSON beside the
 * keys, so a new outcome field needs no migration.
 */
import { randomUUID } from 'node:crypto';
import type { Ledger, LedgerEntry, LedgerQuery, Progress } from '#shared/core/ledger.ts';
import { countSettled, invalidCursor, targetKey } from '#shared/core/ledger.ts';
import { isCanceled, type OutcomeKind, type Provider } from '#shared/core/outcome.ts';
import { sleep } from '#shared/http/sleep.ts';
import { type DynamoDb, dynamoDb, type Item, marshallItem, unmarshallItem } from './dynamodb.ts';
import { LEDGER_TABLE } from './tables.ts';

const pk = (provider: string, target: Record<string, string> | string) =>
  `${provider}#${typeof target === 'string' ? target : targetKey(target)}`;
const encodeCursor = (key: unknown) => Buffer.from(JSON.stringify(key)).toString('base64url');

/**
 * The start key a cursor holds, checked against the query before DynamoDB sees it: exactly the key attributes of
 * the table or index queried, strings, in the partition queried. Anything else is the caller's mistake (400), not a
 * DynamoDB validation error (500), and never a way to page through another partition.
 */
function decodeCursor(cursor: string, keys: readonly string[], partition: [string, string]): Item {
  let key: unknown;
  try {
    key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalidCursor();
  }
  const entries = key !== null && typeof key === 'object' && !Array.isArray(key) ? Object.entries(key) : [];
  const valid =
    entries.length === keys.length &&
    entries.every(([name, value]) => {
      const s = (value as { S?: unknown } | null)?.S;
      return keys.includes(name) && typeof s === 'string' && Object.keys(value as object).length === 1;
    }) &&
    (key as Record<string, { S: string }>)[partition[0]]?.S === partition[1];
  if (!valid) throw invalidCursor();
  return key as Item;
}

export class DynamoLedger implements Ledger {
  private readonly table: string;
  private readonly db: DynamoDb;

  constructor(table: string, db: DynamoDb = dynamoDb()) {
    this.table = table;
    this.db = db;
  }

  async record(entries: LedgerEntry[]): Promise<void> {
    const requests = entries.map((entry) => ({
      PutRequest: {
        Item: marshallItem({
          pk: pk(entry.provider, entry.target),
          sk: `${entry.at}#${randomUUID()}`,
          at: entry.at,
          provider: entry.provider,
          outcome: entry.outcome,
          creditApplicationId: entry.creditApplicationId,
          executionId: entry.executionId,
          entry: JSON.stringify(entry),
        }),
      },
    }));
    for (let i = 0; i < requests.length; i += 25) {
      let pending: unknown[] = requests.slice(i, i + 25);
      for (let attempt = 0; pending.length; attempt++) {
        if (attempt === 5)
          throw new Error(`DynamoDB left ${pending.length} ledger entries unprocessed after 5 attempts`);
        if (attempt) await sleep(50 * 2 ** attempt);
        const answer = await this.db.call<{ UnprocessedItems?: Record<string, unknown[]> }>('BatchWriteItem', {
          RequestItems: { [this.table]: pending },
        });
        pending = answer.UnprocessedItems?.[this.table] ?? [];
      }
    }
  }

  async progress(executionId: string): Promise<Progress> {
    const seen: { provider: Provider; outcome: string; key: string }[] = [];
    let start: Item | undefined;
    do {
      const page = await this.db.call<{ Items?: Item[]; LastEvaluatedKey?: Item }>('Query', {
        TableName: this.table,
        IndexName: LEDGER_TABLE.byExecution.indexName,
        KeyConditionExpression: '#k = :k',
        ExpressionAttributeNames: {
          '#k': LEDGER_TABLE.byExecution.partitionKey,
          '#pk': LEDGER_TABLE.partitionKey,
          '#o': 'outcome',
          '#p': 'provider',
        },
        ExpressionAttributeValues: { ':k': { S: executionId } },
        ProjectionExpression: '#pk, #o, #p',
        ...(start ? { ExclusiveStartKey: start } : {}),
      });
      for (const item of page.Items ?? []) {
        const { pk, outcome, provider } = unmarshallItem(item) as { pk: string; outcome: string; provider: Provider };
        seen.push({ provider, outcome, key: pk });
      }
      start = page.LastEvaluatedKey;
    } while (start);
    return countSettled(seen);
  }

  async lastCancellation(provider: Provider, target: Record<string, string>): Promise<LedgerEntry | undefined> {
    let start: Item | undefined;
    do {
      const page = await this.db.call<{ Items?: Item[]; LastEvaluatedKey?: Item }>('Query', {
        TableName: this.table,
        KeyConditionExpression: '#pk = :pk',
        ExpressionAttributeNames: { '#pk': LEDGER_TABLE.partitionKey },
        ExpressionAttributeValues: { ':pk': { S: pk(provider, target) } },
        ScanIndexForward: false,
        Limit: 50,
        ...(start ? { ExclusiveStartKey: start } : {}),
      });
      for (const item of page.Items ?? []) {
        const { outcome, entry } = unmarshallItem(item) as { outcome: string; entry: string };
        if (isCanceled({ outcome: outcome as OutcomeKind })) return JSON.parse(entry) as LedgerEntry;
      }
      start = page.LastEvaluatedKey;
    } while (start);
    return undefined;
  }

  private startKey(query: LedgerQuery, cursor: string): Item {
    const table = [LEDGER_TABLE.partitionKey, LEDGER_TABLE.sortKey];
    if (query.creditApplicationId !== undefined) {
      const { partitionKey, sortKey } = LEDGER_TABLE.byCreditApplication;
      return decodeCursor(cursor, [...table, partitionKey, sortKey], [partitionKey, query.creditApplicationId]);
    }
    return decodeCursor(cursor, table, [LEDGER_TABLE.partitionKey, pk(query.provider ?? '', query.target ?? '')]);
  }

  async query(query: LedgerQuery): Promise<{ entries: LedgerEntry[]; cursor?: string }> {
    const byApplication = query.creditApplicationId !== undefined;
    if (!byApplication && !(query.provider && query.target))
      throw new Error('query the ledger by provider and target, or by credit application');
    const page = await this.db.call<{ Items?: Item[]; LastEvaluatedKey?: Item }>('Query', {
      TableName: this.table,
      ...(byApplication
        ? {
            IndexName: LEDGER_TABLE.byCreditApplication.indexName,
            KeyConditionExpression: '#k = :k',
            ExpressionAttributeNames: { '#k': LEDGER_TABLE.byCreditApplication.partitionKey },
            ExpressionAttributeValues: { ':k': { S: query.creditApplicationId } },
          }
        : {
            KeyConditionExpression: '#k = :k',
            ExpressionAttributeNames: { '#k': LEDGER_TABLE.partitionKey },
            ExpressionAttributeValues: { ':k': { S: pk(query.provider as string, query.target as string) } },
          }),
      ScanIndexForward: false,
      Limit: query.limit ?? 50,
      ...(query.cursor ? { ExclusiveStartKey: this.startKey(query, query.cursor) } : {}),
    });
    const entries = (page.Items ?? []).map((item) => JSON.parse(String(unmarshallItem(item).entry)) as LedgerEntry);
    return { entries, ...(page.LastEvaluatedKey ? { cursor: encodeCursor(page.LastEvaluatedKey) } : {}) };
  }
}
