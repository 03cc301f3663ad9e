/**
 * A circuit per provider, shared by every batch execution and every warm Lambda: its state is one DynamoDB item
 * per provider (CIRCUIT_TABLE), so what one container learns about an outage, all of them know.
 *
 * - closed: calls go through. A `failed` outcome that says the provider did not answer (`transient`, `timeout`)
 *   counts a failure; CIRCUIT_FAILURES_TO_OPEN of them in a row open the circuit. An answer (any other outcome,
 *   a 429 included: the provider is up, only busy) resets the count.
 * - open: calls are refused before any request (`Provider.CircuitOpen`, which the batch keeps for its next round),
 *   except one probe per CIRCUIT_PROBE_SECONDS per provider, claimed with a conditional write so that, across every
 *   execution and container, about one request per interval reaches the provider. A probe makes a single attempt.
 *   A probe that gets an answer closes the circuit; the batches' next rounds then drain at the provider's budget.
 *
 * Batches (Step Functions tasks) go through the circuit, their guard's lookup included; a caller of the API does not
 * (it gets its own answer).
 *
 * A batch task's gate reuses, for CLOSED_READ_REUSE_MS, its container's last read if it found the circuit closed with
 * no failure, so a busy container reads the circuit about once a second instead of once per task (a consistent read
 * for every batch cancel: one of its four to eight DynamoDB calls). Nothing else is reused: a circuit with failures
 * counted or open is read every time (a probe's close is seen at once, and an answer resets the failures), and a
 * failure this container counts forgets the reused read. The cost: another container's opening reaches this one up
 * to a second late, so it may send one more call to a provider that just went down; that call's failure is counted
 * and the next read sees the circuit open.
 */
import { type DynamoDb, DynamoError, dynamoDb, type Item, unmarshallItem } from '#shared/aws/dynamodb.ts';
import { CIRCUIT_TABLE } from '#shared/aws/tables.ts';
import { config } from '#shared/config.ts';
import type { Outcome, Provider } from './outcome.ts';

export interface CircuitState {
  provider: Provider;
  state: 'closed' | 'open';
  /** Consecutive failures (outcomes that found the provider unreachable). */
  failures: number;
  /** Epoch ms the circuit opened. */
  openedAt?: number;
  /** Epoch ms from which the next probe may be claimed. */
  probeAt?: number;
  /** The last failure's message. */
  lastFailure?: string;
  updatedAt?: number;
}

export interface CircuitConfig {
  failuresToOpen: number;
  probeIntervalMs: number;
}

/** CIRCUIT_FAILURES_TO_OPEN (3) and CIRCUIT_PROBE_SECONDS (15: four probes a minute per provider). */
export function circuitConfig(): CircuitConfig {
  return config().circuit;
}

export interface CircuitStore {
  /** The circuit's state. `reuseClosedMs`: a read this container made no longer ago that found the circuit closed
   * with no failure will do (a failure counted here forgets it). */
  get(provider: Provider, reuseClosedMs?: number): Promise<CircuitState | undefined>;
  /** Counts a failure; opens the circuit at the threshold. Returns the state after it. */
  failure(provider: Provider, message: string, now?: number): Promise<CircuitState>;
  /** The provider answered: closes the circuit. Returns the state before it (to tell a transition). */
  success(provider: Provider): Promise<CircuitState | undefined>;
  /** Claims the probe of an open circuit: true for one caller per interval. */
  claimProbe(provider: Provider, now?: number): Promise<boolean>;
}

/** Whether an outcome shows the provider unreachable (counts toward opening), or answering (closes). */
export function unreachable(outcome: Pick<Outcome, 'outcome' | 'failure'>): boolean {
  return outcome.outcome === 'failed' && (outcome.failure === 'transient' || outcome.failure === 'timeout');
}

const fromItem = (item: Record<string, unknown>): CircuitState => ({
  provider: item[CIRCUIT_TABLE.partitionKey] as Provider,
  state: item.state === 'open' ? 'open' : 'closed',
  failures: Number(item.failures ?? 0),
  ...(typeof item.openedAt === 'number' ? { openedAt: item.openedAt } : {}),
  ...(typeof item.probeAt === 'number' ? { probeAt: item.probeAt } : {}),
  ...(typeof item.lastFailure === 'string' ? { lastFailure: item.lastFailure } : {}),
  ...(typeof item.updatedAt === 'number' ? { updatedAt: item.updatedAt } : {}),
});

/** How long a container reuses a read that found a circuit closed with no failure counted. */
export const CLOSED_READ_REUSE_MS = 1000;

const conditionFailed = (error: unknown) =>
  error instanceof DynamoError && error.type === 'ConditionalCheckFailedException';

export class DynamoCircuitStore implements CircuitStore {
  private readonly table: string;
  private readonly db: DynamoDb;
  private readonly config: CircuitConfig;
  /** This container's last read of each circuit that found it closed with no failure (or no item yet), and when. */
  private readonly closed = new Map<Provider, { state: CircuitState | undefined; at: number }>();
  /** Failures this container counted: a read that began before one is not kept. */
  private failuresCounted = 0;

  constructor(table: string, options: { db?: DynamoDb; config?: CircuitConfig } = {}) {
    this.table = table;
    this.db = options.db ?? dynamoDb();
    this.config = options.config ?? circuitConfig();
  }

  private key(provider: Provider) {
    return { [CIRCUIT_TABLE.partitionKey]: { S: provider } };
  }

  async get(provider: Provider, reuseClosedMs = 0): Promise<CircuitState | undefined> {
    const reused = this.closed.get(provider);
    if (reused && Date.now() - reused.at < reuseClosedMs) return reused.state;
    const counted = this.failuresCounted;
    const at = Date.now();
    const { Item } = await this.db.call<{ Item?: Item }>('GetItem', {
      TableName: this.table,
      Key: this.key(provider),
      ConsistentRead: true,
    });
    const state = Item ? fromItem(unmarshallItem(Item)) : undefined;
    if ((!state || (state.state === 'closed' && state.failures === 0)) && counted === this.failuresCounted) {
      this.closed.set(provider, { state, at });
    } else this.closed.delete(provider);
    return state;
  }

  async failure(provider: Provider, message: string, now = Date.now()): Promise<CircuitState> {
    this.failuresCounted++;
    this.closed.delete(provider);
    const { Attributes } = await this.db.call<{ Attributes: Item }>('UpdateItem', {
      TableName: this.table,
      Key: this.key(provider),
      UpdateExpression: 'SET failures = if_not_exists(failures, :zero) + :one, lastFailure = :m, updatedAt = :now',
      ExpressionAttributeValues: {
        ':zero': { N: '0' },
        ':one': { N: '1' },
        ':m': { S: message.slice(0, 500) },
        ':now': { N: String(now) },
      },
      ReturnValues: 'ALL_NEW',
    });
    const state = fromItem(unmarshallItem(Attributes));
    if (state.state === 'open' || state.failures < this.config.failuresToOpen) return state;
    try {
      await this.db.call('UpdateItem', {
        TableName: this.table,
        Key: this.key(provider),
        UpdateExpression: 'SET #s = :open, openedAt = :now, probeAt = :probe',
        ConditionExpression: 'attribute_not_exists(#s) OR #s <> :open',
        ExpressionAttributeNames: { '#s': 'state' },
        ExpressionAttributeValues: {
          ':open': { S: 'open' },
          ':now': { N: String(now) },
          ':probe': { N: String(now + this.config.probeIntervalMs) },
        },
      });
      return { ...state, state: 'open', openedAt: now, probeAt: now + this.config.probeIntervalMs };
    } catch (error) {
      if (conditionFailed(error)) return { ...state, state: 'open' };
      throw error;
    }
  }

  async success(provider: Provider): Promise<CircuitState | undefined> {
    const { Attributes } = await this.db.call<{ Attributes?: Item }>('UpdateItem', {
      TableName: this.table,
      Key: this.key(provider),
      UpdateExpression: 'SET #s = :closed, failures = :zero, updatedAt = :now REMOVE openedAt, probeAt',
      ExpressionAttributeNames: { '#s': 'state' },
      ExpressionAttributeValues: { ':closed': { S: 'closed' }, ':zero': { N: '0' }, ':now': { N: String(Date.now()) } },
      ReturnValues: 'ALL_OLD',
    });
    return Attributes ? fromItem(unmarshallItem(Attributes)) : undefined;
  }

  async claimProbe(provider: Provider, now = Date.now()): Promise<boolean> {
    try {
      await this.db.call('UpdateItem', {
        TableName: this.table,
        Key: this.key(provider),
        UpdateExpression: 'SET probeAt = :next',
        ConditionExpression: '#s = :open AND probeAt <= :now',
        ExpressionAttributeNames: { '#s': 'state' },
        ExpressionAttributeValues: {
          ':open': { S: 'open' },
          ':now': { N: String(now) },
          ':next': { N: String(now + this.config.probeIntervalMs) },
        },
      });
      return true;
    } catch (error) {
      if (conditionFailed(error)) return false;
      throw error;
    }
  }
}
