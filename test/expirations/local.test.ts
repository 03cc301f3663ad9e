/**
 * The local path of expirations: the same function against the in-process scheduler, which fires the local
 * state machine on time; the guard re-checks the application at the simulator; schedules survive a restart.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { handler } from '#functions/expirations/handler.ts';
import { LocalScheduler } from '#local/aws/scheduler.ts';
import { GOCARDLESS_DEMO } from '#local/simulators/gocardless.ts';
import { MYCREDITAPP_DEMO as D } from '#local/simulators/mycreditapp.ts';
import { callApi } from '#test/support/invoke.ts';
import { startTestSystem, type TestSystem } from '#test/support/system.ts';

let system: TestSystem;
beforeAll(async () => {
  system = await startTestSystem({ retryIntervalMs: 5 });
  system.cloud.scheduler.retryDelayMs = 10;
});
afterAll(() => system.stop());
beforeEach(() => system.reset());

const register = (body: Record<string, unknown>) =>
  callApi(handler, { method: 'POST', route: '/v1/expirations', path: '/v1/expirations', body });
const read = (id: string) =>
  callApi(handler, {
    method: 'GET',
    route: '/v1/expirations/{id}',
    path: `/v1/expirations/${id}`,
    pathParameters: { id },
  });
const inSeconds = (s: number) => new Date(Date.now() + s * 1000).toISOString();

async function until<T>(check: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() - started > timeoutMs) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The execution a schedule started, once it has finished. */
async function firedExecution(application: string) {
  const fired = await until(() => system.cloud.scheduler.fired.find((f) => f.name === `expire-${application}`));
  const execution = system.cloud.stepFunctions.executions.get(fired.executionArn ?? '');
  await execution?.done;
  return {
    fired,
    output: JSON.parse(execution?.output ?? 'null') as {
      status: string;
      results?: { outcome: string }[];
      message?: string;
    },
  };
}

describe('expirations, local path (in-process scheduler)', () => {
  it('a schedule due in a few seconds fires, the guard proceeds, and the items are cancelled at the provider', async () => {
    const res = await register({
      creditApplicationId: D.pendingApplication,
      expiresAt: inSeconds(1),
      items: [{ provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending }],
    });
    expect(res.status).toBe(201);
    expect((await read(D.pendingApplication)).body).toMatchObject({ status: 'scheduled' });
    const { output } = await firedExecution(D.pendingApplication);
    expect(output).toMatchObject({ status: 'completed', results: [{ outcome: 'canceled' }] });
    expect(system.gocardless.effectiveCancels.get(GOCARDLESS_DEMO.pending)).toBe(1);
    // The application was re-checked when the schedule fired, not when it was registered.
    expect(system.mycreditapp.received('GET', `/credit-applications/${D.pendingApplication}`)).toHaveLength(1);
    // Delete after completion: the schedule is gone.
    expect((await read(D.pendingApplication)).status).toBe(404);
  });

  it('a schedule delivered twice (the service delivers at least once) starts one execution, named from the schedule', async () => {
    system.cloud.scheduler.deliveriesPerFiring = 2;
    const earlier = system.cloud.scheduler.fired.length;
    const earlierExecutions = new Set(system.cloud.stepFunctions.executions.keys());
    try {
      const res = await register({
        creditApplicationId: D.pendingApplication,
        expiresAt: inSeconds(1),
        items: [{ provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending }],
      });
      const schedule = system.cloud.scheduler.schedules.find((s) => s.Name === `expire-${D.pendingApplication}`);
      expect(schedule?.Target.Arn).toBe('arn:aws:scheduler:::aws-sdk:sfn:startExecution');
      const fired = await until(() => {
        const both = system.cloud.scheduler.fired.slice(earlier);
        return both.length === 2 ? both : undefined;
      });
      // Both deliveries name the execution the registration announced; Step Functions ran it once.
      const arn = `${system.cloud.env.STATE_MACHINE_ARN?.replace(':stateMachine:', ':execution:')}:${res.body.batchId}`;
      expect(fired.map((f) => f.executionArn)).toEqual([arn, arn]);
      const executions = [...system.cloud.stepFunctions.executions.values()].filter(
        (e) => !earlierExecutions.has(e.executionArn),
      );
      expect(executions.map((e) => e.name)).toEqual([res.body.batchId]);
      await executions[0]?.done;
      expect(JSON.parse(executions[0]?.output ?? '{}')).toMatchObject({ status: 'completed' });
      expect(system.gocardless.effectiveCancels.get(GOCARDLESS_DEMO.pending)).toBe(1);
      expect(system.gocardless.received('POST', /actions\/cancel$/)).toHaveLength(1);
    } finally {
      system.cloud.scheduler.deliveriesPerFiring = 1;
    }
  });

  it('the local scheduler runs the universal target as the service does: StartExecution parameters, context attributes', async () => {
    const started: string[] = [];
    const scheduler = new LocalScheduler((arn, input, name) => {
      started.push(`${arn} ${name} ${input}`);
      return `${arn}:${name}`;
    });
    await scheduler.listen();
    const create = (name: string, target: Record<string, unknown>) =>
      fetch(`${scheduler.url}/schedules/${name}`, {
        method: 'POST',
        body: JSON.stringify({
          GroupName: 'g',
          ScheduleExpression: `at(${new Date().toISOString().slice(0, 19)})`,
          FlexibleTimeWindow: { Mode: 'OFF' },
          ActionAfterCompletion: 'DELETE',
          Target: { RoleArn: 'arn:r', ...target },
        }),
      });
    const ok = await create('expire-u', {
      Arn: 'arn:aws:scheduler:::aws-sdk:sfn:startExecution',
      Input: JSON.stringify({
        StateMachineArn: 'arn:sm',
        Name: 'expire-u-1',
        Input: JSON.stringify({ schedule: '<aws.scheduler.schedule-arn>', attempt: '<aws.scheduler.attempt-number>' }),
      }),
    });
    expect(ok.status).toBe(200);
    await until(() => started.length > 0);
    expect(started).toEqual([
      'arn:sm expire-u-1 {"schedule":"arn:aws:scheduler:eu-west-1:111111111111:schedule/g/expire-u","attempt":"1"}',
    ]);
    // What it cannot run is refused when the schedule is made, not when it fires.
    expect((await create('bad-1', { Arn: 'arn:aws:scheduler:::aws-sdk:sfn:startExecution', Input: '{}' })).status).toBe(
      400,
    );
    expect((await create('bad-2', { Arn: 'arn:aws:scheduler:::aws-sdk:sqs:sendMessage', Input: '{}' })).status).toBe(
      400,
    );
    await scheduler.close();
  });

  it('the guard is honoured: an application approved by then keeps its work in flight', async () => {
    await register({
      creditApplicationId: D.approvedApplication,
      expiresAt: inSeconds(1),
      items: [{ provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.ready }],
    });
    const { output } = await firedExecution(D.approvedApplication);
    expect(output).toMatchObject({ status: 'skipped' });
    expect(system.gocardless.effectiveCancels.size).toBe(0);
  });

  it("without expiresAt, the application's own expires_at (no timezone: UTC) is used", async () => {
    const id = 'f6e3d2b7-0c9a-4f5e-b1c2-d3e4f5a6b7c8';
    const at = Math.ceil((Date.now() + 60_000) / 1000) * 1000;
    system.mycreditapp.addCreditApplication(id, 'external_review', at);
    const res = await register({
      creditApplicationId: id,
      items: [{ provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending }],
    });
    expect(res.status).toBe(201);
    expect(res.body.expiresAt).toBe(new Date(at).toISOString());
    expect(system.cloud.scheduler.schedules.find((s) => s.Name === `expire-${id}`)?.ScheduleExpression).toBe(
      `at(${new Date(at).toISOString().slice(0, 19)})`,
    );
  });

  it('an expiresAt already in the past runs the batch now, and says so', async () => {
    const res = await register({
      creditApplicationId: D.expiringApplication,
      items: [{ provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending }],
    });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({
      status: 'started',
      message: expect.stringMatching(/is in the past: the cancellations run now/),
    });
    const execution = [...system.cloud.stepFunctions.executions.values()].find((e) =>
      e.name.startsWith(`expire-${D.expiringApplication}`),
    );
    await execution?.done;
    expect(JSON.parse(execution?.output ?? '{}')).toMatchObject({ status: 'completed' });
    expect(system.gocardless.effectiveCancels.get(GOCARDLESS_DEMO.pending)).toBe(1);
  });

  it('an unknown application without expiresAt is 404, and nothing is scheduled', async () => {
    const res = await register({
      creditApplicationId: '00000000-0000-4000-8000-000000000000',
      items: [{ provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.pending }],
    });
    expect(res.status).toBe(404);
    expect(res.body.message).toMatch(/give expiresAt/);
  });

  it('a target that will not start is retried, then dead-lettered', async () => {
    const scheduler = new LocalScheduler(() => {
      throw new Error('StateMachineDoesNotExist');
    });
    scheduler.retryDelayMs = 5;
    await scheduler.listen();
    await fetch(`${scheduler.url}/schedules/expire-x`, {
      method: 'POST',
      body: JSON.stringify({
        GroupName: 'g',
        ScheduleExpression: `at(${new Date().toISOString().slice(0, 19)})`,
        FlexibleTimeWindow: { Mode: 'OFF' },
        ActionAfterCompletion: 'DELETE',
        Target: { Arn: 'arn:x', RoleArn: 'arn:r', RetryPolicy: { MaximumRetryAttempts: 2 } },
      }),
    });
    const dead = await until(() => scheduler.deadLetters[0]);
    expect(dead).toMatchObject({ name: 'expire-x', error: 'StateMachineDoesNotExist' });
    expect(scheduler.schedules).toHaveLength(0);
    await scheduler.close();
  });

  it('a schedule survives a restart of the scheduler, and fires after it', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'schedules-')), 'schedules.json');
    const started: string[] = [];
    const first = new LocalScheduler(() => 'never', file);
    await first.listen();
    const at = new Date(Date.now() + 1_500).toISOString().slice(0, 19);
    const created = await fetch(`${first.url}/schedules/expire-restart`, {
      method: 'POST',
      body: JSON.stringify({
        GroupName: 'g',
        ScheduleExpression: `at(${at})`,
        FlexibleTimeWindow: { Mode: 'OFF' },
        ActionAfterCompletion: 'DELETE',
        Target: { Arn: 'arn:sm', RoleArn: 'arn:r', Input: '{"reason":"expired"}' },
      }),
    });
    expect(created.status).toBe(200);
    await first.close();
    const second = new LocalScheduler((arn, input) => {
      started.push(`${arn} ${input}`);
      return 'arn:execution';
    }, file);
    await second.listen();
    expect(second.schedules.map((s) => s.Name)).toEqual(['expire-restart']);
    await until(() => started.length > 0);
    expect(started).toEqual(['arn:sm {"reason":"expired"}']);
    await second.close();
    // Fired and deleted: a third start has nothing left to fire.
    const third = new LocalScheduler(() => 'again', file);
    expect(third.schedules).toHaveLength(0);
    expect(third.fired.map((f) => f.name)).toEqual(['expire-restart']);
  });
});
