/**
 * The CLI against an API that is busy: API Gateway answers `500 {"message":"Internal Server Error"}` for a function
 * at its reserved concurrency (it is throttled before it runs). The CLI retries with backoff and the same
 * Idempotency-Key, so a request that did run answers as it did the first time; an answer that is not "busy" is
 * never retried. A loopback server stands in for the API (its answers scripted), the CLI runs as a user runs it.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { type Loopback, reply, startLoopback } from '#test/support/loopback.ts';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../local/cli.ts', import.meta.url));
const THROTTLED = { status: 500, body: { message: 'Internal Server Error' } };
const CANCELED = {
  status: 200,
  body: {
    provider: 'gocardless',
    operation: 'cancel-billing-request',
    target: { billingRequestId: 'BRQ000RETRY0001' },
    outcome: 'canceled',
    providerStatus: 'cancelled',
    httpStatus: 200,
    attempts: 1,
    durationMs: 12,
  },
};

let server: Loopback | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** A stand-in API answering `script` in order (the last one repeats), recording every request. */
async function api(script: { status: number; body: unknown }[]): Promise<Loopback> {
  server = await startLoopback(...script.map((a) => reply(a.status, a.body)));
  return server;
}

async function cli(url: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, '--api', url, ...args], { timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('the CLI when the API is busy', () => {
  it('retries a throttled 500 with the same Idempotency-Key, and reports the outcome', async () => {
    const { url, requests: seen } = await api([THROTTLED, THROTTLED, CANCELED]);
    const out = await cli(url, ['cancel', 'gocardless', 'BRQ000RETRY0001']);
    expect(out.code).toBe(0);
    expect(out.stdout).toContain('BRQ000RETRY0001: canceled');
    expect(out.stderr).toMatch(/HTTP 500 .*the API is busy.*retry 1 of 5/);
    expect(seen).toHaveLength(3);
    const key = seen[0]?.headers['idempotency-key'];
    expect(key).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen.every((r) => r.method === 'POST' && r.headers['idempotency-key'] === key)).toBe(true);
  });

  it('gives up after --retries, with the answer it got, and exit code 1', async () => {
    const { url, requests: seen } = await api([THROTTLED]);
    const out = await cli(url, [
      '--retries',
      '1',
      '--idempotency-key',
      'mine-0001',
      'cancel',
      'gocardless',
      'BRQ000RETRY0001',
    ]);
    expect(out.code).toBe(1);
    expect(out.stdout).toContain('HTTP 500: Internal Server Error');
    expect(seen.map((r) => r.headers['idempotency-key'])).toEqual(['mine-0001', 'mine-0001']);
  });

  it('never retries an answer that is not "busy" (a 500 with a body of ours, a 400)', async () => {
    for (const answer of [
      { status: 500, body: { message: 'Internal error', requestId: 'r-1' } },
      { status: 400, body: { message: 'Invalid request', issues: [{ path: 'x', message: 'is required' }] } },
    ]) {
      const { url, requests: seen } = await api([answer, CANCELED]);
      const out = await cli(url, ['cancel', 'gocardless', 'BRQ000RETRY0001']);
      expect(out.code).toBe(1);
      expect(seen).toHaveLength(1);
      await server?.close();
      server = undefined;
    }
  });

  it('refuses a --retries that is not a whole number', async () => {
    const { url, requests: seen } = await api([CANCELED]);
    const out = await cli(url, ['--retries', 'lots', 'cancel', 'gocardless', 'BRQ000RETRY0001']);
    expect(out.code).toBe(2);
    expect(out.stderr).toContain('--retries must be a whole number');
    expect(seen).toHaveLength(0);
  });
});

describe('the CLI on a batch that waits for its guard, or failed', () => {
  const APP = 'd4c1b0f5-8a7e-4d3c-9fa0-917c6d5e4f43';
  it('says what a waiting batch waits for: the guard, with nothing cancelled yet', async () => {
    const { url } = await api([
      {
        status: 200,
        body: {
          batchId: 'b-guard',
          status: 'waiting',
          waiting: {
            round: 2,
            pending: 10,
            waitingFor: [{ provider: 'mycreditapp', items: 10, guard: APP }],
            nextAttemptAt: '2026-12-01T21:40:00.000Z',
            deadline: '2026-12-02T21:30:00.000Z',
          },
        },
      },
    ]);
    const out = await cli(url, ['status', 'b-guard']);
    expect(out.code).toBe(1);
    expect(out.stdout).toContain(
      `waiting after round 2 for mycreditapp to read credit application ${APP} for the guard (10 items, none cancelled yet); next attempt at 21:40:00 UTC, gives up at 2026-12-02T21:30:00.000Z`,
    );
  });

  it("says why a failed batch failed: the execution's error and its message", async () => {
    const message =
      'Cannot read the credit application, so nothing is cancelled: mycreditapp answered 401 (after 1 attempt(s))';
    const { url } = await api([
      {
        status: 200,
        body: {
          batchId: 'b-failed',
          status: 'failed',
          error: 'Guard.Unreadable',
          cause: JSON.stringify({ errorType: 'Guard.Unreadable', errorMessage: message, trace: [] }),
        },
      },
    ]);
    const out = await cli(url, ['status', 'b-failed']);
    expect(out.code).toBe(1);
    expect(out.stdout).toContain('Batch b-failed: failed');
    expect(out.stdout).toContain(`Guard.Unreadable: ${message}`);
  });
});
