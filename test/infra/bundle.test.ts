/**
 * One synthesis that bundles for real (esbuild, as deployed: minified ESM with the createRequire banner), then
 * imports a produced bundle in a fresh Node process, from a directory with no node_modules, and runs it: the
 * bundle is self-contained and works.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { App } from 'aws-cdk-lib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '#infra/app.ts';
import { type LocalDynamo, startLocalDynamo } from '#local/aws/dynamodb.ts';
import { GOCARDLESS_DEMO, GoCardlessSimulator } from '#local/simulators/gocardless.ts';

const run = promisify(execFile);
const sim = new GoCardlessSimulator();
let assets: Record<string, string>;
let outdir: string;

beforeAll(async () => {
  await sim.start();
  outdir = mkdtempSync(join(tmpdir(), 'cdk-out-'));
  const app = new App({ outdir, context: { stage: 'bundle' } });
  const { stack } = buildApp(app, { nag: false });
  const assembly = app.synth();
  const template = assembly.getStackByName(stack.stackName).template as {
    Resources: Record<
      string,
      { Type: string; Properties: { Code?: { S3Key?: string }; Environment?: { Variables?: { OPERATION?: string } } } }
    >;
  };
  assets = {};
  for (const r of Object.values(template.Resources)) {
    if (r.Type !== 'AWS::Lambda::Function') continue;
    const hash = r.Properties.Code?.S3Key?.replace(/\.zip$/, '');
    const operation = r.Properties.Environment?.Variables?.OPERATION;
    if (hash && operation) assets[operation] = join(outdir, `asset.${hash}`, 'index.mjs');
  }
}, 120_000);
let dynamo: LocalDynamo;
beforeAll(async () => {
  dynamo = await startLocalDynamo();
});
afterAll(async () => {
  await sim.stop();
  await dynamo.stop();
});

describe('bundles as deployed', () => {
  it('every function has a minified ESM bundle with the createRequire banner and a source map beside it', () => {
    const folders = readdirSync(new URL('../../functions/', import.meta.url), { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
    expect(Object.keys(assets).sort()).toEqual(folders.sort());
    for (const [name, file] of Object.entries(assets)) {
      const code = readFileSync(file, 'utf8');
      expect(
        code.startsWith("import{createRequire as __cr}from'module';const require=__cr(import.meta.url);"),
        name,
      ).toBe(true);
      expect(code.length / code.split('\n').length, name).toBeGreaterThan(1000); // minified: long lines
      expect(statSync(`${file}.map`).size, name).toBeGreaterThan(0);
    }
  });

  /** Runs the deployed cancel-billing-request bundle in a fresh process from a bare directory, with this environment. */
  async function runBundle(env: Record<string, string>) {
    const dir = mkdtempSync(join(tmpdir(), 'lambda-'));
    const secrets = join(dir, 'secrets.json');
    writeFileSync(
      secrets,
      JSON.stringify({ gocardless: { accessToken: GOCARDLESS_DEMO.accessToken, baseUrl: sim.url } }),
    );
    const script = `
      const { handler } = await import(${JSON.stringify(`file://${assets['cancel-billing-request']}`)});
      const context = { awsRequestId: 'r-1', getRemainingTimeInMillis: () => 10000 };
      const out = await handler({ item: { provider: 'gocardless', billingRequestId: '${GOCARDLESS_DEMO.pending}' }, idempotencyKey: 'bundle-test' }, context);
      process.stdout.write('RESULT ' + JSON.stringify(out) + '\\n');
      process.stdout.write('UNDICI ' + process.moduleLoadList.some((m) => m.includes('undici')) + '\\n');
    `;
    return run(process.execPath, ['--input-type=module', '-e', script], {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? '',
        SECRETS_FILE: secrets,
        LOG_LEVEL: 'warn',
        AWS_REGION: 'eu-west-1',
        AWS_EC2_METADATA_DISABLED: 'true',
        AWS_ACCESS_KEY_ID: 'AKIATESTTESTTESTTEST',
        AWS_SECRET_ACCESS_KEY: 'test-secret-access-key',
        ...env,
      },
    });
  }

  it('the bundled cancel-billing-request, imported from a directory with no node_modules, cancels at the simulator', async () => {
    const { stdout } = await runBundle({
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.url,
      LEDGER_TABLE: dynamo.tables.ledger,
      IDEMPOTENCY_TABLE: dynamo.tables.idempotency,
    });
    const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
    expect(JSON.parse(line?.slice(7) ?? '{}')).toMatchObject({
      provider: 'gocardless',
      outcome: 'canceled',
      target: { billingRequestId: GOCARDLESS_DEMO.pending },
    });
    expect(sim.effectiveCancels.get(GOCARDLESS_DEMO.pending)).toBe(1);
    // Node's bundled undici (fetch, WebSocket) is never loaded: an ESM import of node:http would load it, for
    // ~14 ms of CPU at each cold start (infra/node-http.cjs).
    expect(stdout).toContain('UNDICI false');
  });

  it('deployed without its tables, the bundle fails naming the variable, and cancels nothing', async () => {
    const before = sim.requests.length;
    await expect(runBundle({})).rejects.toThrow(/IDEMPOTENCY_TABLE is not set/);
    // Not a request to the provider: the missing table is found before anything is sent.
    expect(sim.requests.length).toBe(before);
  });
});
