/**
 * Lambda (Step Functions task): Summarize, after every round. Turns every provider map's results, caught failures
 * included, into final outcomes and items to try again (shared/batch/rounds.ts). While items wait and the
 * deadline has not passed, it answers `status: waiting` with the next round (its tasks, its wait); otherwise one
 * outcome per input item (in input order) and the counts per provider and outcome. Items whose Lambda crashed, and
 * items given up at the deadline, are recorded `failed` in the audit ledger here, since their own function could not.
 *
 * Called as GuardRound (`{guardRound: state}`), it decides for a batch whose guard could not read its credit
 * application (the provider down or busy, its retries spent): the next round's wait, for the guard to try again, or at
 * the deadline the end, every item `failed` and not attempted, saying why.
 *
 * The manifest path reads the Distributed Maps' ResultWriter output from S3 (children that failed or never ran
 * give `failed` outcomes for their items), keeps what rounds settle and hold back in S3 beside the batch's tasks,
 * and at the end writes `results.jsonl` and `summary.json` there.
 */
import * as z from 'zod/mini';
import { getText, putJsonl, putText } from '#shared/aws/s3.ts';
import { latestEvent } from '#shared/aws/step-functions.ts';
import type { PreparedTask } from '#shared/batch/prepare.ts';
import {
  notAttempted,
  type OpenCircuits,
  planGuardRound,
  planNextRound,
  type RoundDecision,
  type RoundInfo,
  splitRound,
  THROTTLED_ERROR,
} from '#shared/batch/rounds.ts';
import {
  type BatchResult,
  caughtMessage,
  caughtOutcomes,
  type IterationResult,
  summarize,
} from '#shared/batch/summarize.ts';
import { needs, resource } from '#shared/config.ts';
import { defaultDeps } from '#shared/core/cancel.ts';
import { executionCaller, type LedgerEntry, recordOrLog } from '#shared/core/ledger.ts';
import { type Outcome, PROVIDERS, type Provider } from '#shared/core/outcome.ts';
import { defineHandler } from '#shared/handler/middleware.ts';
import { log } from '#shared/observability/log.ts';
import { emitCircuitMetrics, emitGivenUpMetrics } from '#shared/observability/metrics.ts';
import { parseJson } from '#shared/providers/common.ts';

needs('BATCH_BUCKET', 'LEDGER_TABLE');

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
/** The state of a batch whose guard failed for a reason that passes, after its retries (GuardRound's payload). */
const GuardRound = z.object({
  guardRound: z.looseObject({
    mode: z.enum(['inline', 'manifest']),
    batch: z.looseObject({ executionId: z.string() }),
    deadline: z.string(),
    unique: z.number(),
    guard: z.looseObject({ creditApplicationId: z.string() }),
    guardError: z.looseObject({ Error: z.string(), Cause: z.optional(z.string()) }),
    round: Round,
    /** Inline: the prepared tasks by provider. */
    groups: z.optional(z.record(z.string(), z.array(z.unknown()))),
    /** Manifest: where Prepare wrote each provider's tasks. */
    manifests: z.optional(z.record(z.string(), z.looseObject({ bucket: z.string(), key: z.string() }))),
  }),
});
const Task = z.union([GuardRound, z.discriminatedUnion('mode', [Inline, Manifest])]);
type Input = z.infer<typeof Task>;
type GuardState = z.infer<typeof GuardRound>['guardRound'];

/** Every task of a batch whose guard never ran: the inline groups, or the manifests Prepare wrote. */
async function allTasks(state: GuardState): Promise<PreparedTask[]> {
  if (state.mode === 'inline') return Object.values(state.groups ?? {}).flat() as PreparedTask[];
  const files = Object.values(state.manifests ?? {});
  const texts = await Promise.all(files.map((m) => getText(m.bucket, m.key, 'prepared tasks')));
  return texts.flatMap((text) => jsonl<PreparedTask>(text));
}

/**
 * The execution's history so far: the number of its latest event (Step Functions numbers them from 1), so the rounds
 * count what the execution has really used of its 25,000 (shared/batch/rounds.ts). Unreadable (denied, throttled),
 * the rounds go by their estimate, as they did before they read it.
 */
async function historySoFar(executionArn: string): Promise<number | undefined> {
  try {
    return (await latestEvent(executionArn, false))?.id;
  } catch (error) {
    log.warn('execution history unreadable: the rounds go by their estimate', { error });
    return undefined;
  }
}

/**
 * GuardRound: the next round (the state again, `waiting`, with the `round` the Wait reads and GET /v1/batches shows),
 * or, at the deadline, the end: every item `failed`, not attempted, each saying why, recorded in the ledger and
 * counted for the GivenUp alarm, as items given up after their own rounds are.
 */
async function guardRound(state: GuardState): Promise<unknown> {
  const decision = planGuardRound({
    mode: state.mode,
    deadline: state.deadline,
    now: Date.now(),
    ...(state.round ? { round: state.round } : {}),
    items: state.unique,
    creditApplicationId: state.guard.creditApplicationId,
    failure: caughtMessage(state.guardError),
    throttled: state.guardError?.Error === THROTTLED_ERROR,
    history: await historySoFar(state.batch.executionId),
  });
  if (decision.kind === 'wait') {
    log.warn('batch guard could not read its credit application: waits for its next round', { round: decision.round });
    const { guardError: _e, ...rest } = state;
    return { ...rest, status: 'waiting', round: decision.round };
  }
  log.error('batch guard gave up at the deadline: nothing cancelled', { report: decision.report });
  const failed = notAttempted(await allTasks(state), decision.why, decision.lastFailure);
  await recordGivenUp(failed, state.batch);
  const final = { kind: 'final' as const, failed, report: decision.report };
  if (state.mode === 'manifest') {
    const manifest = state as unknown as Manifest;
    const base = manifest.prepared.key.replace(/\/prepared\.json$/, '');
    return writeResults(manifest, resource('BATCH_BUCKET'), base, final, []);
  }
  const inline = state as unknown as z.infer<typeof Inline>;
  const result = summarize(inline, new Map(failed.map((f) => [f.index, f.outcome])));
  return { ...result, rounds: final.report };
}

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

/** Items given up at the deadline, recorded in the ledger (their last attempts may not be there: a refused call
 * never ran) and counted for the GivenUp alarm. */
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
  emitGivenUpMetrics(failed.map((f) => f.outcome));
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
    round: {
      number: (round?.number ?? 0) + 1,
      eventsBefore: round?.events ?? 0,
      ran: iterations.length,
      history: await historySoFar(state.batch.executionId),
    },
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

/** Where a Distributed Map run's ResultWriter wrote its manifest (the map state's output), if it did. */
function resultWriterDetails(written: unknown): { Bucket: string; Key: string } | undefined {
  const details = (written as { ResultWriterDetails?: { Bucket?: string; Key?: string } } | null)?.ResultWriterDetails;
  return details?.Bucket && details.Key ? { Bucket: details.Bucket, Key: details.Key } : undefined;
}

/** The result files the run's manifest lists, by the status of the children in them (SUCCEEDED, FAILED, ...). */
async function resultFiles(details: { Bucket: string; Key: string }): Promise<[string, { Key: string }[]][]> {
  const manifest = jsonOr<{ ResultFiles?: Record<string, { Key: string }[]> }>(
    await getText(details.Bucket, details.Key, 'map run manifest'),
    {},
  );
  return Object.entries(manifest.ResultFiles ?? {});
}

/** One child execution's iterations: its output when it succeeded; else every item of its batch, failed with the
 * child's error (a child that failed or never ran). */
function childIterations(status: string, child: ChildResult): IterationResult[] {
  if (status === 'SUCCEEDED') return jsonOr<IterationResult[]>(child.Output, []);
  const batch = jsonOr<{ Items?: PreparedTask[] }>(child.Input, {});
  const error = {
    Error: child.Error ?? `Child.${status}`,
    Cause: child.Cause ?? `the child workflow ended ${status}`,
  };
  return (batch.Items ?? []).map((task) => ({ ...task, error }));
}

/** The iterations of one Distributed Map run, read from its ResultWriter manifest and the result files it lists. */
async function readMapRun(written: unknown): Promise<IterationResult[]> {
  const details = resultWriterDetails(written);
  if (!details) return [];
  const iterations: IterationResult[] = [];
  for (const [status, files] of await resultFiles(details)) {
    for (const file of files) {
      const children = jsonOr<ChildResult[]>(await getText(details.Bucket, file.Key, 'map run results'), []);
      for (const child of children) iterations.push(...childIterations(status, child));
    }
  }
  return iterations;
}

const jsonl = <T>(text: string | undefined): T[] =>
  (text ?? '')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as T);

type Manifest = z.infer<typeof Manifest>;
type SettledItem = { index: number; outcome: Outcome };

/** The tasks the last round held back (S3). */
async function readHeld(state: Manifest, bucket: string): Promise<PreparedTask[]> {
  return state.carried ? jsonl<PreparedTask>(await getText(bucket, state.carried.held, 'held tasks')) : [];
}

/** The outcomes earlier rounds settled, read once, at the end: each round keeps its own in
 * `rounds/<n>/settled.jsonl`, 1 to `rounds`. (An execution begun before this layout wrote everything settled so far
 * into each round's file: the same outcome then comes several times, and the results keep it once.) */
async function readSettled(bucket: string, base: string, rounds: number): Promise<SettledItem[]> {
  const keys = Array.from({ length: rounds }, (_, i) => `${base}/rounds/${i + 1}/settled.jsonl`);
  const settled: SettledItem[] = [];
  for (let i = 0; i < keys.length; i += 16) {
    const texts = await Promise.all(keys.slice(i, i + 16).map((key) => getText(bucket, key, 'settled outcomes')));
    for (const text of texts) settled.push(...jsonl<SettledItem>(text));
  }
  return settled;
}

/** The next round's tasks (one JSONL file per provider, for its Distributed Map), what it holds back, and what the
 * round just run settled, in S3: the state stays small, and each outcome is written once, however many rounds a
 * provider's outage takes. */
async function writeNextRound(
  state: Manifest,
  bucket: string,
  base: string,
  decision: Extract<RoundDecision, { kind: 'wait' }>,
  settled: SettledItem[],
): Promise<unknown> {
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
  await putJsonl(bucket, carried.settled, settled);
  await putJsonl(bucket, carried.held, decision.held);
  const { fanout: _f, manifests: _m, carried: _c, ...rest } = state as Manifest & { manifests?: unknown };
  return { ...rest, status: 'waiting', manifests, carried, round: decision.round };
}

/** The end: one outcome per input item in `results.jsonl`, the counts in `summary.json`, and where they are. */
async function writeResults(
  state: Manifest,
  bucket: string,
  base: string,
  decision: Extract<RoundDecision, { kind: 'final' }>,
  all: SettledItem[],
): Promise<unknown> {
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

/** A manifest round: read the maps' result files and what earlier rounds carried, decide, write what comes next. */
async function summarizeManifest(state: Manifest): Promise<unknown> {
  const bucket = resource('BATCH_BUCKET');
  const base = state.prepared.key.replace(/\/prepared\.json$/, '');
  const iterations = (await Promise.all(state.fanout.map(readMapRun))).flat();
  const held = await readHeld(state, bucket);
  const { settled, decision } = await afterRound(state, state.round as RoundInfo | undefined, iterations, held);
  if (decision.kind === 'wait') return writeNextRound(state, bucket, base, decision, settled);
  const earlier = await readSettled(bucket, base, state.round?.number ?? 0);
  return writeResults(state, bucket, base, decision, [...earlier, ...settled]);
}

export const handler = defineHandler<Input, unknown>({
  name: 'batch-summarize',
  task: { schema: Task, toInput: (p: Input) => p },
  run: async (state) => {
    if ('guardRound' in state) return guardRound((state as z.infer<typeof GuardRound>).guardRound);
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
