/**
 * The handler pipeline every Lambda shares (middy): correlation ids, input validation for both entry points,
 * a deadline every outbound call honours, and errors turned into the reply each caller expects.
 *
 * - API Gateway HTTP API (v2) events: the route's zod schema validates path, headers and body; every problem is
 *   listed in a 400. Unexpected errors give 500 with the request id and no internals.
 * - Step Functions task inputs: the task schema validates; invalid input raises `Input.Invalid` (never retried).
 *   A `failed` outcome raises a `Provider.*` error so the state machine retries it with backoff.
 */
import middy from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import * as z from 'zod/mini';
import { ConfigurationError, InvalidInputError } from '#shared/core/errors.ts';
import { toInputIssues } from '#shared/core/issues.ts';
import { type Caller, executionCaller } from '#shared/core/ledger.ts';
import { log, redact, scrub, withCorrelation } from '#shared/observability/log.ts';
import { type ApiRequest, apiRequest, invalidInputResponse, isApiEvent, jsonResponse } from './events.ts';
import { IdempotencyInProgressError, IdempotencyMismatchError, onceFor, payloadHash } from './idempotency.ts';

export interface Invocation {
  source: 'api' | 'task';
  /** API Gateway's request id, else the Lambda request id: quoted in every error reply. */
  requestId: string;
  /** Aborts shortly before the invocation must end; pass it to every outbound call. */
  signal: AbortSignal;
  /** Epoch milliseconds by which outbound work must be over, leaving time to record and reply. */
  deadline: number;
  /** Who called, as the platform says it (the IAM principal, or the execution and what started it): never from a
   * body, a header or an execution's input. What the caller says (`requestedBy`) is the input's. */
  caller: Caller;
  executionId?: string;
  itemId?: string;
}

export interface Reply {
  statusCode: number;
  body: unknown;
  headers?: Record<string, string>;
}

export interface HandlerSpec<Input, Result> {
  name: string;
  /** Validates an API request (path, headers, query, body) and builds the input. A function picks the schema per
   * request, for a handler that serves several routes. */
  api?: {
    schema: z.ZodMiniType | ((request: ApiRequest) => z.ZodMiniType);
    toInput: (parsed: never, request: ApiRequest, invocation: Invocation) => Input;
  };
  /** Validates a Step Functions task input and builds the input. */
  task?: { schema: z.ZodMiniType; toInput: (parsed: never) => Input };
  run: (input: Input, invocation: Invocation) => Promise<Result>;
  /** The API reply for a result. */
  reply: (result: Result, invocation: Invocation) => Reply;
  /** The task result for a result; may throw a retryable error for Step Functions. Defaults to the result. */
  taskResult?: (result: Result, input: Input) => unknown;
  /**
   * Runs once per key: an API call with an `Idempotency-Key` header, a task with an `idempotencyKey`. A repeat
   * returns the first answer without running again (shared/handler/idempotency.ts).
   */
  idempotent?: boolean;
}

/** Time kept back from the Lambda's remaining time to record the outcome and reply. */
const RESERVE_MS = 1_000;
/** Without a Lambda context (local runs, tests), an invocation gets this long. */
const DEFAULT_BUDGET_MS = 30_000;

function correlationOf(event: unknown, context: Partial<Context>) {
  if (isApiEvent(event)) return { requestId: event.requestContext.requestId ?? context.awsRequestId ?? 'local' };
  const task = (event ?? {}) as {
    executionId?: unknown;
    itemId?: unknown;
    index?: unknown;
    batch?: { executionId?: unknown };
  };
  const executionId = task.executionId ?? task.batch?.executionId;
  const itemId = task.itemId ?? (typeof task.index === 'number' ? `item-${task.index}` : undefined);
  return {
    requestId: context.awsRequestId ?? 'local',
    ...(typeof executionId === 'string' ? { executionId } : {}),
    ...(typeof itemId === 'string' ? { itemId } : {}),
  };
}

/** The IAM principal API Gateway verified (`requestContext.authorizer.iam`); nothing the request itself carries. */
export function apiCaller(event: APIGatewayProxyEventV2): Caller {
  const iam = (
    event.requestContext as {
      authorizer?: { iam?: { userArn?: unknown; callerId?: unknown; accountId?: unknown } };
    }
  ).authorizer?.iam;
  const principal = [iam?.userArn, iam?.callerId].find((v): v is string => typeof v === 'string' && v !== '');
  return {
    via: 'api',
    ...(principal ? { principal } : {}),
    ...(typeof iam?.accountId === 'string' && iam.accountId ? { accountId: iam.accountId } : {}),
  };
}

/** The principal an idempotency key belongs to: two callers using the same key never share a record. */
function keyScope(caller: Caller): string {
  return caller.via === 'api' && caller.principal ? caller.principal : 'anonymous';
}

/** An API caller's Idempotency-Key as the logical key of its cancellation (what the ledger records, and what
 * GoCardless's own Idempotency-Key is derived from): scoped to the principal, so another caller's same key is
 * another cancellation at the provider too. Unchanged without a principal (no IAM authorizer) and for tasks. */
export function scopedIdempotencyKey(caller: Caller, key: string): string {
  return caller.via === 'api' && caller.principal ? `${caller.principal}#${key}` : key;
}

export function defineHandler<Input, Result>(spec: HandlerSpec<Input, Result>) {
  const pipeline = middy<unknown, unknown, Error, Context>({ timeoutEarlyInMillis: 100 }).handler(
    async (event: unknown, context: Context, { signal: middySignal }: { signal: AbortSignal }) => {
      const remaining = context.getRemainingTimeInMillis?.() ?? DEFAULT_BUDGET_MS;
      const budget = Math.max(0, Math.floor(remaining - Math.min(RESERVE_MS, remaining * 0.2)));
      const deadline = Date.now() + budget;
      // One controller and one timer, cleared when the invocation ends (AbortSignal.timeout's timer would outlive
      // it, and AbortSignal.any costs more per call than the rest of the pipeline together).
      const controller = new AbortController();
      const abort = () => controller.abort(middySignal.reason);
      const timer = setTimeout(() => controller.abort(new Error(`invocation deadline (${budget} ms) reached`)), budget);
      middySignal.addEventListener('abort', abort, { once: true });
      const signal = controller.signal;
      const ids = correlationOf(event, context);
      try {
        if (isApiEvent(event)) {
          const invocation: Invocation = { source: 'api', ...ids, signal, deadline, caller: apiCaller(event) };
          return await apiInvocation(spec, event, invocation);
        }
        // A task's batch is built by Prepare (from the execution's context, not its input), and only principals
        // allowed to invoke the function (the state machine) can hand one over.
        const batch = (event as { batch?: unknown } | null)?.batch;
        const invocation: Invocation = {
          source: 'task',
          ...ids,
          signal,
          deadline,
          caller: executionCaller(batch !== null && typeof batch === 'object' ? batch : {}),
        };
        return await taskInvocation(spec, event, invocation);
      } finally {
        clearTimeout(timer);
        middySignal.removeEventListener('abort', abort);
      }
    },
  );
  return (event: unknown, context: Context) =>
    withCorrelation({ ...correlationOf(event, context), operation: spec.name }, async () => {
      const started = Date.now();
      const source = isApiEvent(event) ? 'api' : 'task';
      try {
        // Whatever leaves the function is scrubbed of secret values: the API answer (headers and body) or the task
        // result, and a thrown error's message (a `Provider.*` error carries outcomes as JSON; Step Functions shows
        // it in the execution history).
        const result = scrub(await pipeline(event, context));
        const status = (result as { statusCode?: number } | null)?.statusCode;
        log.info('invocation done', { source, ...(status ? { status } : {}), ms: Date.now() - started });
        return result;
      } catch (error) {
        log.warn('invocation failed', { source, error, ms: Date.now() - started });
        throw scrubError(error);
      }
    });
}

async function apiInvocation<Input, Result>(
  spec: HandlerSpec<Input, Result>,
  event: APIGatewayProxyEventV2,
  invocation: Invocation,
): Promise<APIGatewayProxyStructuredResultV2> {
  if (!spec.api)
    return jsonResponse(404, {
      error: 'not_found',
      message: `${spec.name} has no API route`,
      requestId: invocation.requestId,
    });
  const { request, issues } = apiRequest(event);
  if (issues.length) return invalidInputResponse(issues, invocation.requestId);
  const schema = typeof spec.api.schema === 'function' ? spec.api.schema(request) : spec.api.schema;
  const parsed = z.safeParse(schema, request);
  if (!parsed.success) return invalidInputResponse(toInputIssues(parsed.error, request), invocation.requestId);
  try {
    const input = spec.api.toInput(parsed.data as never, request, invocation);
    // Scrubbed before it is answered or kept: no secret value in the reply or in the idempotency record.
    const answer = async () => scrub(spec.reply(await spec.run(input, invocation), invocation));
    const key = request.headers['idempotency-key'];
    if (!spec.idempotent || !key) {
      const reply = await answer();
      return jsonResponse(reply.statusCode, reply.body, reply.headers);
    }
    // The fingerprint is the validated input: everything that reaches the provider (path, body, and headers that
    // change the request, such as mycreditapp's organizations), in a canonical form (key order does not matter).
    const hash = payloadHash({ method: event.requestContext.http.method, input });
    // Answers worth repeating are kept; a 5xx (a `failed` outcome) is not, so a retry tries again. The key is the
    // caller's: another principal's same key is another record.
    const { result: reply, replayed } = await onceFor(
      `${spec.name}#api#${keyScope(invocation.caller)}#${key}`,
      hash,
      invocation.deadline,
      answer,
      (r) => r.statusCode < 500,
    );
    return jsonResponse(reply.statusCode, reply.body, {
      ...reply.headers,
      ...(replayed ? { 'idempotent-replayed': 'true' } : {}),
    });
  } catch (error) {
    return errorReply(error, invocation);
  }
}

async function taskInvocation<Input, Result>(
  spec: HandlerSpec<Input, Result>,
  event: unknown,
  invocation: Invocation,
): Promise<unknown> {
  if (!spec.task)
    throw new InvalidInputError([{ path: '', message: `${spec.name} is called through its API route only` }]);
  const parsed = z.safeParse(spec.task.schema, event);
  if (!parsed.success) {
    const error = new InvalidInputError(toInputIssues(parsed.error, event), `Invalid task input for ${spec.name}`);
    log.warn('invalid task input', { issues: error.issues });
    throw error;
  }
  const input = spec.task.toInput(parsed.data as never);
  // The task result is what the execution history (and the console) shows: scrubbed before it is kept or returned.
  const answer = async () => {
    const result = await spec.run(input, invocation);
    return scrub(spec.taskResult ? spec.taskResult(result, input) : result);
  };
  const key = (event as { idempotencyKey?: unknown }).idempotencyKey;
  if (!spec.idempotent || typeof key !== 'string') return answer();
  // A retried state (or a second run of an Express child) returns the first result: nothing is cancelled twice.
  // A task that throws (a `failed` outcome) is not kept, so Step Functions' retry runs it again.
  return (await onceFor(`${spec.name}#task#${key}`, payloadHash(input), invocation.deadline, answer, () => true))
    .result;
}

function scrubError(error: unknown): unknown {
  if (error instanceof Error) {
    error.message = redact(error.message);
    if (error.stack) error.stack = redact(error.stack);
  }
  return error;
}

/** Errors at the API: bad input is the caller's to fix (400); configuration is ours (500, actionable);
 * anything else is a bug (500, no internals, the request id to find the log line). */
export function errorReply(
  error: unknown,
  invocation: Pick<Invocation, 'requestId'>,
): APIGatewayProxyStructuredResultV2 {
  if (error instanceof InvalidInputError)
    return invalidInputResponse(error.issues, invocation.requestId, error.issueCount);
  if (error instanceof IdempotencyMismatchError) {
    return jsonResponse(422, {
      error: 'idempotency_key_reused',
      message: error.message,
      requestId: invocation.requestId,
    });
  }
  if (error instanceof IdempotencyInProgressError) {
    return jsonResponse(
      409,
      { error: 'idempotency_key_in_progress', message: error.message, requestId: invocation.requestId },
      { 'retry-after': '1' },
    );
  }
  if (error instanceof ConfigurationError) {
    log.error('configuration error', { error });
    return jsonResponse(500, {
      error: 'configuration_error',
      message: redact(error.message),
      requestId: invocation.requestId,
    });
  }
  log.error('unexpected error', { error });
  return jsonResponse(500, {
    error: 'internal_error',
    message: `Internal error. Quote request id ${invocation.requestId} when reporting it.`,
    requestId: invocation.requestId,
  });
}
