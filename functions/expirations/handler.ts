/**
 * Lambda: POST /v1/expirations registers the cancellations of a credit application at its expiry (a one-time
 * EventBridge Scheduler schedule that starts the batch state machine with the guard); GET and DELETE
 * /v1/expirations/{creditApplicationId} read and remove it. An `expiresAt` in the past runs the batch now.
 */
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import {
  CreateScheduleCommand,
  DeleteScheduleCommand,
  GetScheduleCommand,
  SchedulerClient,
  UpdateScheduleCommand,
} from '@aws-sdk/client-scheduler';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import * as z from 'zod/mini';
import { putJsonl } from '#shared/aws/s3.ts';
import { guardOrganizationIssues, validateBatch } from '#shared/batch/input.ts';
import { needs, resource } from '#shared/config.ts';
import { defaultDeps } from '#shared/core/cancel.ts';
import { type InputIssue, InvalidInputError } from '#shared/core/errors.ts';
import { forgetSchedule, recordApiStart, recordSchedule } from '#shared/core/execution-starts.ts';
import {
  atExpression,
  ExpirationRequest,
  executionNameFor,
  expirationBatch,
  expiresAtProblem,
  parseAtExpression,
  type StartExecutionParameters,
  scheduleName,
  startExecutionTarget,
} from '#shared/core/expirations.ts';
import { toInputIssues } from '#shared/core/issues.ts';
import { Uuid } from '#shared/core/items.ts';
import { defineHandler, type Reply } from '#shared/handler/middleware.ts';
import { GUARD } from '#shared/providers/index.ts';

needs(
  'STATE_MACHINE_ARN',
  'BATCH_BUCKET',
  'IDEMPOTENCY_TABLE',
  'SCHEDULE_GROUP',
  'SCHEDULER_ROLE_ARN',
  'SCHEDULER_DLQ_ARN',
  'LOOKUP_FUNCTION_NAME',
);

/** Schedule inputs are kept small; a longer item list goes to S3 and the schedule carries its location. */
const MAX_INLINE_INPUT_BYTES = 6_000;
/** Items an expiration may hold. More than 6 KB of them run as a manifest batch, so the inline batch's limit
 * (INLINE_LIMIT, set by its 256 KB state) does not apply. */
const MAX_ITEMS = 500;

let clients: { scheduler: SchedulerClient; lambda: LambdaClient; sfn: SFNClient } | undefined;
const aws = () => {
  clients ??= { scheduler: new SchedulerClient({}), lambda: new LambdaClient({}), sfn: new SFNClient({}) };
  return clients;
};

type Input = { kind: 'register'; body: unknown } | { kind: 'read' | 'delete'; id: string };

export const ById = z.object({ path: z.object({ id: Uuid }) });
/** GET and DELETE validate the id in the path; POST's body is validated in full by `register`. */
const schemaFor = (request: { method: string }) => (request.method === 'POST' ? z.object({}) : ById);

interface Lookup {
  found: boolean;
  status?: string;
  expiresAt?: string | null;
  message?: string;
}

async function lookup(request: ExpirationRequest): Promise<Lookup> {
  const answer = await aws().lambda.send(
    new InvokeCommand({
      FunctionName: resource('LOOKUP_FUNCTION_NAME'),
      Payload: JSON.stringify({
        creditApplicationId: request.creditApplicationId,
        ...(request.requesterOrganizationId ? { requesterOrganizationId: request.requesterOrganizationId } : {}),
        ...(request.targetOrganizationId ? { targetOrganizationId: request.targetOrganizationId } : {}),
      }),
    }),
  );
  const payload = JSON.parse(Buffer.from(answer.Payload ?? new Uint8Array()).toString('utf8') || 'null') as
    | (Lookup & { errorMessage?: string })
    | null;
  if (answer.FunctionError)
    throw new LookupError(
      `Could not read credit application ${request.creditApplicationId}: ${payload?.errorMessage ?? answer.FunctionError}`,
    );
  return payload ?? { found: false };
}

class LookupError extends Error {
  override readonly name = 'Lookup.Failed';
}

const reply = (statusCode: number, body?: unknown): Reply => ({ statusCode, body });

/** Registers an expiration: validate it, find when it expires, then run its batch now (already expired) or schedule
 * it for then (replacing the application's earlier schedule). */
async function register(body: unknown, principal: string | undefined): Promise<Reply> {
  const request = await validRegistration(body);
  const expiry = await expiryOf(request);
  if ('refused' in expiry) return expiry.refused;
  const { expiresAt } = expiry;

  const batch = expirationBatch(request, await batchItems(request));
  const name = scheduleName(request.creditApplicationId);
  const group = resource('SCHEDULE_GROUP');
  const stateMachineArn = resource('STATE_MACHINE_ARN');
  const planned: Planned = {
    id: request.creditApplicationId,
    expiresAt,
    when: new Date(expiresAt).toISOString(),
    batch,
    name,
    group,
    stateMachineArn,
    executionName: executionNameFor(name, Date.now()),
  };
  return expiresAt <= Date.now() ? runNow(planned, principal) : schedule(planned, principal);
}

/** The request, valid: every problem listed at once (the request's and its items', validated as a batch would
 * validate them), else an InvalidInputError. */
async function validRegistration(body: unknown): Promise<ExpirationRequest> {
  const parsed = z.safeParse(ExpirationRequest, body);
  const issues: InputIssue[] = parsed.success ? [] : toInputIssues(parsed.error, body);
  try {
    const raw = body as { reason?: unknown; requestedBy?: unknown; items?: unknown } | null;
    validateBatch(
      {
        reason: raw?.reason ?? 'Credit application expired',
        ...(raw?.requestedBy !== undefined ? { requestedBy: raw.requestedBy } : {}),
        items: raw?.items,
      },
      undefined,
      'items',
      MAX_ITEMS,
    );
  } catch (error) {
    if (!(error instanceof InvalidInputError)) throw error;
    issues.push(...error.issues.filter((i) => i.path.startsWith('items') && !issues.some((j) => j.path === i.path)));
  }
  if (parsed.success && parsed.data.expiresAt !== undefined) {
    const problem = expiresAtProblem(parsed.data.expiresAt);
    if (problem) issues.push({ path: 'expiresAt', message: problem });
  }
  if (parsed.success && !issues.length) {
    // The schedule runs the batch with a guard: its lookup needs both organization ids (or the secret's default).
    issues.push(...guardOrganizationIssues(parsed.data, await GUARD.organizationId(defaultDeps().secrets), ''));
  }
  if (issues.length || !parsed.success)
    throw new InvalidInputError(issues.map((i) => ({ ...i, path: i.path ? `body.${i.path}` : 'body' })));
  return parsed.data;
}

/** When the expiration runs: the request's expiresAt, else the application's own expires_at (looked up), else the
 * answer that says why it cannot be scheduled. */
async function expiryOf(request: ExpirationRequest): Promise<{ expiresAt: number } | { refused: Reply }> {
  if (request.expiresAt !== undefined) return { expiresAt: request.expiresAt };
  let application: Lookup;
  try {
    application = await lookup(request);
  } catch (error) {
    if (error instanceof LookupError)
      return {
        refused: reply(502, {
          error: 'lookup_failed',
          message: `${error.message}; give expiresAt to schedule without it`,
        }),
      };
    throw error;
  }
  if (!application.found) {
    return {
      refused: reply(404, {
        error: 'not_found',
        message: `${GUARD.title} does not know credit application ${request.creditApplicationId}; give expiresAt to schedule anyway`,
      }),
    };
  }
  if (!application.expiresAt) {
    return {
      refused: reply(422, {
        error: 'no_expiry',
        message: `Credit application ${request.creditApplicationId} has no expires_at; give expiresAt`,
      }),
    };
  }
  const expiresAt = Date.parse(application.expiresAt);
  const problem = expiresAtProblem(expiresAt);
  if (problem)
    return {
      refused: reply(422, {
        error: 'expiry_out_of_range',
        message: `The application's expires_at (${application.expiresAt}) ${problem}`,
      }),
    };
  return { expiresAt };
}

/** The items as the schedule carries them: inline, or, beyond MAX_INLINE_INPUT_BYTES, the S3 manifest written now. */
async function batchItems(request: ExpirationRequest): Promise<unknown> {
  if (Buffer.byteLength(JSON.stringify(request.items)) <= MAX_INLINE_INPUT_BYTES) return request.items;
  const bucket = resource('BATCH_BUCKET');
  const key = `expirations/${request.creditApplicationId}/${Date.now()}.jsonl`;
  await putJsonl(bucket, key, request.items);
  return { bucket, key };
}

/** An expiration, ready to run or schedule. */
interface Planned {
  /** The credit application's id, the expiration's. */
  id: string;
  expiresAt: number;
  /** expiresAt as ISO-8601. */
  when: string;
  batch: ReturnType<typeof expirationBatch>;
  /** The schedule's name and group. */
  name: string;
  group: string;
  stateMachineArn: string;
  /** The batch execution's name: its batchId. */
  executionName: string;
}

/** Already expired: run now, and drop any schedule that would run it again later. */
async function runNow(p: Planned, principal: string | undefined): Promise<Reply> {
  await deleteSchedule(p.name, p.group);
  // Said before starting it: the audit ledger records this API caller as what started the execution.
  await recordApiStart(p.executionName, principal);
  const started = await aws().sfn.send(
    new StartExecutionCommand({
      stateMachineArn: p.stateMachineArn,
      name: p.executionName,
      input: JSON.stringify(p.batch),
    }),
  );
  const batchId = started.executionArn?.split(':').at(-1);
  return reply(202, {
    id: p.id,
    status: 'started',
    expiresAt: p.when,
    batchId,
    message: `expiresAt ${p.when} is in the past: the cancellations run now`,
    links: { batch: `/v1/batches/${batchId}` },
  });
}

/** Schedules the batch at expiresAt, creating the application's schedule or replacing the one it has. */
async function schedule(p: Planned, principal: string | undefined): Promise<Reply> {
  const input = scheduleInput(p);
  // Said before the schedule exists: Prepare recognises the execution this schedule starts (this exact input, at
  // this time) and records the schedule, and who registered it, as what started it.
  await recordSchedule(p.name, p.batch, p.expiresAt, principal);
  let replaced = false;
  try {
    await aws().scheduler.send(new CreateScheduleCommand(input));
  } catch (error) {
    if ((error as { name?: string }).name !== 'ConflictException') throw error;
    await aws().scheduler.send(new UpdateScheduleCommand(input));
    replaced = true;
  }
  return reply(replaced ? 200 : 201, {
    id: p.id,
    status: 'scheduled',
    expiresAt: p.when,
    schedule: p.name,
    group: p.group,
    replaced,
    // The id the batch will have when the schedule fires (GET /v1/batches/{batchId} is 404 until then).
    batchId: p.executionName,
    links: { self: `/v1/expirations/${p.id}` },
  });
}

/** The one-time schedule that starts the batch execution at expiresAt. */
function scheduleInput(p: Planned) {
  return {
    Name: p.name,
    GroupName: p.group,
    ScheduleExpression: atExpression(p.expiresAt),
    ScheduleExpressionTimezone: 'UTC',
    FlexibleTimeWindow: { Mode: 'OFF' as const },
    ActionAfterCompletion: 'DELETE' as const,
    State: 'ENABLED' as const,
    Description: `Cancel in-flight work of credit application ${p.id} at its expiry`,
    Target: {
      // The universal target, so the execution gets a name derived from this schedule: a repeated delivery names
      // the same execution and starts nothing new. (The templated target, the state machine's ARN, cannot name it;
      // no context attribute fits a name either: the schedule's ARN and time hold ':' and '/', the delivery id
      // changes per attempt.) The role needs states:StartExecution on the state machine either way.
      Arn: startExecutionTarget(p.stateMachineArn),
      RoleArn: resource('SCHEDULER_ROLE_ARN'),
      Input: JSON.stringify({
        StateMachineArn: p.stateMachineArn,
        Name: p.executionName,
        Input: JSON.stringify(p.batch),
      } satisfies StartExecutionParameters),
      // A target that fails to start is retried for a day, then the event goes to the dead-letter queue (alarmed).
      RetryPolicy: { MaximumEventAgeInSeconds: 86_400, MaximumRetryAttempts: 185 },
      DeadLetterConfig: { Arn: resource('SCHEDULER_DLQ_ARN') },
    },
  };
}

async function deleteSchedule(name: string, group: string): Promise<boolean> {
  try {
    await aws().scheduler.send(new DeleteScheduleCommand({ Name: name, GroupName: group }));
    await forgetSchedule(name);
    return true;
  } catch (error) {
    if ((error as { name?: string }).name === 'ResourceNotFoundException') return false;
    throw error;
  }
}

async function read(id: string): Promise<Reply> {
  const group = resource('SCHEDULE_GROUP');
  try {
    const s = await aws().scheduler.send(new GetScheduleCommand({ Name: scheduleName(id), GroupName: group }));
    const target = JSON.parse(s.Target?.Input ?? '{}') as Partial<StartExecutionParameters>;
    // A schedule made before the universal target carried the batch itself.
    const input = JSON.parse(typeof target.Input === 'string' ? target.Input : (s.Target?.Input ?? '{}')) as {
      reason?: string;
      guard?: { skipIfStatusIn?: string[] };
      items?: unknown[];
      manifest?: unknown;
    };
    const at = parseAtExpression(s.ScheduleExpression ?? '');
    return reply(200, {
      id,
      status: s.State === 'ENABLED' ? 'scheduled' : 'disabled',
      expiresAt: at === undefined ? s.ScheduleExpression : new Date(at).toISOString(),
      schedule: s.Name,
      group,
      ...(target.Name ? { batchId: target.Name } : {}),
      reason: input.reason,
      skipIfStatusIn: input.guard?.skipIfStatusIn,
      ...(input.items ? { items: input.items } : { manifest: input.manifest }),
    });
  } catch (error) {
    if ((error as { name?: string }).name === 'ResourceNotFoundException')
      return reply(404, { error: 'not_found', message: `No expiration is scheduled for credit application ${id}` });
    throw error;
  }
}

export const handler = defineHandler<Input, Reply>({
  name: 'expirations',
  api: {
    schema: schemaFor,
    toInput: (_p: never, request) => {
      if (request.method === 'POST') return { kind: 'register', body: request.body };
      return { kind: request.method === 'DELETE' ? 'delete' : 'read', id: request.path.id ?? '' };
    },
  },
  run: async (input, invocation) => {
    if (input.kind === 'register')
      return register(input.body, invocation.caller.via === 'api' ? invocation.caller.principal : undefined);
    if (input.kind === 'read') return read(input.id);
    const deleted = await deleteSchedule(scheduleName(input.id), resource('SCHEDULE_GROUP'));
    return deleted
      ? reply(204)
      : reply(404, { error: 'not_found', message: `No expiration is scheduled for credit application ${input.id}` });
  },
  reply: (r) => r,
});
