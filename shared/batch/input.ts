/**
 * A batch's input (DESIGN.md 3.3, a contract): what an operator types in the console or POSTs to /v1/batches, and
 * its validation, every problem listed at once. Pure: the S3 and Lambda I/O is in `functions/batch-prepare`.
 *
 * The inline path carries items in the execution's state (Step Functions caps state at 256 KB, so at most
 * INLINE_LIMIT items); the manifest path reads a JSONL manifest from S3 (parseManifest).
 */
import * as z from 'zod/mini';
import { type InputIssue, InvalidInputError } from '#shared/core/errors.ts';
import { toInputIssues } from '#shared/core/issues.ts';
import { text, Uuid } from '#shared/core/items.ts';
import { BatchItem, GUARD, providerModule, REASON_GOES_TO } from '#shared/providers/index.ts';

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

export const Guard = z.strictObject({
  creditApplicationId: Uuid,
  /** Skip the whole batch when the application's status is one of these (default: approved, finalized). */
  skipIfStatusIn: z.optional(
    z.array(
      z.enum(GUARD.statuses, {
        error: `must be ${GUARD.title} credit application statuses (${GUARD.statuses.join(', ')})`,
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
      message: `is required for the guard: ${GUARD.title} needs both organization headers, and the ${GUARD.title} secret has no organizationId to default to`,
    }));
}

export const ManifestLocation = z.strictObject({
  bucket: z.string().check(z.regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name')),
  key: z.string().check(z.minLength(1), z.maxLength(1024)),
});
export type ManifestLocation = z.infer<typeof ManifestLocation>;

/** Who reads a batch's reason: the record, and the providers' people it is sent to. */
const REASON_READERS = ['it is recorded', ...REASON_GOES_TO.map((who) => `sent to ${who}`)].join(', and ');

export const BatchRequest = z
  .strictObject({
    reason: z.string().check(z.trim(), z.minLength(1, `must say why (${REASON_READERS})`), z.maxLength(1000)),
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
    issues.push(...(providerModule(item.data.provider).checkItem?.(item.data, { requestedBy }, where) ?? []));
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
