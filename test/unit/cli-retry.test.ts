/**
 * The CLI against an API that is busy: API Gateway answers `500 {"message":"Internal Server Error"}` for a function
 * at its reserved concurrency (it is throttled before it runs). The CLI retries with backoff and the same
 * Idempotency-Key, so a request that did run answers as it did the first time; an answer that is not "busy" is
 * never retried. A loopback server stands in for the API (its answers scripted), the CLI runs as a user runs it.
 */
import { execFile } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';

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

let server: http.Server | undefined;
afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

/** A stand-in API answering `script` in order; it records each request's method, path and Idempotency-Key. */
async function api(script: { status: number; body: unknown }[]) {
  const seen: { method: string; path: string; key: string | undefined }[] = [];
  server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', path: req.url ?? '', key: req.headers['idempotency-key'] as string });
    const answer = script[Math.min(seen.length - 1, script.length - 1)] as { status: number; body: unknown };
    req.resume();
    res.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
  });
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
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
    const { url, seen } = await api([THROTTLED, THROTTLED, CANCELED]);
    const out = await cli(url, ['cancel', 'gocardless', 'BRQ000RETRY0001']);
    expect(out.code).toBe(0);
    expect(out.stdout).toContain('BRQ000RETRY0001: canceled');
    expect(out.stderr).toMatch(/HTTP 500 .*the API is busy.*retry 1 of 5/);
    expect(seen).toHaveLength(3);
    const key = seen[0]?.key;
    expect(key).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen.every((r) => r.method === 'POST' && r.key === key)).toBe(true);
  });

  it('gives up after --retries, with the answer it got, and exit code 1', async () => {
    const { url, seen } = await api([THROTTLED]);
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
    expect(seen.map((r) => r.key)).toEqual(['mine-0001', 'mine-0001']);
  });

  it('never retries an answer that is not "busy" (a 500 with a body of ours, a 400)', async () => {
    for (const answer of [
      { status: 500, body: { message: 'Internal error', requestId: 'r-1' } },
      { status: 400, body: { message: 'Invalid request', issues: [{ path: 'x', message: 'is required' }] } },
    ]) {
      const { url, seen } = await api([answer, CANCELED]);
      const out = await cli(url, ['cancel', 'gocardless', 'BRQ000RETRY0001']);
      expect(out.code).toBe(1);
      expect(seen).toHaveLength(1);
      await new Promise<void>((resolve) => server?.close(() => resolve()));
      server = undefined;
    }
  });

  it('refuses a --retries that is not a whole number', async () => {
    const { url, seen } = await api([CANCELED]);
    const out = await cli(url, ['--retries', 'lots', 'cancel', 'gocardless', 'BRQ000RETRY0001']);
    expect(out.code).toBe(2);
    expect(out.stderr).toContain('--retries must be a whole number');
    expect(seen).toHaveLength(0);
  });
});
