/**
 * Lambda (Step Functions task): Prepare. Validates a batch (every bad item listed by index and field), removes
 * duplicates, chunks the targets of a provider that takes many per call (Auco's codes), gives every task a stable idempotency key and sets the deadline of its rounds. An inline batch comes back in the
 * state; a manifest batch is read from S3 and its tasks written back to S3, one JSONL file per provider, for the
 * Distributed Maps to read.
 */
import * as z from 'zod/mini';
import { getText, putJsonl, putText } from '#shared/aws/s3.ts';
import { parseBatchFields, parseManifest, validateBatch } from '#shared/batch/input.ts';
import { type Prepared, prepareBatch } from '#shared/batch/prepare.ts';
import { needs, resource } from '#shared/config.ts';
import { InvalidInputError } from '#shared/core/errors.ts';
import { startedByOf } from '#shared/core/execution-starts.ts';
import { scheduleName } from '#shared/core/expirations.ts';
import { PROVIDERS } from '#shared/core/outcome.ts';
import { defineHandler } from '#shared/handler/middleware.ts';

needs('BATCH_BUCKET', 'IDEMPOTENCY_TABLE');

const Task = z.object({
  input: z.unknown(),
  executionId: z.string(),
  executionName: z.string(),
  /** The execution's start: the default deadline counts from it. */
  startTime: z.optional(z.string()),
});
type Input = z.infer<typeof Task>;

/** What the manifest path hands on: counts and S3 locations instead of the items themselves. */
export type PreparedManifest = Omit<Prepared, 'groups' | 'duplicates'> & {
  duplicates: number;
  prepared: { bucket: string; key: string };
  manifests: Partial<Record<(typeof PROVIDERS)[number], { bucket: string; key: string; count: number }>>;
};

const startedAt = (startTime: string | undefined) => {
  const at = startTime ? Date.parse(startTime) : Number.NaN;
  return Number.isFinite(at) ? at : Date.now();
};

async function prepareManifest({ input, executionId, executionName, startTime }: Input): Promise<PreparedManifest> {
  // The batch fields are checked before S3 is asked, so a bad bucket or key is reported as such.
  const location = parseBatchFields(input).manifest;
  if (!location) throw new InvalidInputError([{ path: 'manifest', message: 'is required' }]);
  const { items: raw, issues } = parseManifest(await getText(location.bucket, location.key, 'manifest'));
  if (issues.length) throw new InvalidInputError(issues, 'Invalid manifest');
  const { request, items } = validateBatch(input, raw, 'manifest');
  const prepared = prepareBatch(request, items, executionId, 'manifest', startedAt(startTime));
  const bucket = resource('BATCH_BUCKET');
  const prefix = `batches/${executionName}`;
  const manifests: PreparedManifest['manifests'] = {};
  for (const provider of PROVIDERS) {
    const tasks = prepared.groups[provider];
    if (!tasks.length) continue;
    const key = `${prefix}/tasks/${provider}.jsonl`;
    await putJsonl(bucket, key, tasks);
    manifests[provider] = { bucket, key, count: tasks.length };
  }
  const preparedKey = `${prefix}/prepared.json`;
  await putText(
    bucket,
    preparedKey,
    JSON.stringify({ total: prepared.total, unique: prepared.unique, duplicates: prepared.duplicates }),
  );
  const { groups: _g, duplicates, ...rest } = prepared;
  return { ...rest, duplicates: duplicates.length, prepared: { bucket, key: preparedKey }, manifests };
}

/** The schedule an execution's input would come from: an expiration's guard names its credit application. */
const scheduleOfInput = (input: unknown) => {
  const id = (input as { guard?: { creditApplicationId?: unknown } } | null)?.guard?.creditApplicationId;
  return typeof id === 'string' ? scheduleName(id) : undefined;
};

export const handler = defineHandler<Input, Prepared | PreparedManifest>({
  name: 'batch-prepare',
  task: { schema: Task, toInput: (p: Input) => p },
  run: async (input) => {
    const prepared =
      (input.input as { manifest?: unknown } | null)?.manifest !== undefined
        ? await prepareManifest(input)
        : (() => {
            const { request, items } = validateBatch(input.input);
            return prepareBatch(request, items, input.executionId, 'inline', startedAt(input.startTime));
          })();
    // What started this execution, for every ledger entry of the batch: from our own start records, looked up by
    // the name Step Functions gives (the context, not the input a console user types).
    prepared.batch.startedBy = await startedByOf(input.executionName, input.input, scheduleOfInput);
    return prepared;
  },
  reply: (result) => ({ statusCode: 200, body: result }),
});
