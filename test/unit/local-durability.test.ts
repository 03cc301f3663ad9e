/**
 * The local Step Functions keeps executions in its directory before it answers StartExecution, and runs again those
 * a crash interrupted; the local Scheduler deletes a fired schedule only once its execution was kept.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalScheduler } from '#local/aws/scheduler.ts';
import { LocalStepFunctions } from '#local/aws/stepfunctions.ts';
import type { LocalStateMachine } from '#local/state-machine.ts';

const ARN = 'arn:aws:states:eu-west-1:111111111111:stateMachine:BatchStateMachine';

/** A state machine whose runs end when the test says. */
function machine() {
  const runs: { input: unknown; arn: string; finish: (output: unknown) => void }[] = [];
  const fake = {
    run: (input: unknown, execution: { arn: string }) =>
      new Promise((resolve) => runs.push({ input, arn: execution.arn, finish: resolve })),
  } as unknown as LocalStateMachine;
  return { fake, runs };
}

async function until<T>(check: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() - started > timeoutMs) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('local Step Functions executions', () => {
  it('are kept before StartExecution answers, and the ones a crash interrupted run again, once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'executions-'));
    const before = machine();
    const crashed = new LocalStepFunctions(before.fake, ARN, dir);
    const running = crashed.start('{"items":[1]}', 'batch-1');
    const file = join(dir, 'batch-1.json');
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({
      executionArn: running.executionArn,
      name: 'batch-1',
      status: 'RUNNING',
      input: '{"items":[1]}',
    });
    crashed.start('{"items":[2]}', 'batch-2');
    before.runs[1]?.finish({ status: 'completed' });
    await until(() => JSON.parse(readFileSync(join(dir, 'batch-2.json'), 'utf8')).status === 'SUCCEEDED');
    // batch-1 never ends: the process dies. The next one finds it running and runs it again, from its input.
    const after = machine();
    const restarted = new LocalStepFunctions(after.fake, ARN, dir);
    expect(restarted.executions.get(running.executionArn)?.status).toBe('RUNNING');
    expect(after.runs).toHaveLength(0);
    expect(restarted.resume()).toBe(1);
    expect(after.runs.map((r) => [r.arn, r.input])).toEqual([[running.executionArn, { items: [1] }]]);
    // The same name and input while it runs is the same execution; the ended one is not run again.
    expect(restarted.start('{"items":[1]}', 'batch-1').executionArn).toBe(running.executionArn);
    expect(() => restarted.start('{"items":[2]}', 'batch-2')).toThrow(/Execution Already Exists/);
    after.runs[0]?.finish({ status: 'completed' });
    await until(() => JSON.parse(readFileSync(file, 'utf8')).status === 'SUCCEEDED');
    expect(new LocalStepFunctions(machine().fake, ARN, dir).resume()).toBe(0);
  });

  it('refuses a name Step Functions refuses (and so never names a file outside its directory)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'executions-'));
    const sfn = new LocalStepFunctions(machine().fake, ARN, dir);
    for (const name of ['../escape', 'a/b', 'with space', 'x'.repeat(81), ''])
      expect(() => sfn.start('{}', name), name).toThrow(/Invalid Name/);
    expect(existsSync(join(dir, '..', 'escape.json'))).toBe(false);
  });
});

describe('local Scheduler', () => {
  const schedule = (at: string) =>
    JSON.stringify({
      GroupName: 'g',
      ScheduleExpression: `at(${at})`,
      FlexibleTimeWindow: { Mode: 'OFF' },
      ActionAfterCompletion: 'DELETE',
      Target: { Arn: ARN, RoleArn: 'arn:r', Input: '{"reason":"expired"}' },
    });

  it('deletes a fired schedule only once its execution was kept; a crash before that fires it again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'scheduled-'));
    const file = join(dir, 'schedules.json');
    const kept = () => JSON.parse(readFileSync(file, 'utf8')) as { schedules: { Name: string }[] };
    // The first process dies while starting the execution: the start never completes.
    let startCalled = false;
    const first = new LocalScheduler(() => {
      startCalled = true;
      return new Promise<string>(() => undefined);
    }, file);
    await first.listen();
    await fetch(`${first.url}/schedules/expire-crash`, {
      method: 'POST',
      body: schedule(new Date().toISOString().slice(0, 19)),
    });
    await until(() => startCalled);
    expect(kept().schedules.map((s) => s.Name)).toEqual(['expire-crash']);
    await first.close();

    const sfn = new LocalStepFunctions(machine().fake, ARN, join(dir, 'executions'));
    const seen: { scheduleKept: boolean; executionKept: boolean }[] = [];
    const second = new LocalScheduler((arn, input) => {
      const scheduleKept = kept().schedules.some((s) => s.Name === 'expire-crash');
      const { name } = sfn.start(input, undefined, arn);
      seen.push({ scheduleKept, executionKept: existsSync(join(dir, 'executions', `${name}.json`)) });
      return `${ARN}:${name}`;
    }, file);
    await second.listen();
    await until(() => second.schedules.length === 0);
    expect(seen).toEqual([{ scheduleKept: true, executionKept: true }]);
    expect(kept().schedules).toEqual([]);
    expect(second.fired).toHaveLength(1);
    await second.close();
  });
});
