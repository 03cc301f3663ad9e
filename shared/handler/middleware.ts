/**
 * The handler pipeline every Lambda shares, as middy middlewares. In the order their `before` steps run (their
 * `after` and `onError` steps run in the reverse order):
 *
 * 1. `correlatedLogs`: correlation ids (API request id, execution id, batch item id) and Powertools Logger's Lambda
 *    context keys (`cold_start`, `function_request_id`, `xray_trace_id`, ...) on every log line written during the
 *    invocation, however deep; one line when it ends; whatever leaves the function scrubbed of secrets.
 * 2. `invocationContext`: who called (the platform's word), a deadline and an abort signal every outbound call
 *    honours, both ahead of the Lambda's own timeout.
 * 3. `answers`: errors to answers. At the API, a result becomes a JSON answer, and an error the HTTP answer it
 *    stands for (400 listing every problem, 409, 422, 500 with the request id and no internals). For a task, an
 *    error is rethrown for Step Functions (`Input.Invalid` is never retried; `Provider.*` is).
 * 4. `validInput`: parses and validates either entry point (API Gateway HTTP API v2 events, Step Functions task
 *    inputs) with the handler's zod schemas, and builds the handler's input. Invalid input never reaches a provider.
 * 5. `idempotency`: once per key (an API call's `Idempotency-Key`, a task's `idempotencyKey`); a repeat gets the
 *    first answer without running again (shared/handler/idempotency.ts).
 *
 * Then the handler itself: the operation, and its result as the spec shapes it (the API reply or the task result).
 */
import middy, { type MiddlewareObj, type Request } from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import * as z from 'zod/mini';
import { ConfigurationError, type InputIssue, InvalidInputError } from '#shared/core/errors.ts';
import { toInputIssues } from '#shared/core/issues.ts';
import { type Caller, executionCaller } from '#shared/core/ledger.ts';
import { addCorrelation, lambdaContextKeys, log, redact, scrub, withCorrelation } from '#shared/observability/log.ts';
import { type ApiRequest, apiRequest, invalidInputResponse, isApiEvent, jsonResponse } from './events.ts';
import {
  claimOnce,
  IdempotencyInProgressError,
  IdempotencyMismatchError,
  payloadHash,
  releaseOnce,
  settleOnce,
} from './idempotency.ts';

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

/** What the middlewares hand on to each other and to the handler, on the invocation's context. */
export interface Pipeline<Input = unknown> {
  invocation: Invocation;
  /** Aborted at the deadline, or when middy signals the Lambda is about to time out. */
  controller: AbortController;
  timer: ReturnType<typeof setTimeout>;
  /** The API request as validated (API entry point only). */
  request?: ApiRequest;
  input?: Input;
  /** The idempotency record this invocation holds (`claim`), or the first answer it replays. */
  once?: { key: string; claim: string } | { key: string; replayed: unknown };
}
export type PipelineContext = Context & { pipeline: Pipeline };
type PipelineRequest = Request<unknown, unknown, Error, PipelineContext>;
type Middleware = MiddlewareObj<unknown, unknown, Error, PipelineContext>;

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

/** An API caller's Idempotency-Key as the logical key of its cancellation (what the ledger records, and what a
 * provider's own idempotency key is derived from): scoped to the principal, so another caller's same key is
 * another cancellation at the provider too. Unchanged without a principal (no IAM authorizer) and for tasks. */
export function scopedIdempotencyKey(caller: Caller, key: string): string {
  return caller.via === 'api' && caller.principal ? `${caller.principal}#${key}` : key;
}

const sourceOf = (event: unknown) => (isApiEvent(event) ? 'api' : 'task');

/** 1. Correlation ids on every log line of the invocation, one line when it ends, and nothing unscrubbed leaves. */
export function correlatedLogs(operation: string): Middleware {
  const started = (request: PipelineRequest) => (request.internal as { started?: number }).started ?? Date.now();
  // Whatever leaves the function is scrubbed of secret values: the API answer (headers and body) or the task
  // result, and a thrown error's message (a `Provider.*` error carries outcomes as JSON; Step Functions shows it in
  // the execution history).
  const done = (request: PipelineRequest) => {
    request.response = scrub(request.response);
    const status = (request.response as { statusCode?: number } | null)?.statusCode;
    log.info('invocation done', {
      source: sourceOf(request.event),
      ...(status ? { status } : {}),
      ms: Date.now() - started(request),
    });
  };
  return {
    name: 'correlatedLogs',
    before: (request) => {
      (request.internal as { started?: number }).started = Date.now();
      addCorrelation({
        ...lambdaContextKeys(request.context),
        ...correlationOf(request.event, request.context),
        operation,
      });
    },
    after: done,
    onError: (request) => {
      // Answered by `answers` (an API error reply): the invocation is done, not failed.
      if (request.response !== undefined) return done(request);
      log.warn('invocation failed', {
        source: sourceOf(request.event),
        error: request.error,
        ms: Date.now() - started(request),
      });
      scrubError(request.error);
    },
  };
}

/** 2. Who called, the deadline and the abort signal: on `context.pipeline` for the middlewares after it. */
export function invocationContext(): Middleware {
  const end = (request: PipelineRequest) => clearTimeout(request.context.pipeline?.timer);
  return {
    name: 'invocationContext',
    before: ({ event, context }) => {
      const remaining = context.getRemainingTimeInMillis?.() ?? DEFAULT_BUDGET_MS;
      const budget = Math.max(0, Math.floor(remaining - Math.min(RESERVE_MS, remaining * 0.2)));
      const deadline = Date.now() + budget;
      // One controller and one timer, cleared when the invocation ends (AbortSignal.timeout's timer would outlive
      // it, and AbortSignal.any costs more per call than the rest of the pipeline together).
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(new Error(`invocation deadline (${budget} ms) reached`)), budget);
      const ids = correlationOf(event, context);
      const { signal } = controller;
      // A task's batch is built by Prepare (from the execution's context, not its input), and only principals
      // allowed to invoke the function (the state machine) can hand one over.
      const batch = (event as { batch?: unknown } | null)?.batch;
      const invocation: Invocation = isApiEvent(event)
        ? { source: 'api', ...ids, signal, deadline, caller: apiCaller(event) }
        : {
            source: 'task',
            ...ids,
            signal,
            deadline,
            caller: executionCaller(batch !== null && typeof batch === 'object' ? batch : {}),
          };
      context.pipeline = { invocation, controller, timer };
    },
    after: end,
    onError: end,
  };
}

const isMiddyTimeout = (error: unknown) =>
  error instanceof Error &&
  error.name === 'TimeoutError' &&
  (error.cause as { package?: unknown } | undefined)?.package === '@middy/core';

/** An API request that failed validation: answered 400 by `answers`, listing every issue. Lighter than
 * InvalidInputError, which builds a message from the issues for Step Functions; the answer builds its own. */
class InvalidRequestError extends Error {
  override readonly name = 'Input.Invalid';
  readonly issues: InputIssue[];
  constructor(issues: InputIssue[]) {
    super('Invalid request');
    this.issues = issues;
  }
}

/** The route a handler without an API part was reached by. */
class NoApiRouteError extends Error {
  override readonly name = 'Route.NotFound';
}

/** 3. Errors to answers: at the API, a result as a JSON answer and an error as its HTTP answer; a task's errors
 * go on to Step Functions (scrubbed by `correlatedLogs`). */
export function answers(): Middleware {
  return {
    name: 'answers',
    after: (request) => {
      if (request.context.pipeline.invocation.source !== 'api') return;
      const reply = request.response as Reply;
      request.response = jsonResponse(reply.statusCode, reply.body, reply.headers);
    },
    onError: (request) => {
      // A task's error goes on to Step Functions; so does middy's own timeout (the Lambda is about to end), as before.
      if (!isApiEvent(request.event) || isMiddyTimeout(request.error)) return;
      const requestId =
        request.context.pipeline?.invocation.requestId ?? correlationOf(request.event, request.context).requestId;
      // Answered, not rethrown: the middlewares before this one see the response and end the invocation with it.
      request.response = errorReply(request.error, { requestId });
    },
  };
}

/** 4. Parse and validate the event of either entry point; the input for the handler on `context.pipeline`. */
export function validInput<Input>(spec: Pick<HandlerSpec<Input, unknown>, 'name' | 'api' | 'task'>): Middleware {
  return {
    name: 'validInput',
    before: ({ event, context }) => {
      const pipeline = context.pipeline;
      if (isApiEvent(event)) {
        if (!spec.api) throw new NoApiRouteError(`${spec.name} has no API route`);
        const { request, issues } = apiRequest(event);
        if (issues.length) throw new InvalidRequestError(issues);
        const schema = typeof spec.api.schema === 'function' ? spec.api.schema(request) : spec.api.schema;
        const parsed = z.safeParse(schema, request);
        if (!parsed.success) throw new InvalidRequestError(toInputIssues(parsed.error, request));
        pipeline.request = request;
        pipeline.input = spec.api.toInput(parsed.data as never, request, pipeline.invocation);
        return;
      }
      if (!spec.task)
        throw new InvalidInputError([{ path: '', message: `${spec.name} is called through its API route only` }]);
      const parsed = z.safeParse(spec.task.schema, event);
      if (!parsed.success) {
        const error = new InvalidInputError(toInputIssues(parsed.error, event), `Invalid task input for ${spec.name}`);
        log.warn('invalid task input', { issues: error.issues });
        throw error;
      }
      pipeline.input = spec.task.toInput(parsed.data as never);
    },
  };
}

/**
 * 5. Once per key. At the API the key is the caller's `Idempotency-Key`, scoped to its principal (another
 * principal's same key is another record); the fingerprint is the validated input (everything that reaches the
 * provider: path, body, and headers that change the request), in a canonical form (key order does not matter).
 * Answers worth repeating are kept; a 5xx (a `failed` outcome) is not, so a retry tries again. A task's key is its
 * `idempotencyKey`: a retried state (or a second run of an Express child) returns the first result, and a task that
 * throws (a `failed` outcome) is not kept, so Step Functions' retry runs it again.
 */
export function idempotency(name: string): Middleware {
  return {
    name: 'idempotency',
    before: async ({ event, context }) => {
      const pipeline = context.pipeline;
      const { invocation, input } = pipeline;
      let key: string;
      let hash: string;
      if (invocation.source === 'api') {
        const header = pipeline.request?.headers['idempotency-key'];
        if (!header) return;
        key = `${name}#api#${keyScope(invocation.caller)}#${header}`;
        hash = payloadHash({ method: (event as APIGatewayProxyEventV2).requestContext.http.method, input });
      } else {
        const taskKey = (event as { idempotencyKey?: unknown }).idempotencyKey;
        if (typeof taskKey !== 'string') return;
        key = `${name}#task#${taskKey}`;
        hash = payloadHash(input);
      }
      const claimed = await claimOnce(key, hash, invocation.deadline);
      pipeline.once = 'claim' in claimed ? { key, claim: claimed.claim } : { key, replayed: claimed.replayed };
    },
    after: async (request) => {
      const { once, invocation } = request.context.pipeline;
      if (!once) return;
      if ('replayed' in once) {
        if (invocation.source === 'api') {
          const reply = request.response as Reply;
          request.response = { ...reply, headers: { ...reply.headers, 'idempotent-replayed': 'true' } };
        }
        return;
      }
      const keep = invocation.source === 'api' ? (r: unknown) => (r as Reply).statusCode < 500 : () => true;
      await settleOnce(once.key, once.claim, request.response, keep);
    },
    onError: async (request) => {
      const once = request.context.pipeline?.once;
      if (once && 'claim' in once) await releaseOnce(once.key, once.claim);
    },
  };
}

/** The handler after the middlewares: the operation, unless the answer is a replay, and its result shaped. */
function operation<Input, Result>(spec: HandlerSpec<Input, Result>) {
  return async (_event: unknown, context: PipelineContext, { signal: timingOut }: { signal: AbortSignal }) => {
    const { invocation, controller, once } = context.pipeline as Pipeline<Input>;
    if (once && 'replayed' in once) return once.replayed;
    const input = context.pipeline.input as Input;
    const abort = () => controller.abort(timingOut.reason);
    timingOut.addEventListener('abort', abort, { once: true });
    try {
      const result = await spec.run(input, invocation);
      // Scrubbed before it is answered or kept: no secret value in the reply, the task result (what the execution
      // history and the console show) or the idempotency record.
      if (invocation.source === 'api') return scrub(spec.reply(result, invocation));
      return scrub(spec.taskResult ? spec.taskResult(result, input) : result);
    } finally {
      timingOut.removeEventListener('abort', abort);
    }
  };
}

export function defineHandler<Input, Result>(spec: HandlerSpec<Input, Result>) {
  const pipeline = middy<unknown, unknown, Error, PipelineContext>({ timeoutEarlyInMillis: 100 })
    .use(correlatedLogs(spec.name))
    .use(invocationContext())
    .use(answers())
    .use(validInput(spec))
    .use(spec.idempotent ? [idempotency(spec.name)] : [])
    .handler(operation(spec));
  // middy has no step around the whole invocation; AsyncLocalStorage needs one. The scope opens here, empty, and
  // `correlatedLogs` fills it, so log lines written anywhere during the invocation carry its ids.
  return (event: unknown, context: Context) => withCorrelation({}, () => pipeline(event, context as PipelineContext));
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
  if (error instanceof InvalidRequestError) return invalidInputResponse(error.issues, invocation.requestId);
  if (error instanceof InvalidInputError)
    return invalidInputResponse(error.issues, invocation.requestId, error.issueCount);
  if (error instanceof NoApiRouteError)
    return jsonResponse(404, { error: 'not_found', message: error.message, requestId: invocation.requestId });
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
