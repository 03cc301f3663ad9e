/**
 * Lambda: POST /v1/batches starts a batch (a Step Functions execution) and returns its id; GET /v1/batches/{batchId}
 * returns its status, summary and results. A POST with more items than an inline batch holds is written to S3 as
 * a JSONL manifest first, so callers need not know the limit.
 */
import { createHash, randomUUID } from 'node:crypto';
import { DescribeExecutionCommand, StartExecutionCommand } from '@aws-sdk/client-sfn';
import * as z from 'zod/mini';
import { putJsonl } from '#shared/aws/s3.ts';
import { latestEvent, stepFunctions as sfn } from '#shared/aws/step-functions.ts';
import { guardOrganizationIssues, INLINE_LIMIT, validateBatch } from '#shared/batch/input.ts';
import { needs, resource } from '#shared/config.ts';
import { defaultDeps } from '#shared/core/cancel.ts';
import { type InputIssue, InvalidInputError } from '#shared/core/errors.ts';
import { recordApiStart } from '#shared/core/execution-starts.ts';
import { IdempotencyHeaders } from '#shared/handler/cancel-handler.ts';
import { defineHandler, type Reply } from '#shared/handler/middleware.ts';
import { GUARD } from '#shared/providers/index.ts';

needs('STATE_MACHINE_ARN', 'BATCH_BUCKET', 'IDEMPOTENCY_TABLE', 'LEDGER_TABLE');

/** Items one POST may carry (more than INLINE_LIMIT go through a manifest written for the caller). */
export const API_ITEM_LIMIT = 10_000;

export const Post = z.object({ headers: IdempotencyHeaders });
export const Get = z.object({
  path: z.object({
    batchId: z.string().check(z.regex(/^[A-Za-z0-9_-]{1,80}$/, 'must be a batch id as POST /v1/batches returned it')),
  }),
});
/** GET validates its path, POST its headers (the body is validated as a batch, every item listed). */
const schemaFor = (request: { method: string }) => (request.method === 'GET' ? Get : Post);

type Input =
  | { kind: 'start'; body: unknown; idempotencyKey?: string | undefined; principal?: string | undefined }
  | { kind: 'read'; batchId: string };

/** The execution's name is the batch id: derived from the Idempotency-Key (and the caller's principal, whose key it
 * is) when there is one, so a retried POST names the same execution and Step Functions starts it once. */
function executionName(idempotencyKey: string | undefined, principal: string | undefined): string {
  return idempotencyKey
    ? `k-${createHash('sha256')
        .update(`${principal ?? 'anonymous'}\n${idempotencyKey}`)
        .digest('hex')
        .slice(0, 40)}`
    : randomUUID();
}

/** A manifest names an S3 object: only the console (or this function, for a large batch) may start one. An API
 * caller naming one could re-run any stored manifest, past the API's item limit. */
const MANIFEST_REFUSED: InputIssue = {
  path: 'manifest',
  message: `is not accepted by the API: send the items themselves (up to ${API_ITEM_LIMIT}; a batch over ${INLINE_LIMIT} is written to S3 for you); a manifest already in S3 is started from the Step Functions console`,
};

function validateApiBatch(body: unknown): ReturnType<typeof validateBatch> {
  const namesManifest = typeof body === 'object' && body !== null && 'manifest' in body;
  // Counted before anything is validated: a list over the limit is refused at no cost per item.
  const items = (body as { items?: unknown } | null)?.items;
  if (Array.isArray(items) && items.length > API_ITEM_LIMIT) {
    throw new InvalidInputError(
      [
        ...(namesManifest ? [MANIFEST_REFUSED] : []),
        {
          path: 'items',
          message: `holds ${items.length} items; POST /v1/batches takes at most ${API_ITEM_LIMIT}: split it into several batches`,
        },
      ],
      'Invalid batch',
    );
  }
  try {
    const valid = validateBatch(body, undefined, 'items', API_ITEM_LIMIT);
    if (namesManifest) throw new InvalidInputError([MANIFEST_REFUSED], 'Invalid batch');
    return valid;
  } catch (error) {
    if (!namesManifest || !(error instanceof InvalidInputError) || error.issues.includes(MANIFEST_REFUSED)) throw error;
    throw new InvalidInputError([MANIFEST_REFUSED, ...error.issues], 'Invalid batch', error.issueCount + 1);
  }
}

async function start(body: unknown, idempotencyKey: string | undefined, principal: string | undefined): Promise<Reply> {
  const { request, items } = validateApiBatch(body);
  if (request.guard) {
    const issues = guardOrganizationIssues(
      request.guard,
      await GUARD.organizationId(defaultDeps().secrets),
      'body.guard.',
    );
    if (issues.length) throw new InvalidInputError(issues);
  }
  const stateMachineArn = resource('STATE_MACHINE_ARN');
  const name = executionName(idempotencyKey, principal);
  let input: unknown = request;
  if (items.length > INLINE_LIMIT) {
    const bucket = resource('BATCH_BUCKET');
    const key = `requests/${name}.jsonl`;
    await putJsonl(bucket, key, items);
    const { items: _items, ...fields } = request;
    input = { ...fields, manifest: { bucket, key } };
  }
  // Said before starting it: Prepare reads who started the execution from this record (the audit ledger's caller).
  await recordApiStart(name, principal);
  try {
    const started = await sfn().send(
      new StartExecutionCommand({ stateMachineArn, name, input: JSON.stringify(input) }),
    );
    return {
      statusCode: 202,
      body: {
        batchId: name,
        executionArn: started.executionArn,
        status: 'running',
        startedAt: started.startDate?.toISOString(),
        items: items.length,
        links: { self: `/v1/batches/${name}` },
      },
      headers: { location: `/v1/batches/${name}` },
    };
  } catch (error) {
    if ((error as { name?: string }).name === 'ExecutionAlreadyExists') {
      return {
        statusCode: 409,
        body: {
          error: 'conflict',
          message: `A different batch was already started with this Idempotency-Key (batch ${name})`,
          batchId: name,
        },
      };
    }
    throw error;
  }
}

const STATUS: Record<string, string> = {
  RUNNING: 'running',
  PENDING_REDRIVE: 'running',
  FAILED: 'failed',
  TIMED_OUT: 'failed',
  ABORTED: 'aborted',
};

/**
 * A running batch between rounds (shared/batch/rounds.ts): its latest event is the round's Wait, whose input says what it
 * waits for. Anything else, or a history that cannot be read, is `running`.
 */
async function waiting(executionArn: string): Promise<Record<string, unknown> | undefined> {
  const latest = await latestEvent(executionArn, true);
  if (latest?.type !== 'WaitStateEntered' || !latest.stateEnteredEventDetails?.input) return undefined;
  const state = JSON.parse(latest.stateEnteredEventDetails.input) as {
    deadline?: string;
    round?: { number?: number; pending?: number; waitingFor?: unknown; nextAttemptAt?: string; lastFailure?: unknown };
  };
  if (!state.round) return undefined;
  return {
    round: state.round.number,
    pending: state.round.pending,
    waitingFor: state.round.waitingFor,
    nextAttemptAt: state.round.nextAttemptAt,
    deadline: state.deadline,
    lastFailure: state.round.lastFailure,
  };
}

async function read(batchId: string): Promise<Reply> {
  const stateMachineArn = resource('STATE_MACHINE_ARN');
  const executionArn = `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${batchId}`;
  try {
    const execution = await sfn().send(new DescribeExecutionCommand({ executionArn }));
    const output = execution.output ? (JSON.parse(execution.output) as Record<string, unknown>) : undefined;
    const between = execution.status === 'RUNNING' ? await waiting(executionArn).catch(() => undefined) : undefined;
    const status = between
      ? 'waiting'
      : execution.status === 'SUCCEEDED'
        ? String(output?.status ?? 'completed')
        : (STATUS[execution.status ?? ''] ?? 'running');
    // While it runs: how many targets each provider has settled so far, from the audit ledger.
    const progress =
      status === 'running' || status === 'waiting'
        ? await defaultDeps()
            .ledger.progress(executionArn)
            .catch(() => undefined)
        : undefined;
    return {
      statusCode: 200,
      body: {
        batchId,
        status,
        executionStatus: execution.status,
        startedAt: execution.startDate?.toISOString(),
        ...(execution.stopDate ? { stoppedAt: execution.stopDate.toISOString() } : {}),
        ...(progress ? { progress } : {}),
        ...(between ? { waiting: between } : {}),
        ...(output ? { ...output, status } : {}),
        ...(execution.error ? { error: execution.error, cause: execution.cause } : {}),
      },
    };
  } catch (error) {
    if ((error as { name?: string }).name === 'ExecutionDoesNotExist')
      return { statusCode: 404, body: { error: 'not_found', message: `No batch ${batchId}` } };
    throw error;
  }
}

export const handler = defineHandler<Input, Reply>({
  name: 'batches',
  api: {
    schema: schemaFor,
    toInput: (_p: never, request, invocation) =>
      request.method === 'GET'
        ? { kind: 'read', batchId: request.path.batchId ?? '' }
        : {
            kind: 'start',
            body: request.body,
            idempotencyKey: request.headers['idempotency-key'],
            principal: invocation.caller.via === 'api' ? invocation.caller.principal : undefined,
          },
  },
  idempotent: true,
  run: (input) =>
    input.kind === 'read' ? read(input.batchId) : start(input.body, input.idempotencyKey, input.principal),
  reply: (reply) => reply,
});
