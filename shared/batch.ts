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
import { type InputIssue, InvalidInputError, RETRYABLE_ERROR_NAME } from './errors.ts';
import type { StartedBy } from './execution-starts.ts';
import { toInputIssues } from './issues.ts';
import { type AucoItem, BatchItem, text, Uuid } from './items.ts';
import { redact } from './log.ts';
import {
  countOutcomes,
  type Failure,
  type Operation,
  type Outcome,
  type OutcomeKind,
  PROVIDERS,
  type Provider,
} from './outcome.ts';
import { CREDIT_APPLICATION_STATUSES } from './providers/mycreditapp.ts';

/** Items an inline batch may hold: their outcomes must fit the 256 KB Step Functions state. Larger: a manifest. */
export const INLINE_LIMIT = 500;
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
  /** What started the execution (Prepare, from shared/execution-starts.ts): the ledger's `caller` of every task. */
  startedBy?: StartedBy;
}

export interface Prepared {
  mode: 'inline' | 'manifest';
  batch: BatchContext;
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
): Prepared {
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
