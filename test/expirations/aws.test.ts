/**
 * The AWS path of expirations: what the function sends EventBridge Scheduler, asserted on the wire against a
 * loopback server speaking the Scheduler REST API.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { handler } from '#functions/expirations/handler.ts';
import { GOCARDLESS_DEMO } from '#local/simulators/gocardless.ts';
import { callApi } from '#test/support/invoke.ts';
import { useSecrets } from '#test/support/providers.ts';
import { startSchedulerApi } from '#test/support/scheduler-api.ts';

let api: Awaited<ReturnType<typeof startSchedulerApi>>;
const ENV = {
  SCHEDULE_GROUP: 'cancellations-test',
  SCHEDULER_ROLE_ARN: 'arn:aws:iam::111111111111:role/scheduler-starts-batches',
  SCHEDULER_DLQ_ARN: 'arn:aws:sqs:eu-west-1:111111111111:scheduler-dlq',
  STATE_MACHINE_ARN: 'arn:aws:states:eu-west-1:111111111111:stateMachine:Batch',
  LOOKUP_FUNCTION_NAME: 'lookup',
  BATCH_BUCKET: 'batches',
};

beforeAll(async () => {
  api = await startSchedulerApi();
  Object.assign(process.env, ENV, { AWS_ENDPOINT_URL_SCHEDULER: api.url });
});
afterAll(async () => {
  for (const name of [...Object.keys(ENV), 'AWS_ENDPOINT_URL_SCHEDULER']) delete process.env[name];
  await api.close();
});
beforeEach(() => {
  api.calls.length = 0;
  // The guard's organization ids default to the mycreditapp secret's organizationId (else 400).
  useSecrets({
    mycreditapp: {
      clientId: 'c',
      clientSecret: 's',
      baseUrl: 'http://127.0.0.1:9/v1-beta',
      organizationId: '0f6a6c1e-8d3b-4c2e-9a51-3c9d2b7e4a10',
    },
  });
});

const APP = 'b2a9f8d3-6e5c-4b1a-9d8e-7f6a5b4c3d21';
let firstExecutionName = '';
const items = [{ provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending }];
const register = (body: Record<string, unknown>) =>
  callApi(handler, { method: 'POST', route: '/v1/expirations', path: '/v1/expirations', body });
const byId = (method: string) =>
  callApi(handler, {
    method,
    route: '/v1/expirations/{id}',
    path: `/v1/expirations/${APP}`,
    pathParameters: { id: APP },
  });

describe('expirations, AWS path (EventBridge Scheduler API on the wire)', () => {
  it('creates a one-time schedule: name, group, at(), UTC, flexible window off, delete after completion, target, role, input, retry, DLQ', async () => {
    const res = await register({
      creditApplicationId: APP,
      expiresAt: '2026-12-24T18:30:00',
      reason: 'Credit application expired',
      requestedBy: 'ops@example.com',
      items,
    });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      id: APP,
      status: 'scheduled',
      expiresAt: '2026-12-24T18:30:00.000Z',
      schedule: `expire-${APP}`,
      replaced: false,
    });
    expect(api.calls).toHaveLength(1);
    const [call] = api.calls;
    expect(call?.method).toBe('POST');
    expect(call?.path).toBe(`/schedules/expire-${APP}`);
    expect(call?.body).toMatchObject({
      GroupName: 'cancellations-test',
      ScheduleExpression: 'at(2026-12-24T18:30:00)',
      ScheduleExpressionTimezone: 'UTC',
      FlexibleTimeWindow: { Mode: 'OFF' },
      ActionAfterCompletion: 'DELETE',
      State: 'ENABLED',
      Target: {
        // The universal target, so the schedule names the execution it starts (below).
        Arn: 'arn:aws:scheduler:::aws-sdk:sfn:startExecution',
        RoleArn: ENV.SCHEDULER_ROLE_ARN,
        RetryPolicy: { MaximumEventAgeInSeconds: 86_400, MaximumRetryAttempts: 185 },
        DeadLetterConfig: { Arn: ENV.SCHEDULER_DLQ_ARN },
      },
    });
    // StartExecution's parameters: this state machine, an execution name derived from the schedule (a repeated
    // delivery names the same execution, which Step Functions starts once), and the batch the state machine runs:
    // the items, guarded by the application's status then.
    const target = (call?.body.Target ?? {}) as { Input?: string };
    const parameters = JSON.parse(String(target.Input)) as { StateMachineArn: string; Name: string; Input: string };
    expect(Object.keys(parameters).sort()).toEqual(['Input', 'Name', 'StateMachineArn']);
    expect(parameters.StateMachineArn).toBe(ENV.STATE_MACHINE_ARN);
    expect(parameters.Name).toMatch(new RegExp(`^expire-${APP}-[0-9a-z]{8,9}$`));
    expect(parameters.Name.length).toBeLessThanOrEqual(80);
    expect(res.body.batchId).toBe(parameters.Name);
    firstExecutionName = parameters.Name;
    expect(JSON.parse(parameters.Input)).toEqual({
      reason: 'Credit application expired',
      requestedBy: 'ops@example.com',
      creditApplicationId: APP,
      guard: { creditApplicationId: APP, skipIfStatusIn: ['approved', 'finalized'] },
      items,
    });
  });

  it('registering again for the same application replaces the schedule, never a second one', async () => {
    const res = await register({
      creditApplicationId: APP,
      expiresAt: '2026-12-31T00:00:00Z',
      items,
      skipIfStatusIn: ['approved'],
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ replaced: true, expiresAt: '2026-12-31T00:00:00.000Z' });
    expect(api.calls.map((c) => `${c.method} ${c.path}`)).toEqual([
      `POST /schedules/expire-${APP}`,
      `PUT /schedules/expire-${APP}`,
    ]);
    expect([...api.schedules.keys()]).toEqual([`cancellations-test/expire-${APP}`]);
    // A new registration starts a new execution when it fires: its own name.
    const replacedTarget = api.calls[1]?.body.Target as { Input?: string } | undefined;
    const replaced = JSON.parse(String(replacedTarget?.Input)) as { Name: string };
    expect(replaced.Name).toMatch(new RegExp(`^expire-${APP}-`));
    expect(replaced.Name).not.toBe(firstExecutionName);
  });

  it('reads the schedule back, then deletes it; a second delete and a read are 404', async () => {
    const read = await byId('GET');
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({
      id: APP,
      status: 'scheduled',
      expiresAt: '2026-12-31T00:00:00.000Z',
      skipIfStatusIn: ['approved'],
      items,
      batchId: expect.stringMatching(new RegExp(`^expire-${APP}-`)),
    });
    expect(api.calls[0]?.query).toEqual({ groupName: 'cancellations-test' });
    expect((await byId('DELETE')).status).toBe(204);
    expect((await byId('DELETE')).status).toBe(404);
    expect((await byId('GET')).status).toBe(404);
    expect(api.schedules.size).toBe(0);
  });

  it('bad input gets 400 with every problem, and nothing is scheduled', async () => {
    const res = await register({
      creditApplicationId: 'nope',
      expiresAt: 'next friday',
      items: [{ provider: 'gocardless', billingRequestId: 'BRQ1', colour: 'red' }, { provider: 'truework' }],
    });
    expect(res.status).toBe(400);
    expect(res.body.issues).toEqual(
      expect.arrayContaining([
        { path: 'body.creditApplicationId', message: 'must be a uuid (8-4-4-4-12 hex digits)' },
        {
          path: 'body.expiresAt',
          message: 'must be an ISO-8601 time such as 2026-12-01T09:00:00Z (no timezone means UTC)',
        },
        { path: 'body.items[0]', message: 'unknown field(s) "colour": remove or correct them' },
        { path: 'body.items[1].orderId', message: 'is required' },
      ]),
    );
    const far = await register({ creditApplicationId: APP, expiresAt: '2031-01-01T00:00:00Z', items });
    expect(far.status).toBe(400);
    expect(far.body.issues).toEqual([{ path: 'body.expiresAt', message: 'must be within 400 days from now' }]);
    expect(api.calls).toHaveLength(0);
  });
});
