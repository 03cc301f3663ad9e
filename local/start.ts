/**
 * `npm start`: the whole system on one machine, no AWS account needed.
 *
 *   npm start [-- --port N] [--secrets FILE] [--data DIR] [--auth none|iam [--callers FILE]] [--verbose]
 *
 * Starts the provider simulators (seeded with demo data) for every provider the secrets file leaves out, the
 * local AWS side (S3, DynamoDB, Step Functions running the synthesized definition, Lambda, EventBridge Scheduler),
 * and the HTTP API on 127.0.0.1 (port 3000, or --port / PORT), which invokes the same Lambda handlers with real
 * API Gateway v2 events. Stops cleanly on SIGINT or SIGTERM.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import type { Simulator, SimulatorModule } from '#local/simulators/base.ts';
import { parseSecretsFile } from '#shared/aws/secrets.ts';
import { ConfigurationError } from '#shared/core/errors.ts';
import { PROVIDERS, type Provider } from '#shared/core/outcome.ts';
import { setLogLevel } from '#shared/observability/log.ts';
import { SECRET_SCHEMAS } from '#shared/providers/index.ts';
import { LocalApi } from './api.ts';
import { startLocalCloud } from './cloud.ts';
import { openApiDocument } from './openapi.ts';
import { type Caller, IamVerifier, localRegion, parseCallersFile } from './sigv4.ts';

const USAGE = `Usage: npm start [-- --port N] [--secrets FILE] [--data DIR] [--auth none|iam [--callers FILE]] [--verbose]

  --port N        the local API's port (default 3000, or PORT)
  --secrets FILE  provider credentials, keyed by provider (README, "Configuration"); a provider given there is
                  reached at its baseUrl, and simulators start only for the providers the file leaves out
  --data DIR      where local S3 objects, DynamoDB tables, schedules and executions are kept (default .local)
  --auth iam      every route IAM-authorized as deployed: requests must be signed with SigV4 (service
                  execute-api); by default the API is open on 127.0.0.1 (--auth none)
  --callers FILE  with --auth iam, the credentials accepted: {"callers": [{"accessKeyId", "secretAccessKey",
                  "userArn"?}]}; by default those of the AWS default chain (environment, profile)
  --verbose       the handlers' JSON logs too`;

function fail(message: string): never {
  console.error(`npm start: ${message}\n\n${USAGE}`);
  process.exit(2);
}

function options() {
  try {
    const { values } = parseArgs({
      options: {
        port: { type: 'string' },
        secrets: { type: 'string' },
        data: { type: 'string' },
        auth: { type: 'string' },
        callers: { type: 'string' },
        verbose: { type: 'boolean' },
        help: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    });
    if (values.help) {
      console.log(USAGE);
      process.exit(0);
    }
    const portText = values.port ?? process.env.PORT ?? '3000';
    const port = Number(portText);
    if (!/^\d+$/.test(portText) || port > 65_535) fail(`--port must be a port number (0-65535), not "${portText}"`);
    const auth = values.auth ?? 'none';
    if (auth !== 'none' && auth !== 'iam') fail(`--auth must be none or iam, not "${auth}"`);
    if (values.callers && auth !== 'iam') fail('--callers goes with --auth iam');
    return {
      port,
      auth,
      callers: values.callers,
      secrets: values.secrets,
      data: resolve(values.data ?? join(import.meta.dirname, '..', '.local')),
      verbose: values.verbose ?? false,
    };
  } catch (error) {
    return fail((error as Error).message);
  }
}

/** The providers' secrets from the file, validated before anything starts: unknown keys and missing fields named. */
function readSecretsFile(file: string): Partial<Record<Provider, Record<string, unknown>>> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    return fail(`cannot read the secrets file ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return fail(`the secrets file ${file} is not valid JSON`);
  }
  try {
    return parseSecretsFile(json, file, SECRET_SCHEMAS);
  } catch (error) {
    if (error instanceof ConfigurationError) return fail(error.message);
    throw error;
  }
}

/** The callers `--auth iam` accepts: those of `--callers FILE`, else the AWS default chain's credentials (read
 * before the local cloud sets its own placeholders; never the instance-metadata service). */
async function readCallers(file: string | undefined): Promise<Caller[]> {
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      return fail(`cannot read the callers file ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return fail(`the callers file ${file} is not valid JSON`);
    }
    try {
      return parseCallersFile(json, file);
    } catch (error) {
      return fail((error as Error).message);
    }
  }
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
  try {
    const { accessKeyId, secretAccessKey, sessionToken } = await defaultProvider()();
    return [{ accessKeyId, secretAccessKey, sessionToken }];
  } catch {
    return fail(
      '--auth iam needs credentials to accept: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile (AWS_PROFILE), or --callers FILE',
    );
  }
}

/** `sign`: curl's options to sign each request (with --auth iam). */
function examples(api: string, simulators: readonly SimulatorModule[], sign = ''): string[] {
  const json = (v: unknown) => `'${JSON.stringify(v)}'`;
  const post = (path: string, body: unknown) =>
    `curl -s${sign} -X POST ${api}${path} -H 'content-type: application/json' -d ${json(body)}`;
  const out: string[] = [];
  out.push(...simulators.flatMap((s) => s.DEMO_REQUESTS.calls).map((c) => post(c.path, c.body)));
  const items = simulators.flatMap((s) => s.DEMO_REQUESTS.items);
  if (items.length)
    out.push(
      `${post('/v1/batches', { reason: 'Credit application declined', requestedBy: 'ops@example.com', items })}   # then: curl -s${sign} ${api}/v1/batches/<batchId>`,
    );
  if (out.length < 3) out.push(`curl -s ${api}/openapi.json   # every route, generated from the handlers' own schemas`);
  return out;
}

async function main(): Promise<void> {
  const opts = options();
  const fromFile = opts.secrets ? readSecretsFile(opts.secrets) : {};
  const auth = opts.auth === 'iam' ? new IamVerifier(await readCallers(opts.callers), localRegion()) : undefined;
  setLogLevel(opts.verbose ? 'info' : 'warn');

  const simulated = new Set(PROVIDERS.filter((p) => !(p in fromFile)));
  const sims = new Map<Provider, Simulator>();
  const secrets: Partial<Record<Provider, unknown>> = { ...fromFile };
  // Each simulated provider's simulator, by convention: local/simulators/<provider>.ts (SimulatorModule).
  const modules: SimulatorModule[] = [];
  for (const provider of simulated) {
    const module: SimulatorModule = await import(`#local/simulators/${provider}.ts`);
    modules.push(module);
    const sim = module.create();
    await sim.start();
    sims.set(provider, sim);
    secrets[provider] = { ...sim.demoSecret(), ...module.DEMO_SECRET };
  }
  // Every handler runs in its own Lambda containers (local/lambda/service.ts), with the environment the stack
  // gives it: these secrets (a private file), the ledger and idempotency tables in the local DynamoDB.
  const cloud = await startLocalCloud({
    s3Root: join(opts.data, 's3'),
    dynamoPath: join(opts.data, 'dynamo'),
    schedulesFile: join(opts.data, 'schedules.json'),
    executionsDir: join(opts.data, 'executions'),
    secrets,
    // The handlers' JSON logs only with --verbose; no EMF metric lines on a terminal.
    env: { LOG_LEVEL: opts.verbose ? 'info' : 'warn', METRICS_NAMESPACE: '' },
  });
  // Every function's bundle built before the API answers, as `cdk deploy` uploads them before the first
  // invocation: a first request waits for its cold start, not for esbuild too.
  await cloud.lambda.deploy();
  // Executions a crash interrupted run again from their input (their items' idempotency keys make it harmless).
  const resumed = cloud.stepFunctions.resume();

  const api = new LocalApi({
    functions: cloud.functions,
    openapi: () => openApiDocument(api.url),
    ...(auth ? { auth } : {}),
    onRequest: (line) =>
      console.log(
        `${new Date().toISOString().slice(11, 19)} ${line.method} ${line.path} -> ${line.status}${line.summary ? ` ${line.summary}` : ''}${line.caller ? ` by ${line.caller}` : ''} (${line.ms} ms)`,
      ),
  });
  try {
    await api.listen(opts.port);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    console.error(
      `npm start: cannot listen on 127.0.0.1:${opts.port} (${code ?? (error as Error).message})${code === 'EADDRINUSE' ? '; choose another with --port N' : ''}`,
    );
    await Promise.all([cloud.stop(), ...[...sims.values()].map((s) => s.stop())]);
    process.exit(1);
  }

  const lines = [
    '',
    'Provider cancellations: the whole system on this machine',
    '',
    `  API (every route of the contract)  ${api.url}`,
    auth
      ? `  Auth                               IAM (SigV4, execute-api, ${auth.region}): ${auth.principals.map((p) => p.userArn).join(', ')}`
      : '  Auth                               none (open on 127.0.0.1; --auth iam to require SigV4)',
    `  OpenAPI                            ${api.url}/openapi.json`,
    ...PROVIDERS.map((p) => {
      const sim = sims.get(p);
      const target = sim
        ? `${sim.url}   simulator (control: ${sim.origin}/__sim/stats)`
        : `${(secrets[p] as { baseUrl?: string }).baseUrl ?? 'production URL'}   from ${opts.secrets}`;
      return `  ${p.padEnd(35)}${target}`;
    }),
    `  Step Functions (synthesized definition, local runner)   ${cloud.stepFunctions.url}`,
    `  EventBridge Scheduler (local, kept in ${join(opts.data, 'schedules.json')})`,
    `  DynamoDB (dynalite), S3                ${cloud.dynamo.url}, ${cloud.s3.url}`,
    `  Data                               ${opts.data}`,
    ...(resumed ? [`  Resumed                            ${resumed} execution(s) interrupted by the last stop`] : []),
    '',
    'Try:',
    ...examples(
      api.url,
      modules,
      auth
        ? ` --aws-sigv4 'aws:amz:${auth.region}:execute-api' --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"`
        : '',
    ).map((e) => `  ${e}`),
    '',
    `Ready: ${api.url}   (Ctrl-C to stop)`,
    '',
  ];
  console.log(lines.join('\n'));

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      console.error('npm start: stopping at once');
      process.exit(1);
    }
    stopping = true;
    console.log(`\n${signal}: stopping (finishing requests in flight)...`);
    await api.close();
    await cloud.stop();
    await Promise.all([...sims.values()].map((s) => s.stop()));
    console.log('Stopped.');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

process.on('unhandledRejection', (error) => console.error('npm start: unhandled rejection', error));
await main();
