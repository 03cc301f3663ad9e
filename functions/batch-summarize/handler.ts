/**
 * Lambda (Step Functions task): Summarize. Turns every provider map's results, caught failures included, into one
 * outcome per input item (in input order) and the counts per provider and outcome. Items whose Lambda crashed are
 * recorded `failed` in the audit ledger here, since their own function could not.
 *
 * The manifest path reads the Distributed Maps' ResultWriter output from S3 (children that failed or never ran
 * give `failed` outcomes for their items) and writes `results.jsonl` and `summary.json` beside the batch's tasks.
 */
import * as z from 'zod/mini';
import { getText, putJsonl, putText, requireEnv } from '#shared/aws/s3.ts';
import {
  type BatchResult,
  caughtOutcomes,
  collectOutcomes,
  type IterationResult,
  type PreparedTask,
  summarize,
} from '#shared/batch.ts';
import { defaultDeps } from '#shared/cancel.ts';
import { executionCaller, type LedgerEntry, recordOrLog } from '#shared/ledger.ts';
import { defineHandler } from '#shared/middleware.ts';
import { parseJson } from '#shared/providers/common.ts';

const Inline = z.looseObject({
  mode: z.literal('inline'),
  batch: z.looseObject({ executionId: z.string() }),
  total: z.number(),
  unique: z.number(),
  duplicates: z.array(z.tuple([z.number(), z.number()])),
  groups: z.array(z.array(z.unknown())),
});
const Manifest = z.looseObject({
  mode: z.literal('manifest'),
  batch: z.looseObject({ executionId: z.string() }),
  prepared: z.object({ bucket: z.string(), key: z.string() }),
  fanout: z.array(z.unknown()),
});
const Task = z.discriminatedUnion('mode', [Inline, Manifest]);
type Input = z.infer<typeof Task>;

/** One child execution as the ResultWriter lists it (Transformation NONE). */
interface ChildResult {
  Status?: string;
  Input?: string;
  Output?: string;
  Error?: string;
  Cause?: string;
}

/** Caught iterations that never reached their own function's ledger write: the Lambda crashed, or never ran. */
async function recordCrashes(
  iterations: IterationResult[],
  batch: {
    executionId: string;
    reason?: unknown;
    requestedBy?: unknown;
    creditApplicationId?: unknown;
    startedBy?: unknown;
  },
) {
  const at = new Date().toISOString();
  const entries: LedgerEntry[] = iterations
    .filter(
      (it): it is PreparedTask & { error: { Error: string; Cause?: string } } =>
        'error' in it && !it.error.Error.startsWith('Provider.'),
    )
    .flatMap((it) => caughtOutcomes(it).map(({ outcome }) => ({ outcome, key: it.idempotencyKey })))
    .map(({ outcome, key }) => ({
      ...outcome,
      at,
      source: 'task' as const,
      caller: executionCaller(batch),
      executionId: batch.executionId,
      idempotencyKey: key,
      ...(typeof batch.reason === 'string' ? { reason: batch.reason } : {}),
      ...(typeof batch.requestedBy === 'string' ? { requestedBy: batch.requestedBy } : {}),
      ...(typeof batch.creditApplicationId === 'string' ? { creditApplicationId: batch.creditApplicationId } : {}),
    }));
  if (entries.length) await recordOrLog(defaultDeps().ledger, entries);
}

/** The JSON in `text`, or `fallback` when there is none or it is not JSON. */
function jsonOr<T>(text: string | undefined, fallback: T): T {
  return (parseJson(text ?? '') as T | undefined) ?? fallback;
}

/** The iterations of one Distributed Map run, read from its ResultWriter manifest. */
async function readMapRun(written: unknown): Promise<IterationResult[]> {
  const details = (written as { ResultWriterDetails?: { Bucket?: string; Key?: string } } | null)?.ResultWriterDetails;
  if (!details?.Bucket || !details.Key) return [];
  const manifest = jsonOr<{ ResultFiles?: Record<string, { Key: string }[]> }>(
    await getText(details.Bucket, details.Key, 'map run manifest'),
    {},
  );
  const iterations: IterationResult[] = [];
  for (const [status, files] of Object.entries(manifest.ResultFiles ?? {})) {
    for (const file of files) {
      const children = jsonOr<ChildResult[]>(await getText(details.Bucket, file.Key, 'map run results'), []);
      for (const child of children) {
        if (status === 'SUCCEEDED') {
          iterations.push(...jsonOr<IterationResult[]>(child.Output, []));
          continue;
        }
        // A child that failed or never ran: every item of its batch is failed, with the child's error.
        const batch = jsonOr<{ Items?: PreparedTask[] }>(child.Input, {});
        const error = {
          Error: child.Error ?? `Child.${status}`,
          Cause: child.Cause ?? `the child workflow ended ${status}`,
        };
        for (const task of batch.Items ?? []) iterations.push({ ...task, error });
      }
    }
  }
  return iterations;
}

async function summarizeManifest(
  state: z.infer<typeof Manifest>,
): Promise<
  Omit<BatchResult, 'results'> & { results: { bucket: string; key: string; count: number }; guard?: unknown }
> {
  const prepared = jsonOr<{ total: number; unique: number; duplicates: [number, number][] }>(
    await getText(state.prepared.bucket, state.prepared.key, 'prepared batch'),
    { total: 0, unique: 0, duplicates: [] },
  );
  const iterations = (await Promise.all(state.fanout.map(readMapRun))).flat();
  await recordCrashes(iterations, state.batch);
  const { results, ...rest } = summarize(prepared, collectOutcomes(iterations));
  const bucket = requireEnv('BATCH_BUCKET');
  const base = state.prepared.key.replace(/\/prepared\.json$/, '');
  await putJsonl(bucket, `${base}/results.jsonl`, results);
  await putText(bucket, `${base}/summary.json`, JSON.stringify(rest));
  const guard = (state as { guardResult?: unknown }).guardResult;
  return {
    ...rest,
    results: { bucket, key: `${base}/results.jsonl`, count: results.length },
    ...(guard ? { guard } : {}),
  };
}

export const handler = defineHandler<Input, unknown>({
  name: 'batch-summarize',
  task: { schema: Task, toInput: (p: Input) => p },
  run: async (state) => {
    if (state.mode === 'manifest') return summarizeManifest(state);
    const iterations = state.groups.flat() as IterationResult[];
    await recordCrashes(iterations, state.batch);
    const result = summarize(state, collectOutcomes(iterations));
    const guard = (state as { guardResult?: unknown }).guardResult;
    return { ...result, ...(guard ? { guard } : {}) };
  },
  reply: (result) => ({ statusCode: 200, body: result }),
});
