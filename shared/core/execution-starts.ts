/**
 * What started a batch execution, for the audit ledger's `caller` (DESIGN.md 3.3): never read from the execution's
 * input, which anyone allowed to start an execution (a console user) can type.
 *
 * Step Functions does not tell a task who called StartExecution, so the code that starts executions says so
 * itself, before starting them, in the idempotency table (one small item each, with a TTL):
 * - `start#<execution name>`: written by the batches function (POST /v1/batches) and by the expirations function
 *   when an expiry already past runs at once; it names the API caller's IAM principal. Prepare reads it by the
 *   execution name Step Functions gives it (`$$.Execution.Name`, from the context, not the input).
 * - `schedule#<schedule name>`: written when an expiration is registered: the hash of the exact input the schedule
 *   will start its execution with, when it fires, and who registered it. An execution whose input is exactly that
 *   one and which starts within the schedule's delivery window (its time, plus the day Scheduler retries) was
 *   started by the schedule.
 * Anything else was started by the console or another StartExecution caller (`console`). The one thing this cannot
 * tell apart: a principal allowed to start executions who types a schedule's exact input within its window is
 * recorded as that schedule (it ran what the schedule runs, when the schedule runs it).
 *
 * Cost: one PutItem per started batch or registered expiration, one or two GetItems per execution (in Prepare).
 */
import { dynamoDb, unmarshallItem } from '#shared/aws/dynamodb.ts';
import { IDEMPOTENCY_TABLE } from '#shared/aws/tables.ts';
import { table as configuredTable } from '#shared/config.ts';
import { payloadHash } from '#shared/handler/idempotency.ts';
import { log } from '#shared/observability/log.ts';

/** What started an execution, as Prepare determined it. */
export interface StartedBy {
  by: 'api' | 'schedule' | 'console';
  /** The IAM principal: the API caller who started it, or who registered the schedule. */
  principal?: string;
  /** The schedule that started it. */
  schedule?: string;
}

interface ScheduleRecord {
  inputHash: string;
  /** Epoch ms the schedule fires. */
  at: number;
  principal?: string;
}

/** How long after its time Scheduler may still start a schedule's target (its retry policy: a day), and slack. */
const DELIVERY_WINDOW_MS = 86_400_000 + 3_600_000;
/** How early an execution may start and still be the schedule's (clock skew between Scheduler and us). */
const EARLY_MS = 60_000;
/** A start record is read by Prepare within seconds of the start; kept a week for Prepare's retries and redrives. */
const START_TTL_SECONDS = 7 * 86_400;

interface Store {
  put(id: string, value: object, expiresAtSeconds: number): Promise<void>;
  get(id: string): Promise<Record<string, unknown> | undefined>;
  delete(id: string): Promise<void>;
}

class MemoryStore implements Store {
  private readonly items = new Map<string, { value: object; expires: number }>();
  async put(id: string, value: object, expiresAtSeconds: number): Promise<void> {
    this.items.set(id, { value, expires: expiresAtSeconds * 1000 });
  }
  async get(id: string): Promise<Record<string, unknown> | undefined> {
    const item = this.items.get(id);
    return item && item.expires > Date.now() ? { ...item.value } : undefined;
  }
  async delete(id: string): Promise<void> {
    this.items.delete(id);
  }
}

class DynamoStore implements Store {
  private readonly table: string;
  constructor(table: string) {
    this.table = table;
  }
  async put(id: string, value: object, expiresAtSeconds: number): Promise<void> {
    await dynamoDb().call('PutItem', {
      TableName: this.table,
      Item: {
        id: { S: id },
        value: { S: JSON.stringify(value) },
        [IDEMPOTENCY_TABLE.ttlAttribute]: { N: String(Math.ceil(expiresAtSeconds)) },
      },
    });
  }
  async get(id: string): Promise<Record<string, unknown> | undefined> {
    const answer = await dynamoDb().call<{ Item?: Parameters<typeof unmarshallItem>[0] }>('GetItem', {
      TableName: this.table,
      Key: { id: { S: id } },
      ConsistentRead: true,
    });
    if (!answer.Item) return undefined;
    const item = unmarshallItem(answer.Item) as { value?: string; [k: string]: unknown };
    const expires = Number(item[IDEMPOTENCY_TABLE.ttlAttribute]);
    // DynamoDB deletes expired items lazily: an expired one is not an answer.
    if (Number.isFinite(expires) && expires * 1000 < Date.now()) return undefined;
    return typeof item.value === 'string' ? (JSON.parse(item.value) as Record<string, unknown>) : undefined;
  }
  async delete(id: string): Promise<void> {
    await dynamoDb().call('DeleteItem', { TableName: this.table, Key: { id: { S: id } } });
  }
}

let store: Store | undefined;
const starts = () => {
  if (!store) {
    const table = configuredTable('IDEMPOTENCY_TABLE');
    store = table ? new DynamoStore(table) : new MemoryStore();
  }
  return store;
};

/** Says, before starting it, that the API starts the execution named `name` for this principal. */
export async function recordApiStart(name: string, principal: string | undefined): Promise<void> {
  const value: StartedBy = { by: 'api', ...(principal ? { principal } : {}) };
  await starts().put(`start#${name}`, value, Date.now() / 1000 + START_TTL_SECONDS);
}

/** Says that schedule `schedule` will start an execution with exactly `input` at `at` (epoch ms). */
export async function recordSchedule(
  schedule: string,
  input: unknown,
  at: number,
  principal: string | undefined,
): Promise<void> {
  const value: ScheduleRecord = { inputHash: payloadHash(input), at, ...(principal ? { principal } : {}) };
  await starts().put(`schedule#${schedule}`, value, (at + DELIVERY_WINDOW_MS) / 1000 + 86_400);
}

export async function forgetSchedule(schedule: string): Promise<void> {
  await starts().delete(`schedule#${schedule}`);
}

/**
 * What started the execution `executionName` with this `input`: its start record, else the schedule named by
 * `scheduleOf(input)` when the input and the time match it, else the console. An unreadable table is logged and
 * answered `console`: the batch runs; only its attribution is the weaker one.
 */
export async function startedByOf(
  executionName: string,
  input: unknown,
  scheduleOf: (input: unknown) => string | undefined,
  now = Date.now(),
): Promise<StartedBy> {
  try {
    const start = await starts().get(`start#${executionName}`);
    if (start?.by === 'api') {
      return { by: 'api', ...(typeof start.principal === 'string' ? { principal: start.principal } : {}) };
    }
    const schedule = scheduleOf(input);
    if (schedule) {
      const record = (await starts().get(`schedule#${schedule}`)) as Partial<ScheduleRecord> | undefined;
      if (
        record &&
        typeof record.at === 'number' &&
        record.inputHash === payloadHash(input) &&
        now >= record.at - EARLY_MS &&
        now <= record.at + DELIVERY_WINDOW_MS
      ) {
        return {
          by: 'schedule',
          schedule,
          ...(typeof record.principal === 'string' ? { principal: record.principal } : {}),
        };
      }
    }
  } catch (error) {
    log.warn('execution start records unreadable; the batch is attributed to the console', { error });
  }
  return { by: 'console' };
}
