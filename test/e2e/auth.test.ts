/**
 * End to end: `npm start -- --auth iam` verifies SigV4 where API Gateway would, and the CLI signs (or not) as an
 * operator would run it, with the AWS default credential chain (here, the environment).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Started, startSystem } from './support.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const CALLER = {
  accessKeyId: 'AKIAE2EAUTHCALLER001',
  secretAccessKey: 'e2e-auth-secret-0123456789abcdefghijklmnop',
  userArn: 'arn:aws:iam::123456789012:user/e2e-operator',
};
const SIGNATURE_MISMATCH =
  'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.';

/** Runs the CLI as an operator would (`npm run cli -- ...`), with these credentials in the environment. */
function cli(
  api: string,
  args: string[],
  credentials: { accessKeyId: string; secretAccessKey: string } = CALLER,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      'npm',
      ['run', '--silent', 'cli', '--', '--api', api, ...args],
      {
        cwd: ROOT,
        env: {
          ...process.env,
          AWS_ACCESS_KEY_ID: credentials.accessKeyId,
          AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
          AWS_SESSION_TOKEN: '',
          AWS_REGION: 'eu-west-1',
        },
      },
      (error, stdout, stderr) =>
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('npm start --auth iam', () => {
  let system: Started;
  let control: string;
  beforeAll(async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'callers-')), 'callers.json');
    writeFileSync(file, JSON.stringify({ callers: [CALLER] }));
    system = await startSystem(['--auth', 'iam', '--callers', file]);
    control = /gocardless\s+\S+\s+simulator \(control: (\S+)\/__sim\/stats\)/.exec(system.output())?.[1] ?? '';
    for (const id of ['BRQ000AUTH00001', 'BRQ000AUTH00002'])
      expect(
        (await fetch(`${control}/__sim/resources/${id}`, { method: 'PUT', body: '{"status":"pending"}' })).status,
      ).toBe(200);
  });
  /** Requests the GoCardless simulator received for a billing request. */
  const providerCalls = async (id: string) =>
    ((await (await fetch(`${control}/__sim/requests`)).json()) as { requests: { path: string }[] }).requests.filter(
      (r) => r.path.includes(id),
    ).length;
  afterAll(async () => {
    if (system?.child.exitCode === null) await system.stop();
  });

  it('says so at start-up, naming the principal and never the secret', () => {
    expect(system.output()).toMatch(
      /Auth\s+IAM \(SigV4, execute-api, eu-west-1\): arn:aws:iam::123456789012:user\/e2e-operator/,
    );
    expect(system.output()).toContain("--aws-sigv4 'aws:amz:eu-west-1:execute-api'");
  });

  it('refuses the unsigned CLI with API Gateway 403, and no provider call is made', async () => {
    const unsigned = await cli(system.url, ['--json', 'cancel', 'gocardless', 'BRQ000AUTH00001']);
    expect(unsigned.code).toBe(1);
    expect(JSON.parse(unsigned.stdout)).toEqual({ message: 'Forbidden' });
    expect(await providerCalls('BRQ000AUTH00001')).toBe(0);
  });

  it('accepts the CLI signed with the default credential chain, and the principal reaches the handler', async () => {
    const signed = await cli(system.url, ['--sign', 'cancel', 'gocardless', 'BRQ000AUTH00001']);
    expect(signed.stderr).toBe('');
    expect(signed.stdout).toContain('BRQ000AUTH00001: canceled');
    expect(signed.code).toBe(0);
    // The handler got requestContext.authorizer.iam: the audit ledger records the verified principal.
    const ledger = await cli(system.url, [
      '--sign',
      '--json',
      'ledger',
      '--provider',
      'gocardless',
      '--target-id',
      'BRQ000AUTH00001',
    ]);
    const entries = (JSON.parse(ledger.stdout) as { cancellations: unknown[] }).cancellations;
    expect(entries).toHaveLength(1);
    expect(JSON.stringify(entries[0])).toContain(CALLER.userArn);
    expect(system.output()).toMatch(
      /POST \/v1\/gocardless\/billing-requests\/BRQ000AUTH00001\/cancel -> 200 canceled by arn:aws:iam::123456789012:user\/e2e-operator/,
    );
  });

  it('refuses a wrong secret key (signature mismatch) and an unknown access key, with their messages', async () => {
    const wrongSecret = await cli(system.url, ['--sign', '--json', 'cancel', 'gocardless', 'BRQ000AUTH00002'], {
      ...CALLER,
      secretAccessKey: 'not-the-secret',
    });
    expect(wrongSecret.code).toBe(1);
    expect(JSON.parse(wrongSecret.stdout)).toEqual({ message: SIGNATURE_MISMATCH });
    const unknownKey = await cli(system.url, ['--sign', '--json', 'cancel', 'gocardless', 'BRQ000AUTH00002'], {
      accessKeyId: 'AKIAUNKNOWNUNKNOWN01',
      secretAccessKey: CALLER.secretAccessKey,
    });
    expect(JSON.parse(unknownKey.stdout)).toEqual({
      message: 'The security token included in the request is invalid.',
    });
    expect(await providerCalls('BRQ000AUTH00002')).toBe(0);
  });

  it('routes before it authorizes (404 and 405 as API Gateway answers them), and serves /openapi.json open', async () => {
    expect((await fetch(`${system.url}/v1/nothing`)).status).toBe(404);
    expect((await fetch(`${system.url}/v1/batches`)).status).toBe(405);
    expect((await fetch(`${system.url}/openapi.json`)).status).toBe(200);
  });

  it('never writes the secret key anywhere', async () => {
    expect(await system.stop('SIGTERM')).toBe(0);
    expect(system.output()).not.toContain(CALLER.secretAccessKey);
  });
});
