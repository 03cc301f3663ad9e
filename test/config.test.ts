/**
 * One configuration module (shared/config.ts): the environment read once and validated; a function declares what it
 * cannot run without (`needs(...)`) and, deployed without it, fails its cold start naming the variable, before any
 * provider request. The local twin's containers get exactly the template's variables, so it fails there too.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { localTemplate } from '#local/asl.ts';
import { functionSpecs } from '#local/functions.ts';
import { LocalLambdaService } from '#local/lambda/service.ts';
import { apiGatewayV2Event } from '#local/lambda-events.ts';
import { GOCARDLESS_DEMO, GoCardlessSimulator } from '#local/simulators/gocardless.ts';
import { countSetting, needs, readConfig, reloadConfig, resource, useMemoryStandIns } from '#shared/config.ts';
import { ConfigurationError } from '#shared/core/errors.ts';

const FUNCTIONS = fileURLToPath(new URL('../functions/', import.meta.url));

describe('reading the environment', () => {
  it('gives the documented defaults for what is unset or blank', () => {
    const config = readConfig({ METRICS_NAMESPACE: '', SECRETS_TTL_SECONDS: ' ' });
    expect(config).toMatchObject({
      region: 'us-east-1',
      secretsTtlMs: 300_000,
      idempotencyTtlSeconds: 86_400,
      circuit: { failuresToOpen: 3, probeIntervalMs: 15_000 },
      metricsNamespace: undefined,
      logLevel: 'info',
      ratePerSecond: {},
      resources: {},
      provisioned: false,
    });
    // A container initialized for provisioned concurrency: no invocation of it is a cold start.
    expect(readConfig({ AWS_LAMBDA_INITIALIZATION_TYPE: 'provisioned-concurrency' }).provisioned).toBe(true);
    expect(readConfig({ AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand' }).provisioned).toBe(false);
  });

  it('reads every provider rate by its name, and the levels, numbers and resources as set', () => {
    const config = readConfig({
      AWS_DEFAULT_REGION: 'eu-west-1',
      AWS_ENDPOINT_URL: 'http://127.0.0.1:1',
      AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:2',
      GOCARDLESS_RATE_PER_SECOND: '15.8',
      AUCO_RATE_PER_SECOND: '4.75',
      AUCO_MAX_CODES_PER_CALL: '2',
      CIRCUIT_PROBE_SECONDS: '0.5',
      LOG_LEVEL: 'WARN',
      LEDGER_TABLE: 'ledger',
    });
    expect(config).toMatchObject({
      region: 'eu-west-1',
      dynamoDbEndpoint: 'http://127.0.0.1:1',
      s3Endpoint: 'http://127.0.0.1:2',
      ratePerSecond: { gocardless: 15.8, auco: 4.75 },
      circuit: { probeIntervalMs: 500 },
      logLevel: 'warn',
      resources: { LEDGER_TABLE: 'ledger' },
    });
  });

  it("reads Lambda's and Powertools' other level names as the nearest level (never a cold start refused for them)", () => {
    const level = (LOG_LEVEL: string) => readConfig({ LOG_LEVEL }).logLevel;
    expect([level('TRACE'), level('trace'), level('CRITICAL'), level('Fatal'), level('info')]).toEqual([
      'debug',
      'debug',
      'error',
      'error',
      'info',
    ]);
    expect(() => readConfig({ LOG_LEVEL: 'silent' })).toThrow(
      /LOG_LEVEL must be one of debug, info, warn, error, trace/,
    );
  });

  it('refuses a malformed variable, naming each one and never echoing its value', () => {
    const read = () =>
      readConfig({
        TRUEWORK_RATE_PER_SECOND: 'fast',
        CIRCUIT_FAILURES_TO_OPEN: 'x2',
        IDEMPOTENCY_TTL_SECONDS: '-1',
        LOG_LEVEL: 'loud',
      });
    expect(read).toThrow(ConfigurationError);
    const message = (() => {
      try {
        read();
      } catch (error) {
        return (error as Error).message;
      }
    })();
    for (const name of ['TRUEWORK_RATE_PER_SECOND', 'CIRCUIT_FAILURES_TO_OPEN', 'IDEMPOTENCY_TTL_SECONDS', 'LOG_LEVEL'])
      expect(message).toContain(name);
    expect(message).not.toMatch(/fast|loud|x2/);
  });
});

describe("a provider module's own setting", () => {
  afterEach(() => {
    delete process.env.AUCO_MAX_CODES_PER_CALL;
    reloadConfig();
  });

  it('reads a positive integer, is undefined where unset, and names a malformed one without its value', () => {
    reloadConfig();
    expect(countSetting('AUCO_MAX_CODES_PER_CALL')).toBeUndefined();
    process.env.AUCO_MAX_CODES_PER_CALL = '2';
    reloadConfig();
    expect(countSetting('AUCO_MAX_CODES_PER_CALL')).toBe(2);
    process.env.AUCO_MAX_CODES_PER_CALL = '2.5';
    reloadConfig();
    expect(() => countSetting('AUCO_MAX_CODES_PER_CALL')).toThrow(/AUCO_MAX_CODES_PER_CALL must be a positive integer/);
    expect(() => countSetting('AUCO_MAX_CODES_PER_CALL')).not.toThrow(/2\.5/);
  });
});

describe('what a function needs', () => {
  afterEach(() => {
    delete process.env.BATCH_BUCKET;
    delete process.env.AWS_LAMBDA_FUNCTION_NAME;
    useMemoryStandIns();
    reloadConfig();
  });

  it('fails, naming the variable and how it is set, when it is missing; passes once it is set', () => {
    useMemoryStandIns(false);
    // Outside a Lambda function (a tool importing a handler for its schemas), the check waits for the first use.
    expect(() => needs('LEDGER_TABLE')).not.toThrow();
    process.env.AWS_LAMBDA_FUNCTION_NAME = 'cancellations';
    reloadConfig();
    expect(() => needs('LEDGER_TABLE')).toThrow(/LEDGER_TABLE is not set, so cancellations has no audit ledger table/);
    expect(() => needs('BATCH_BUCKET')).toThrow(/the stack sets it/);
    expect(() => resource('BATCH_BUCKET')).toThrow(/BATCH_BUCKET is not set/);
    // Every variable missing is named at once.
    expect(() => needs('IDEMPOTENCY_TABLE', 'LEDGER_TABLE')).toThrow(
      /IDEMPOTENCY_TABLE is not set, .*; LEDGER_TABLE is not set, /,
    );
    process.env.BATCH_BUCKET = 'batches';
    reloadConfig();
    expect(() => needs('BATCH_BUCKET')).not.toThrow();
    expect(resource('BATCH_BUCKET')).toBe('batches');
  });

  it("every function needs only variables its stack gives it (the template's environment)", () => {
    const specs = functionSpecs(localTemplate());
    const folders = readdirSync(FUNCTIONS);
    // Every folder deployed; an operation with an API deployment is deployed twice (`<operation>-api`).
    expect(folders.sort()).toEqual([...new Set(specs.map((s) => s.env.OPERATION))].sort());
    for (const spec of specs) {
      const source = readFileSync(join(FUNCTIONS, spec.env.OPERATION ?? '', 'handler.ts'), 'utf8');
      const call = /^needs\(([^)]*)\);$/m.exec(source);
      expect(call, `functions/${spec.name}/handler.ts declares needs(...)`).not.toBeNull();
      const needed = [...(call?.[1] ?? '').matchAll(/'([A-Z_]+)'/g)].map((m) => m[1]);
      const given = [...Object.keys(spec.env), ...(spec.references ?? [])];
      expect(
        needed.filter((name) => !given.includes(name ?? '')),
        spec.name,
      ).toEqual([]);
    }
  });
});

describe('the local twin: a container whose template forgot a table fails its cold start', () => {
  const sim = new GoCardlessSimulator();
  let dir: string;
  let service: LocalLambdaService | undefined;
  beforeAll(async () => {
    await sim.start();
    dir = mkdtempSync(join(tmpdir(), 'config-test-'));
    writeFileSync(join(dir, 'secrets.json'), JSON.stringify({ gocardless: sim.demoSecret() }));
  });
  afterAll(async () => {
    await service?.stop();
    await sim.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('without LEDGER_TABLE: every invocation fails naming LEDGER_TABLE, and no request reaches the provider', async () => {
    const spec = functionSpecs(localTemplate()).find((s) => s.name === 'cancel-billing-request');
    if (!spec) throw new Error('no cancel-billing-request in the template');
    expect(spec.references).toContain('LEDGER_TABLE');
    // The stack "forgot" the ledger: the template no longer names it, everything else as deployed.
    const forgot = { ...spec, references: (spec.references ?? []).filter((name) => name !== 'LEDGER_TABLE') };
    service = new LocalLambdaService([forgot], {
      resources: {
        LEDGER_TABLE: 'ledger',
        IDEMPOTENCY_TABLE: 'idempotency',
        CIRCUIT_TABLE: 'circuits',
        RATE_BUDGET_TABLE: 'budget',
      },
      secretsFile: join(dir, 'secrets.json'),
      env: { LOG_LEVEL: 'error', METRICS_NAMESPACE: '' },
    });
    const event = apiGatewayV2Event({
      method: 'POST',
      routeKey: 'POST /v1/gocardless/billing-requests/{billingRequestId}/cancel',
      path: `/v1/gocardless/billing-requests/${GOCARDLESS_DEMO.pending}/cancel`,
      pathParameters: { billingRequestId: GOCARDLESS_DEMO.pending },
    });
    for (let i = 0; i < 2; i++) {
      await expect(service.invoke('cancel-billing-request', event)).rejects.toThrow(/LEDGER_TABLE is not set/);
    }
    // Each invocation was a cold start that failed at INIT, as Lambda reports an init error until it is fixed.
    expect(service.stats('cancel-billing-request').coldStarts).toBe(2);
    expect(sim.requests).toEqual([]);
  });
});
