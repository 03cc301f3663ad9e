/**
 * Lambda (Step Functions task): Summarize, after every round. Turns every provider map's results, caught failures
 * included, into final outcomes and items to try again (shared/batch/rounds.ts). While items wait and the
 * deadline has not passed, it answers `status: waiting` with the next round (its tasks, its wait); otherwise one
 * outcome per input item (in input order) and the counts per provider and outcome. Items whose Lambda crashed, and
 * items given up at the deadline, are recorded `failed` in the audit ledger here, since their own function could not.
 *
 * The manifest path reads the Distributed Maps' ResultWriter output from S3 (children that failed or never ran
 * give `failed` outcomes for their items), keeps what rounds settle and hold back in S3 beside the batch's tasks,
 * and at the end writes `results.jsonl` and `summary.json` there.
 */
import * as z from 'zod/mini';
import { getText, putJsonl, putText, requireEnv } from '#shared/aws/s3.ts';
import type { PreparedTask } from '#shared/batch/prepare.ts';
import {
  type OpenCircuits,
  planNextRound,
  type RoundDecision,
  type RoundInfo,
  splitRound,
} from '#shared/batch/rounds.ts';
import { type BatchResult, caughtOutcomes, type IterationResult, summarize } from '#shared/batch/summarize.ts';
import { defaultDeps } from '#shared/core/cancel.ts';
import { executionCaller, type LedgerEntry, recordOrLog } from '#shared/core/ledger.ts';
import { type Outcome, PROVIDERS, type Provider } from '#shared/core/outcome.ts';
import { defineHandler } from '#shared/handler/middleware.ts';
import { log } from '#shared/observability/log.ts';
import { emitCircuitMetrics } from '#shared/observability/metrics.ts';
import { parseJson } from '#shared/providers/common.ts';

/** The rounds so far: absent after the first. */
const Round = z.optional(z.looseObject({ number: z.number(), events: z.number() }));
const Inline = z.looseObject({
  mode: z.literal('inline'),
  batch: z.looseObject({ executionId: z.string() }),
  total: z.number(),
  unique: z.number(),
  duplicates: z.array(z.tuple([z.number(), z.number()])),
  groups: z.array(z.array(z.unknown())),
  deadline: z.string(),
  round: Round,
  /** Final outcomes of earlier rounds, and the tasks an earlier round held back. */
  settled: z.optional(z.array(z.unknown())),
  held: z.optional(z.array(z.unknown())),
});
const Manifest = z.looseObject({
  mode: z.literal('manifest'),
  batch: z.looseObject({ executionId: z.string() }),
  prepared: z.object({ bucket: z.string(), key: z.string() }),
  fanout: z.array(z.unknown()),
  deadline: z.string(),
  round: Round,
  /** Where earlier rounds left their final outcomes and held-back tasks (JSONL). */
  carried: z.optional(z.object({ settled: z.string(), held: z.string() })),
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

/** Items given up at the deadline: their last attempts may not be in the ledger (a refused call never ran). */
async function recordGivenUp(
  failed: { outcome: Outcome }[],
  batch: { executionId: string; reason?: unknown; requestedBy?: unknown; creditApplicationId?: unknown },
) {
  if (!failed.length) return;
  const at = new Date().toISOString();
  await recordOrLog(
    defaultDeps().ledger,
    failed.map(({ outcome }) => ({
      ...outcome,
      at,
      source: 'task' as const,
      executionId: batch.executionId,
      ...(typeof batch.reason === 'string' ? { reason: batch.reason } : {}),
      ...(typeof batch.requestedBy === 'string' ? { requestedBy: batch.requestedBy } : {}),
      ...(typeof batch.creditApplicationId === 'string' ? { creditApplicationId: batch.creditApplicationId } : {}),
    })),
  );
}

/** The providers among `providers` whose circuit is open (none when the circuits are not configured). */
async function openCircuits(providers: Iterable<Provider>): Promise<OpenCircuits> {
  const circuits = defaultDeps().circuits;
  const open: OpenCircuits = {};
  if (!circuits) return open;
  for (const provider of new Set(providers)) {
    const circuit = await circuits.get(provider).catch((error) => {
      log.warn('circuit unreadable; the next round sends every item', { provider, error });
      return undefined;
    });
    if (circuit) emitCircuitMetrics(provider, circuit);
    if (circuit?.state === 'open') open[provider] = circuit.openedAt ? { since: circuit.openedAt } : {};
  }
  return open;
}

/** One round's results, and what comes next. */
async function afterRound(
  state: { mode: 'inline' | 'manifest'; batch: Parameters<typeof recordCrashes>[1]; deadline: string },
  round: { number: number; events: number; lastFailure?: Partial<Record<Provider, string>> } | undefined,
  iterations: IterationResult[],
  held: PreparedTask[],
): Promise<{ settled: { index: number; outcome: Outcome }[]; decision: RoundDecision }> {
  const { settled, retry, crashes } = splitRound(iterations, state.batch.executionId);
  await recordCrashes(crashes, state.batch);
  const open = await openCircuits([...retry.map((r) => r.task), ...held].map((t) => t.item.provider));
  const decision = planNextRound({
    mode: state.mode,
    deadline: state.deadline,
    now: Date.now(),
    round: { number: (round?.number ?? 0) + 1, eventsBefore: round?.events ?? 0, ran: iterations.length },
    retry,
    held,
    open,
    lastFailure: round?.lastFailure ?? {},
  });
  if (decision.kind === 'final') await recordGivenUp(decision.failed, state.batch);
  else log.info('batch waits for its next round', { round: decision.round });
  return { settled, decision };
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

const jsonl = <T>(text: string | undefined): T[] =>
  (text ?? '')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as T);

async function summarizeManifest(state: z.infer<typeof Manifest>): Promise<unknown> {
  const bucket = requireEnv('BATCH_BUCKET');
  const base = state.prepared.key.replace(/\/prepared\.json$/, '');
  const iterations = (await Promise.all(state.fanout.map(readMapRun))).flat();
  const earlier = state.carried
    ? jsonl<{ index: number; outcome: Outcome }>(await getText(bucket, state.carried.settled, 'settled outcomes'))
    : [];
  const held = state.carried ? jsonl<PreparedTask>(await getText(bucket, state.carried.held, 'held tasks')) : [];
  const { settled, decision } = await afterRound(state, state.round as RoundInfo | undefined, iterations, held);
  const all = [...earlier, ...settled];
  if (decision.kind === 'wait') {
    // The next round's tasks, what it holds back, and what is settled so far, in S3: the state stays small.
    const prefix = `${base}/rounds/${decision.round.number}`;
    const manifests: Partial<Record<Provider, { bucket: string; key: string; count: number }>> = {};
    for (const provider of PROVIDERS) {
      const tasks = decision.groups[provider];
      if (!tasks.length) continue;
      const key = `${prefix}/tasks/${provider}.jsonl`;
      await putJsonl(bucket, key, tasks);
      manifests[provider] = { bucket, key, count: tasks.length };
    }
    const carried = { settled: `${prefix}/settled.jsonl`, held: `${prefix}/held.jsonl` };
    await putJsonl(bucket, carried.settled, all);
    await putJsonl(bucket, carried.held, decision.held);
    const { fanout: _f, manifests: _m, carried: _c, ...rest } = state;
    return { ...rest, status: 'waiting', manifests, carried, round: decision.round };
  }
  const prepared = jsonOr<{ total: number; unique: number; duplicates: [number, number][] }>(
    await getText(state.prepared.bucket, state.prepared.key, 'prepared batch'),
    { total: 0, unique: 0, duplicates: [] },
  );
  const byIndex = new Map([...all, ...decision.failed].map((s) => [s.index, s.outcome]));
  const { results, ...rest } = summarize(prepared, byIndex);
  await putJsonl(bucket, `${base}/results.jsonl`, results);
  await putText(bucket, `${base}/summary.json`, JSON.stringify({ ...rest, rounds: decision.report }));
  const guard = (state as { guardResult?: unknown }).guardResult;
  const result: Omit<BatchResult, 'results'> & {
    results: { bucket: string; key: string; count: number };
    guard?: unknown;
  } = {
    ...rest,
    results: { bucket, key: `${base}/results.jsonl`, count: results.length },
    rounds: decision.report,
    ...(guard ? { guard } : {}),
  };
  return result;
}

export const handler = defineHandler<Input, unknown>({
  name: 'batch-summarize',
  task: { schema: Task, toInput: (p: Input) => p },
  run: async (state) => {
    if (state.mode === 'manifest') return summarizeManifest(state);
    const iterations = state.groups.flat() as IterationResult[];
    const held = (state.held ?? []) as PreparedTask[];
    const earlier = (state.settled ?? []) as { index: number; outcome: Outcome }[];
    const { settled, decision } = await afterRound(state, state.round as RoundInfo | undefined, iterations, held);
    if (decision.kind === 'wait') {
      // The next round: its tasks in `groups` (the maps' input), the rest held back, final outcomes carried.
      return {
        ...state,
        status: 'waiting',
        groups: decision.groups,
        held: decision.held,
        settled: [...earlier, ...settled],
        round: decision.round,
      };
    }
    const byIndex = new Map([...earlier, ...settled, ...decision.failed].map((s) => [s.index, s.outcome]));
    const result = summarize(state, byIndex);
    const guard = (state as { guardResult?: unknown }).guardResult;
    return { ...result, rounds: decision.report, ...(guard ? { guard } : {}) };
  },
  reply: (result) => ({ statusCode: 200, body: result }),
});
