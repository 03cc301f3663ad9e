/**
 * The local Step Functions runner keeps Step Functions' hard quotas, as AWS does, so a definition that could outgrow
 * one fails here too, not first in production: Standard workflows' 25,000 history events
 * (https://docs.aws.amazon.com/step-functions/latest/dg/bp-history-limit.html), and 256 KiB for any state's or task's
 * input or output (States.DataLimitExceeded, which no Catch catches).
 */
import { describe, expect, it } from 'vitest';
import { HISTORY_LIMIT, LocalStateMachine, newStats, PAYLOAD_LIMIT_BYTES } from '#local/state-machine.ts';

/** `n` times round a loop: a Lambda task that counts (1 entry, 3 events for its one attempt, 1 exit), then a Choice
 * back to it (entry, exit): 7 events a time, and 4 for the execution's start and end and the Succeed state. */
function loop() {
  return new LocalStateMachine({
    definition: {
      StartAt: 'Count',
      States: {
        Count: { Type: 'Task', Resource: 'arn:aws:lambda:us-east-1:000000000000:function:count', Next: 'More' },
        More: {
          Type: 'Choice',
          Choices: [{ Variable: '$.i', NumericLessThanPath: '$.n', Next: 'Count' }],
          Default: 'Done',
        },
        Done: { Type: 'Succeed' },
      },
    } as never,
    functions: { count: async (event: { i: number; n: number }) => ({ ...event, i: event.i + 1 }) } as never,
    s3: undefined as never,
  });
}

describe('the local runner and the history quota', () => {
  it('runs an execution whose history stays under 25,000 events, and counts it as Step Functions would', async () => {
    const stats = newStats();
    const n = Math.floor((HISTORY_LIMIT - 4) / 7) - 1;
    await expect(loop().run({ i: 0, n }, { arn: 'arn:local:under', name: 'under' }, stats)).resolves.toEqual({
      i: n,
      n,
    });
    expect(stats.historyEvents).toBe(7 * n + 4);
    expect(stats.historyEvents).toBeLessThan(HISTORY_LIMIT);
  });

  it('fails an execution that reaches it before it ends, naming the quota', async () => {
    const stats = newStats();
    const run = loop().run({ i: 0, n: 4_000 }, { arn: 'arn:local:over', name: 'over' }, stats);
    await expect(run).rejects.toMatchObject({
      name: 'States.HistoryLimitExceeded',
      message: expect.stringContaining('25000 history events'),
    });
    expect(stats.historyEvents).toBeGreaterThanOrEqual(HISTORY_LIMIT);
    expect(stats.invocations).toBeLessThan(4_000);
  });
});

/** A Lambda task answering `bytes` of text, caught by States.ALL, then a Map of `iterations` Lambda tasks each
 * answering `each` bytes. */
function sized(bytes: number, iterations: number, each: number) {
  const lambda = (name: string) => `arn:aws:lambda:us-east-1:000000000000:function:${name}`;
  return new LocalStateMachine({
    definition: {
      StartAt: 'Answer',
      States: {
        Answer: {
          Type: 'Task',
          Resource: lambda('answer'),
          Catch: [{ ErrorEquals: ['States.ALL'], Next: 'Caught' }],
          Next: 'Many',
        },
        Caught: { Type: 'Pass', Result: 'caught', End: true },
        Many: {
          Type: 'Map',
          ItemsPath: '$.items',
          ItemProcessor: { StartAt: 'Each', States: { Each: { Type: 'Task', Resource: lambda('piece'), End: true } } },
          End: true,
        },
      },
    } as never,
    functions: {
      answer: async () => ({ text: 'x'.repeat(bytes), items: Array.from({ length: iterations }, (_, i) => i) }),
      piece: async () => 'y'.repeat(each),
    } as never,
    s3: undefined as never,
  });
}

describe('the local runner and the payload quota', () => {
  const run = (machine: LocalStateMachine) => machine.run({}, { arn: 'arn:local:sized', name: 'sized' }, newStats());

  it('passes a task output and a Map output under 256 KiB', async () => {
    await expect(run(sized(100_000, 10, 10_000))).resolves.toHaveLength(10);
  });

  it("fails the execution for a task's output over it, whatever the Catch says", async () => {
    await expect(run(sized(PAYLOAD_LIMIT_BYTES, 0, 0))).rejects.toMatchObject({
      name: 'States.DataLimitExceeded',
      message: expect.stringMatching(/^The output of task state Answer is 2621\d\d bytes, over/),
    });
  });

  it("fails the execution for a Map's output over it, though each iteration's is small", async () => {
    await expect(run(sized(10, 30, 10_000))).rejects.toMatchObject({
      name: 'States.DataLimitExceeded',
      message: expect.stringContaining('The output of state Many is'),
    });
  });
});
