/**
 * Batches (DESIGN.md 3.3, a contract): the input an operator types in the console or POSTs to /v1/batches, what
 * Prepare makes of it for the state machine, and what Summarize makes of the results. Pure: the S3 and Lambda
 * I/O is in `functions/batch-prepare` and `functions/batch-summarize`.
 *
 * The inline path carries items in the execution's state (Step Functions caps state at 256 KB, so at most
 * INLINE_LIMIT items); the manifest path reads a JSONL manifest from S3 and writes its results there.
 */
import { createHash } from 'node:crypto';
import * as z from 'zod/mini';
import { type InputIssue, InvalidInputError, RETRYABLE_ERROR_NAME } from '#shared/core/errors.ts';
import type { StartedBy } from '#shared/core/execution-starts.ts';
import { toInputIssues } from '#shared/core/issues.ts';
import { type AucoItem, BatchItem, text, Uuid } from '#shared/core/items.ts';
import {
  countOutcomes,
  type Failure,
  type Operation,
  type Outcome,
  type OutcomeKind,
  PROVIDERS,
  type Provider,
} from '#shared/core/outcome.ts';
import { redact } from '#shared/observability/log.ts';
import { CREDIT_APPLICATION_STATUSES } from '#shared/providers/mycreditapp/adapter.ts';

/** How long transient failures are retried in rounds by default: 24 h after the start (DESIGN.md 3.3). */
export const DEFAULT_DEADLINE_MS = 24 * 3_600_000;
/** The latest deadline a batch may name, after its start (the state machine's timeout is an hour longer). */
export const MAX_DEADLINE_MS = 7 * 24 * 3_600_000;

/** Items an inline batch may hold: a round's results (a failed item carries its task and its error) and the outcomes
 * settled so far must fit the 256 KB Step Functions state; 500 items all failing measured 494 KB, 150 stay under
 * 200 KB. Larger: a manifest (POST /v1/batches writes one itself). */
export const INLINE_LIMIT = 150;
/** Items a manifest may hold (one execution; each provider's Distributed Map takes them in batches). */
export const MANIFEST_LIMIT = 100_000;
/** Statuses in which the in-flight work is still wanted: an approved or finalized application keeps it. */
export const DEFAULT_SKIP_IF_STATUS_IN = ['approved', 'finalized'] as const;

const OPERATION_OF: Record<Provider, Operation> = {
  mycreditapp: 'cancel-document-request',
  auco: 'cancel-signing-processes',
  truework: 'cancel-verification-order',
  gocardless: 'cancel-billing-request',
};

export const Guard = z.strictObject({
  creditApplicationId: Uuid,
  /** Skip the whole batch when the application's status is one of these (default: approved, finalized). */
  skipIfStatusIn: z.optional(
    z.array(
      z.enum(CREDIT_APPLICATION_STATUSES, {
        error: `must be mycreditapp credit application statuses (${CREDIT_APPLICATION_STATUSES.join(', ')})`,
      }),
    ),
  ),
  requesterOrganizationId: z.optional(Uuid),
  targetOrganizationId: z.optional(Uuid),
});
export type Guard = z.infer<typeof Guard>;

/**
 * The organization ids a guard's lookup needs: mycreditapp requires both headers on every call (PROVIDERS.md 1.1).
 * Each defaults to the mycreditapp secret's `organizationId`; with neither, the request is refused (400) before
 * anything starts, naming the fields, instead of an execution that fails its guard after starting.
 */
export function guardOrganizationIssues(
  ids: { requesterOrganizationId?: string | undefined; targetOrganizationId?: string | undefined },
  secretOrganizationId: string | undefined,
  where: string,
): InputIssue[] {
  if (secretOrganizationId) return [];
  return (['requesterOrganizationId', 'targetOrganizationId'] as const)
    .filter((name) => !ids[name])
    .map((name) => ({
      path: `${where}${name}`,
      message:
        'is required for the guard: mycreditapp needs both organization headers, and the mycreditapp secret has no organizationId to default to',
    }));
}

export const ManifestLocation = z.strictObject({
  bucket: z.string().check(z.regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name')),
  key: z.string().check(z.minLength(1), z.maxLength(1024)),
});
export type ManifestLocation = z.infer<typeof ManifestLocation>;

export const BatchRequest = z
  .strictObject({
    reason: z
      .string()
      .check(z.trim(), z.minLength(1, 'must say why (it is recorded, and sent to Auco signers)'), z.maxLength(1000)),
    requestedBy: z.optional(text(320)),
    guard: z.optional(Guard),
    /** Ties every outcome to a credit application in the audit ledger (defaults to the guard's). */
    creditApplicationId: z.optional(Uuid),
    items: z.optional(z.array(z.unknown()).check(z.minLength(1, 'must hold at least one item'))),
    manifest: z.optional(ManifestLocation),
    /** Until when transient failures are retried in rounds (default 24 h after the start; at most 7 days). */
    deadline: z.optional(z.iso.datetime({ offset: true, error: 'must be an ISO 8601 time with a timezone' })),
  })
  .check(
    z.refine((b) => (b.items === undefined) !== (b.manifest === undefined), {
      message: 'give either items (an inline batch) or manifest: {bucket, key} (a JSONL file in S3), not both',
      path: ['items'],
    }),
  );
export type BatchRequest = z.infer<typeof BatchRequest>;

/** A task of the state machine: one item (or a chunk of Auco codes), its place in the input, its key. */
export interface PreparedTask {
  item: Record<string, unknown> & { provider: Provider };
  /** Input position of a single item. */
  index?: number;
  /** Input positions of an Auco chunk's codes, in the order of `item.codes`. */
  indexes?: number[];
  /** Stable for this execution and this item: a retried state reuses it, so nothing is cancelled twice. */
  idempotencyKey: string;
}

export interface BatchContext {
  reason: string;
  requestedBy?: string;
  creditApplicationId?: string;
  executionId: string;
  /** What started the execution (Prepare, from shared/core/execution-starts.ts): the ledger's `caller` of every task. */
  startedBy?: StartedBy;
}

export interface Prepared {
  mode: 'inline' | 'manifest';
  batch: BatchContext;
  /** ISO time until which transient failures are retried in rounds. */
  deadline: string;
  guard?: Guard & { skipIfStatusIn: string[] };
  total: number;
  unique: number;
  /** [index, index of the first occurrence] for every duplicate removed. */
  duplicates: [number, number][];
  groups: Record<Provider, PreparedTask[]>;
}

/** What makes two items the same cancellation. */
export function identity(item: BatchItem): string {
  switch (item.provider) {
    case 'mycreditapp':
      return `mycreditapp:${item.orgId}/${item.requestId}`;
    case 'auco':
      return `auco:${item.code}`;
    case 'truework':
      return `truework:${item.orderId}`;
    case 'gocardless':
      return `gocardless:${item.billingRequestId}`;
  }
}

export function targetOf(item: BatchItem | PreparedTask['item']): Record<string, string> {
  const i = item as Record<string, string>;
  switch (item.provider) {
    case 'mycreditapp':
      return { orgId: i.orgId ?? '', requestId: i.requestId ?? '' };
    case 'auco':
      return { code: i.code ?? '' };
    case 'truework':
      return { orderId: i.orderId ?? '' };
    case 'gocardless':
      return { billingRequestId: i.billingRequestId ?? '' };
  }
}

/** The batch's deadline: its own (never more than MAX_DEADLINE_MS after the start), else 24 h after the start. */
export function batchDeadline(request: Pick<BatchRequest, 'deadline'>, startedAt: number): string {
  if (!request.deadline) return new Date(startedAt + DEFAULT_DEADLINE_MS).toISOString();
  const at = Date.parse(request.deadline);
  if (at > startedAt + MAX_DEADLINE_MS)
    throw new InvalidInputError([
      { path: 'deadline', message: `must be at most ${MAX_DEADLINE_MS / 86_400_000} days after the start` },
    ]);
  return new Date(at).toISOString();
}

const keyFor = (executionId: string, what: string) =>
  `batch-${createHash('sha256').update(`${executionId}\n${what}`).digest('hex').slice(0, 40)}`;
const isEmail = (s: string | undefined) => s !== undefined && z.safeParse(z.email(), s).success;

/** Validates the batch fields alone (not the items): every problem listed. */
export function parseBatchFields(input: unknown): BatchRequest {
  const parsed = z.safeParse(BatchRequest, input);
  if (!parsed.success) throw new InvalidInputError(toInputIssues(parsed.error, input), 'Invalid batch');
  return parsed.data;
}

/**
 * Validates the batch fields and every item, listing every problem by index and field at once.
 * `source` names the items in messages ("items" inline, "line" in a manifest: `line 17` is items[16]).
 */
export function validateBatch(
  input: unknown,
  rawItems?: unknown[],
  source: 'items' | 'manifest' = 'items',
  inlineLimit = INLINE_LIMIT,
): { request: BatchRequest; items: BatchItem[] } {
  const parsed = z.safeParse(BatchRequest, input);
  const issues: InputIssue[] = parsed.success ? [] : toInputIssues(parsed.error, input);
  // Items are checked even when the batch fields are not, so one answer lists every problem.
  const rawList = (input as { items?: unknown } | null)?.items;
  const list = rawItems ?? (Array.isArray(rawList) ? rawList : []);
  const requestedBy = parsed.success ? parsed.data.requestedBy : undefined;
  const items: BatchItem[] = [];
  // Counted before the items are validated: a list over the limit is refused as such, at no cost per item.
  if (source === 'items' && list.length > inlineLimit) {
    issues.push({
      path: 'items',
      message: `an inline batch holds at most ${inlineLimit} items; put larger batches in a JSONL manifest in S3 and pass manifest: {bucket, key}`,
    });
    throw new InvalidInputError(issues, 'Invalid batch');
  }
  if (source === 'manifest' && list.length > MANIFEST_LIMIT) {
    issues.push({ path: 'manifest', message: `a manifest holds at most ${MANIFEST_LIMIT} items` });
    throw new InvalidInputError(issues, 'Invalid batch');
  }
  list.forEach((raw, i) => {
    const where = source === 'items' ? `items[${i}]` : `line ${i + 1}`;
    const item = z.safeParse(BatchItem, raw);
    if (!item.success) {
      issues.push(...toInputIssues(item.error, raw, where));
      return;
    }
    if (item.data.provider === 'auco' && !item.data.email && !isEmail(requestedBy)) {
      issues.push({
        path: `${where}.email`,
        message: 'is required for Auco when requestedBy is not an email address (Auco records who cancelled)',
      });
    }
    items.push(item.data);
  });
  if (parsed.success && parsed.data.deadline && Date.parse(parsed.data.deadline) > Date.now() + MAX_DEADLINE_MS)
    issues.push({ path: 'deadline', message: `must be at most ${MAX_DEADLINE_MS / 86_400_000} days ahead` });
  if (source === 'manifest' && list.length === 0)
    issues.push({ path: 'manifest', message: 'the manifest holds no items' });
  if (issues.length || !parsed.success) throw new InvalidInputError(issues, 'Invalid batch');
  return { request: parsed.data, items };
}

/** Parses a JSONL manifest: one item per line, blank lines ignored. A line that is not JSON is an issue. */
export function parseManifest(text: string): { items: unknown[]; issues: InputIssue[] } {
  const items: unknown[] = [];
  const issues: InputIssue[] = [];
  const lines = text.split('\n');
  // Counted before any line is parsed: a manifest over the limit is refused as such, at no cost per line.
  if (lines.filter((line) => line.trim()).length > MANIFEST_LIMIT)
    return { items, issues: [{ path: 'manifest', message: `a manifest holds at most ${MANIFEST_LIMIT} items` }] };
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    try {
      items.push(JSON.parse(line));
    } catch {
      issues.push({ path: `line ${i + 1}`, message: 'is not valid JSON' });
      items.push(undefined);
    }
  });
  return { items, issues };
}

/**
 * Prepares a validated batch for the state machine: duplicates removed (the first occurrence wins), Auco codes
 * chunked per (message, email) to at most `aucoChunk` per call, every task given its idempotency key.
 */
export function prepareBatch(
  request: BatchRequest,
  items: BatchItem[],
  executionId: string,
  mode: Prepared['mode'],
  aucoChunk: number,
  startedAt: number = Date.now(),
): Prepared {
  const deadline = batchDeadline(request, startedAt);
  const creditApplicationId = request.creditApplicationId ?? request.guard?.creditApplicationId;
  const batch: BatchContext = {
    reason: request.reason,
    ...(request.requestedBy ? { requestedBy: request.requestedBy } : {}),
    ...(creditApplicationId ? { creditApplicationId } : {}),
    executionId,
  };
  const groups: Record<Provider, PreparedTask[]> = { mycreditapp: [], auco: [], truework: [], gocardless: [] };
  const seen = new Map<string, number>();
  const duplicates: [number, number][] = [];
  const aucoGroups = new Map<string, { message: string; email: string; codes: string[]; indexes: number[] }>();

  items.forEach((item, index) => {
    const id = identity(item);
    const first = seen.get(id);
    if (first !== undefined) {
      duplicates.push([index, first]);
      return;
    }
    seen.set(id, index);
    if (item.provider === 'auco') {
      const auco = item as AucoItem;
      const message = auco.message ?? request.reason;
      const email = auco.email ?? request.requestedBy ?? '';
      const key = `${message}\n${email}`;
      const group = aucoGroups.get(key) ?? { message, email, codes: [], indexes: [] };
      group.codes.push(auco.code);
      group.indexes.push(index);
      aucoGroups.set(key, group);
      return;
    }
    groups[item.provider].push({ item, index, idempotencyKey: keyFor(executionId, id) });
  });

  for (const { message, email, codes, indexes } of aucoGroups.values()) {
    for (let i = 0; i < codes.length; i += aucoChunk) {
      const chunkCodes = codes.slice(i, i + aucoChunk);
      groups.auco.push({
        item: { provider: 'auco', codes: chunkCodes, message, email },
        indexes: indexes.slice(i, i + aucoChunk),
        idempotencyKey: keyFor(executionId, `auco:${chunkCodes.join(',')}`),
      });
    }
  }
  return {
    mode,
    batch,
    deadline,
    ...(request.guard
      ? { guard: { ...request.guard, skipIfStatusIn: request.guard.skipIfStatusIn ?? [...DEFAULT_SKIP_IF_STATUS_IN] } }
      : {}),
    total: items.length,
    unique: seen.size,
    duplicates,
    groups,
  };
}

// ---- Summarize ----

/** What one iteration of a provider map gives back: a task result, or the input plus the error it was caught with. */
export type IterationResult =
  | { index: number; outcome: Outcome }
  | { indexes: number[]; outcomes: Outcome[] }
  | (PreparedTask & { error: { Error: string; Cause?: string } });

export interface ItemResult extends Outcome {
  index: number;
  /** Set on a duplicate: the index of the first occurrence, whose outcome it shares. */
  duplicateOf?: number;
}

export interface BatchSummary {
  total: number;
  unique: number;
  duplicates: number;
  /** Items that ended without an outcome: always 0 unless something is badly wrong (then the batch has failures). */
  lost: number;
  byProvider: Partial<Record<Provider, Record<OutcomeKind, number>>>;
  byOutcome: Record<OutcomeKind, number>;
}

export interface BatchResult {
  status: 'completed' | 'completed_with_failures';
  summary: BatchSummary;
  results: ItemResult[];
  /** Rounds run, the deadline, and why items still failing were given up (shared/batch/batch.ts, Rounds). */
  rounds?: RoundsReport;
}

/**
 * The message of a caught error: Step Functions gives a Lambda error's Cause as the JSON
 * `{"errorType", "errorMessage", "trace"}`; other errors give plain text.
 */
export function causeMessage(cause: string | undefined): string {
  if (!cause) return '';
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: unknown };
    if (typeof parsed?.errorMessage === 'string') return parsed.errorMessage;
  } catch {
    // plain text
  }
  return cause;
}

/** The failure a caught error stands for: ours by name, a task timeout as `timeout`, anything else `transient`. */
const FAILURE_OF_ERROR: Record<string, Failure> = {
  ...Object.fromEntries(Object.entries(RETRYABLE_ERROR_NAME).map(([failure, name]) => [name, failure])),
  'States.Timeout': 'timeout',
  'Lambda.Unknown': 'timeout',
  'Lambda.TooManyRequestsException': 'rate_limited',
};

/** The outcomes a caught task stands for: the ones its `Provider.*` error carries, else `failed` for each item. */
export function caughtOutcomes(
  task: PreparedTask & { error: { Error: string; Cause?: string } },
): { index: number; outcome: Outcome }[] {
  const message = causeMessage(task.error.Cause);
  let carried: Outcome[] | undefined;
  if (task.error.Error.startsWith('Provider.')) {
    try {
      const parsed = JSON.parse(message) as Outcome | Outcome[];
      carried = Array.isArray(parsed) ? parsed : [parsed];
      // Outcomes only: a message that merely parses as JSON (a quoted string, a number) carries none.
      if (!carried.every((o) => typeof o?.outcome === 'string')) carried = undefined;
    } catch {
      carried = undefined;
    }
  }
  const provider = task.item.provider;
  const failure = FAILURE_OF_ERROR[task.error.Error] ?? 'transient';
  const failed = (target: Record<string, string>): Outcome => ({
    provider,
    operation: OPERATION_OF[provider],
    target,
    outcome: 'failed',
    failure,
    attempts: 0,
    durationMs: 0,
    // Scrubbed before the cut, so the cut cannot keep a credential's prefix.
    message: redact(`${task.error.Error}: ${message}`).slice(0, 1000),
  });
  if (task.indexes) {
    const codes = (task.item.codes as string[] | undefined) ?? [];
    return task.indexes.map((index, i) => ({ index, outcome: carried?.[i] ?? failed({ code: codes[i] ?? '' }) }));
  }
  return [{ index: task.index ?? -1, outcome: carried?.[0] ?? failed(targetOf(task.item)) }];
}

/** Flattens iteration results into one outcome per input index. */
export function collectOutcomes(iterations: readonly IterationResult[]): Map<number, Outcome> {
  const byIndex = new Map<number, Outcome>();
  for (const it of iterations) {
    if ('error' in it) for (const { index, outcome } of caughtOutcomes(it)) byIndex.set(index, outcome);
    else if ('outcomes' in it) {
      for (const [i, index] of it.indexes.entries()) {
        const outcome = it.outcomes[i];
        if (outcome) byIndex.set(index, outcome);
      }
    } else byIndex.set(it.index, it.outcome);
  }
  return byIndex;
}

/** Outcomes in input order, duplicates sharing their first occurrence's outcome, and the counts. */
export function summarize(
  prepared: Pick<Prepared, 'total' | 'unique' | 'duplicates'>,
  byIndex: Map<number, Outcome>,
): BatchResult {
  const duplicateOf = new Map(prepared.duplicates);
  const results: ItemResult[] = [];
  const unique: Outcome[] = [];
  for (let index = 0; index < prepared.total; index++) {
    const first = duplicateOf.get(index);
    const outcome = byIndex.get(first ?? index);
    if (!outcome) continue;
    results.push({ index, ...(first !== undefined ? { duplicateOf: first } : {}), ...outcome });
    if (first === undefined) unique.push(outcome);
  }
  const byProvider: BatchSummary['byProvider'] = {};
  for (const provider of PROVIDERS) {
    const mine = unique.filter((o) => o.provider === provider);
    if (mine.length) byProvider[provider] = countOutcomes(mine);
  }
  const byOutcome = countOutcomes(unique);
  const lost = prepared.unique - unique.length;
  const failures = byOutcome.failed + byOutcome.rejected + lost;
  return {
    status: failures === 0 ? 'completed' : 'completed_with_failures',
    summary: {
      total: prepared.total,
      unique: prepared.unique,
      duplicates: prepared.duplicates.length,
      lost,
      byProvider,
      byOutcome,
    },
    results,
  };
}

// ---- Rounds ----

/**
 * Rounds: the items a round leaves `failed` for a transient reason are tried again after a Wait, with the same
 * task (and so the same idempotency key), until the batch's deadline; only then are they reported `failed`.
 * Final outcomes are final at once. A provider whose circuit is open (shared/core/circuit.ts) gets one item per round,
 * its probe; the others wait for a round in which the circuit is closed, which comes after 1 s once it has closed.
 *
 * The waits grow (30 s, doubling, at most 5 minutes) and never pass the deadline. The execution's history must stay
 * under Standard workflows' 25,000 events: a round costs about ROUNDS.eventsPerRound events, plus
 * ROUNDS.eventsPerInlineTask per item an inline round runs (a manifest round's items run in child executions), so
 * a deadline farther than the rounds left at 5 minutes each spaces the rounds out evenly until it (a 24 h deadline
 * fits at 5 minutes; 7 days waits about half an hour between rounds). With no room for another round, the items
 * still waiting are given up, saying so.
 */
export const ROUNDS = {
  firstWaitSeconds: 30,
  factor: 2,
  maxWaitSeconds: 300,
  /** 25,000 events, less a margin for the start and the end. */
  historyEvents: 24_000,
  /** Summarize, the round's Choice and Wait, the mode's Choice, the Parallel and its four maps, probes. */
  eventsPerRound: 60,
  /** One inline item: its Map iteration, the task, a retry or two, a catch. */
  eventsPerInlineTask: 12,
} as const;

/** Caught errors that leave an item for the next round: the provider's transient failures, an open circuit, and
 * Lambda's own throttling and service errors. Anything else (a crash) ends the item `failed` at once. */
export const ROUND_RETRYABLE_ERRORS: ReadonlySet<string> = new Set([
  ...Object.values(RETRYABLE_ERROR_NAME),
  'Provider.CircuitOpen',
  'Lambda.TooManyRequestsException',
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.ClientExecutionTimeoutException',
  'Lambda.Unknown',
  'States.Timeout',
]);

type Caught = PreparedTask & { error: { Error: string; Cause?: string } };
type Settled = { index: number; outcome: Outcome };

/** A round's iterations: final outcomes, tasks to try again (with their latest outcomes), and crashes. */
export function splitRound(
  iterations: readonly IterationResult[],
  executionId: string,
): { settled: Settled[]; retry: { task: PreparedTask; last: Settled[] }[]; crashes: Caught[] } {
  const settled: Settled[] = [];
  const retry: { task: PreparedTask; last: Settled[] }[] = [];
  const crashes: Caught[] = [];
  for (const it of iterations) {
    if (!('error' in it)) {
      for (const [index, outcome] of collectOutcomes([it])) settled.push({ index, outcome });
      continue;
    }
    const outcomes = caughtOutcomes(it);
    if (!ROUND_RETRYABLE_ERRORS.has(it.error.Error)) {
      settled.push(...outcomes);
      crashes.push(it);
      continue;
    }
    const failed = outcomes.filter((o) => o.outcome.outcome === 'failed');
    settled.push(...outcomes.filter((o) => o.outcome.outcome !== 'failed'));
    if (!failed.length) continue;
    const { error: _e, ...task } = it;
    if (!task.indexes || failed.length === outcomes.length) {
      retry.push({ task, last: failed });
      continue;
    }
    // An Auco chunk partly settled: only its failed codes go again, as a chunk of their own with its own key.
    const codes = failed.map((o) => String(o.outcome.target.code ?? ''));
    retry.push({
      task: {
        item: { ...task.item, codes },
        indexes: failed.map((o) => o.index),
        idempotencyKey: keyFor(executionId, `auco:${codes.join(',')}`),
      },
      last: failed,
    });
  }
  return { settled, retry, crashes };
}

export interface RoundInfo {
  /** Rounds run so far. */
  number: number;
  /** History events the rounds have used so far (estimated, see ROUNDS). */
  events: number;
  /** Items (Auco codes counted one by one) still without a final outcome. */
  pending: number;
  /** Providers the batch waits for, with how many items, and their circuit when it is open. */
  waitingFor: { provider: Provider; items: number; circuit?: 'open'; since?: string }[];
  waitSeconds: number;
  nextAttemptAt: string;
  /** The latest failure per provider: what the items still waiting would say. */
  lastFailure: Partial<Record<Provider, string>>;
}

export interface RoundsReport {
  count: number;
  deadline: string;
  /** Why the rounds ended: everything settled, the deadline passed, or the history had no room for another. */
  ended: 'settled' | 'deadline' | 'history';
  /** Said when items were given up: how many, and why. */
  message?: string;
}

/** An open circuit as Summarize reads it. */
export type OpenCircuits = Partial<Record<Provider, { since?: number }>>;

export type RoundDecision =
  | {
      kind: 'wait';
      groups: Record<Provider, PreparedTask[]>;
      held: PreparedTask[];
      round: RoundInfo;
    }
  | { kind: 'final'; failed: Settled[]; report: RoundsReport };

const itemsOf = (t: PreparedTask) => t.indexes?.length ?? 1;

/** `failed` outcomes for a task given up, with the reason. */
function givenUp(task: PreparedTask, last: Settled[] | undefined, why: string, fallback: string): Settled[] {
  const lastByIndex = new Map((last ?? []).map((s) => [s.index, s.outcome]));
  const indexes = task.indexes ?? [task.index ?? -1];
  const codes = (task.item.codes as string[] | undefined) ?? [];
  return indexes.map((index, i) => {
    const previous = lastByIndex.get(index);
    const target = task.indexes ? { code: codes[i] ?? '' } : targetOf(task.item);
    const outcome: Outcome = previous ?? {
      provider: task.item.provider,
      operation: OPERATION_OF[task.item.provider],
      target,
      outcome: 'failed',
      failure: 'transient',
      attempts: 0,
      durationMs: 0,
      message: fallback,
    };
    return { index, outcome: { ...outcome, message: `${outcome.message ?? ''} (${why})`.trim().slice(0, 1000) } };
  });
}

/**
 * After a round: the next one (what it runs, what it holds back, how long it waits), or the end, with the items
 * still failing given up as `failed` and the reason. Pure: `now` and the open circuits come from the caller.
 */
export function planNextRound(input: {
  mode: Prepared['mode'];
  deadline: string;
  now: number;
  /** The round just run: its number (1 for the first) and the tasks it ran. */
  round: { number: number; eventsBefore: number; ran: number };
  retry: { task: PreparedTask; last: Settled[] }[];
  held: PreparedTask[];
  open: OpenCircuits;
  lastFailure: Partial<Record<Provider, string>>;
}): RoundDecision {
  const { mode, deadline, now, round, retry, held, open } = input;
  const inline = mode === 'inline';
  const events = round.eventsBefore + ROUNDS.eventsPerRound + (inline ? round.ran * ROUNDS.eventsPerInlineTask : 0);
  const lastFailure = { ...input.lastFailure };
  for (const { task, last } of retry) {
    const message = last.at(-1)?.outcome.message;
    if (message) lastFailure[task.item.provider] = message;
  }
  const tasks = [...retry.map((r) => r.task), ...held];
  if (!tasks.length) return { kind: 'final', failed: [], report: { count: round.number, deadline, ended: 'settled' } };

  const deadlineAt = Date.parse(deadline);
  const left = (deadlineAt - now) / 1000;
  // Rounds the history can still hold, keeping room for one round that runs every item still pending.
  const reserve = inline ? tasks.length * ROUNDS.eventsPerInlineTask : 0;
  const roundsLeft = Math.floor((ROUNDS.historyEvents - events - reserve) / ROUNDS.eventsPerRound);
  if (left <= 0 || roundsLeft < 1) {
    const ended = left <= 0 ? 'deadline' : 'history';
    const why =
      ended === 'deadline'
        ? `still failing when the batch's deadline ${deadline} passed, after ${round.number} round(s)`
        : `given up after ${round.number} round(s): the execution's history has no room for another`;
    const lastOf = new Map(retry.map((r) => [r.task.idempotencyKey, r.last]));
    const failed = tasks.flatMap((t) =>
      givenUp(t, lastOf.get(t.idempotencyKey), why, lastFailure[t.item.provider] ?? 'not attempted again'),
    );
    const providers = [...new Set(tasks.map((t) => t.item.provider))];
    return {
      kind: 'final',
      failed,
      report: {
        count: round.number,
        deadline,
        ended,
        message: `${failed.length} item(s) of ${providers.join(', ')} ${why}`,
      },
    };
  }

  const groups: Record<Provider, PreparedTask[]> = { mycreditapp: [], auco: [], truework: [], gocardless: [] };
  const nextHeld: PreparedTask[] = [];
  for (const task of tasks) {
    const provider = task.item.provider;
    // An open circuit gets one task per round: the probe (the cancel function claims it, or refuses it unsent).
    if (open[provider] && groups[provider].length >= 1) nextHeld.push(task);
    else groups[provider].push(task);
  }
  const step = Math.min(ROUNDS.maxWaitSeconds, ROUNDS.firstWaitSeconds * ROUNDS.factor ** (round.number - 1));
  // Only a deadline too far for the rounds left at the longest step spaces them out further (a 7-day deadline).
  const floor = left > roundsLeft * ROUNDS.maxWaitSeconds ? left / roundsLeft : 0;
  // Items held back for a circuit that has closed since (a probe got an answer): the provider is back, drain now.
  const recovered = held.some((t) => !open[t.item.provider]);
  const waitSeconds = recovered ? 1 : Math.max(1, Math.ceil(Math.min(left, Math.max(step, floor))));
  const waitingFor = PROVIDERS.flatMap((provider) => {
    const mine = tasks.filter((t) => t.item.provider === provider);
    if (!mine.length) return [];
    const circuit = open[provider];
    return [
      {
        provider,
        items: mine.reduce((n, t) => n + itemsOf(t), 0),
        ...(circuit ? { circuit: 'open' as const } : {}),
        ...(circuit?.since ? { since: new Date(circuit.since).toISOString() } : {}),
      },
    ];
  });
  return {
    kind: 'wait',
    groups,
    held: nextHeld,
    round: {
      number: round.number,
      events,
      pending: tasks.reduce((n, t) => n + itemsOf(t), 0),
      waitingFor,
      waitSeconds,
      nextAttemptAt: new Date(now + waitSeconds * 1000).toISOString(),
      lastFailure,
    },
  };
}
