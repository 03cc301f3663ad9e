/**
 * The local Step Functions runner keeps Standard workflows' hard quota of 25,000 history events, as AWS does
 * (https://docs.aws.amazon.com/step-functions/latest/dg/bp-history-limit.html): an execution that would log more
 * fails, so a definition that could outgrow its history fails here too, not first in production.
 */
import { describe, expect, it } from 'vitest';
import { HISTORY_LIMIT, LocalStateMachine, newStats } from '#local/state-machine.ts';

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
