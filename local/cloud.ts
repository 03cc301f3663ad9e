/**
 * The AWS side of the system on one machine: S3, DynamoDB (dynalite), Step Functions (the synthesized definition,
 * run locally), Lambda (every function in its own containers, with the template's reserved concurrency, timeout,
 * memory and environment: local/lambda/service.ts) and EventBridge Scheduler, all on loopback. The handlers reach
 * them through the AWS SDK's own endpoint variables (AWS_ENDPOINT_URL_<SERVICE>), so their code is the code that
 * runs in Lambda.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type LocalDynamo, startLocalDynamo } from '#local/aws/dynamodb.ts';
import { startLocalLambda } from '#local/aws/lambda.ts';
import { LocalS3 } from '#local/aws/s3.ts';
import { LocalScheduler } from '#local/aws/scheduler.ts';
import { LocalStepFunctions } from '#local/aws/stepfunctions.ts';
import { LocalLambdaService } from '#local/lambda/service.ts';
import { reloadConfig } from '#shared/config.ts';
import { batchStateMachine, localTemplate } from './asl.ts';
import { functionSpecs } from './functions.ts';
import { LOCAL_ACCOUNT, LOCAL_REGION } from './lambda-events.ts';
import { type LocalLambda, type LocalRunnerOptions, LocalStateMachine } from './state-machine.ts';

export interface LocalCloudOptions {
  /** A directory for S3 objects (survives restarts); none keeps them in memory. */
  s3Root?: string;
  /** A directory for the DynamoDB tables (survive restarts); none keeps them in memory. */
  dynamoPath?: string;
  /** A file for the scheduled expirations (survive restarts); none keeps them in memory. */
  schedulesFile?: string;
  /** A directory for the Step Functions executions (survive restarts: `stepFunctions.resume()`); none keeps them in
   * memory. */
  executionsDir?: string;
  retryIntervalMs?: number;
  /** Scales the state machine's Wait states (its rounds): tests and the bench. */
  waitScale?: number;
  intercept?: LocalRunnerOptions['intercept'];
  /** Provider secrets, keyed by provider, for the containers (a private temporary file, SECRETS_FILE). */
  secrets?: Record<string, unknown>;
  /** Set in every Lambda container last (tests: faster pacing). */
  env?: Record<string, string>;
  /** Concurrent invocations of the unreserved functions together (the local account's pool; default 16). */
  unreservedConcurrency?: number;
  /** Replaces functions' reserved concurrency (tests: a throttle on demand). */
  reserved?: Record<string, number>;
  /** Time runs this many times faster (benchmarks): the definition's retry and wait times are divided by it, and
   * every function's `<PROVIDER>_RATE_PER_SECOND` multiplied, as the simulators' limits are. */
  timeScale?: number;
  /** Runs the Lambda containers and DynamoDB at this nice value (benchmarks: the provider simulators, which stand for
   * machines elsewhere, keep the normal priority, so the twin's CPU does not delay when requests reach them). */
  nice?: number;
}

export interface LocalCloud {
  s3: LocalS3;
  dynamo: LocalDynamo;
  scheduler: LocalScheduler;
  stepFunctions: LocalStepFunctions;
  machine: LocalStateMachine;
  functions: Record<string, LocalLambda>;
  lambda: LocalLambdaService;
  bucket: string;
  env: Record<string, string>;
  stop(): Promise<void>;
}

export const LOCAL_STATE_MACHINE_ARN = `arn:aws:states:${LOCAL_REGION}:${LOCAL_ACCOUNT}:stateMachine:BatchStateMachine`;

export async function startLocalCloud(options: LocalCloudOptions = {}): Promise<LocalCloud> {
  // Credentials the SDK accepts without looking further (it never probes the instance-metadata address).
  process.env.AWS_ACCESS_KEY_ID ??= 'AKIALOCALLOCALLOCAL0';
  process.env.AWS_SECRET_ACCESS_KEY ??= 'local-secret-access-key';
  process.env.AWS_REGION ??= LOCAL_REGION;
  process.env.AWS_EC2_METADATA_DISABLED = 'true';

  const s3 = new LocalS3(options.s3Root);
  await s3.start();
  const dynamo = await startLocalDynamo({
    ...(options.dynamoPath ? { path: options.dynamoPath } : {}),
    ...(options.nice ? { nice: options.nice } : {}),
  });
  const { definition, bucket } = batchStateMachine();
  // Provider credentials for the containers, in a file only this user can read, removed on stop.
  const secretsDir = options.secrets ? mkdtempSync(join(tmpdir(), 'cancellations-secrets-')) : undefined;
  if (secretsDir) writeFileSync(join(secretsDir, 'secrets.json'), JSON.stringify(options.secrets), { mode: 0o600 });
  const containerEnv: Record<string, string> = {};
  const resources: Record<string, string> = {};
  const scale = options.timeScale ?? 1;
  const specs = functionSpecs(localTemplate()).map((spec) => ({
    ...spec,
    ...(options.reserved?.[spec.name] !== undefined ? { reserved: options.reserved[spec.name] } : {}),
    env: Object.fromEntries(
      Object.entries(spec.env).map(([k, v]) => [k, k.endsWith('_RATE_PER_SECOND') ? String(Number(v) * scale) : v]),
    ),
  }));
  const lambdaService = new LocalLambdaService(specs, {
    env: containerEnv,
    resources,
    ...(secretsDir ? { secretsFile: join(secretsDir, 'secrets.json') } : {}),
    ...(options.unreservedConcurrency !== undefined ? { unreservedConcurrency: options.unreservedConcurrency } : {}),
    ...(options.nice ? { nice: options.nice } : {}),
  });
  const functions: Record<string, LocalLambda> = Object.fromEntries(
    lambdaService.functionNames.map((name) => [
      name,
      (event: never, context: { getRemainingTimeInMillis(): number }) =>
        lambdaService.invoke(name, event, context.getRemainingTimeInMillis()),
    ]),
  );
  const machine = new LocalStateMachine({
    definition,
    functions,
    s3,
    ...(options.retryIntervalMs !== undefined ? { retryIntervalMs: options.retryIntervalMs } : {}),
    ...(options.waitScale !== undefined || options.timeScale !== undefined
      ? { waitScale: options.waitScale ?? 1 / (options.timeScale ?? 1) }
      : {}),
    ...(options.intercept ? { intercept: options.intercept } : {}),
    ...(options.timeScale !== undefined ? { timeScale: options.timeScale } : {}),
  });
  const stepFunctions = new LocalStepFunctions(machine, LOCAL_STATE_MACHINE_ARN, options.executionsDir);
  await stepFunctions.listen();
  const lambda = await startLocalLambda(functions);
  const scheduler = new LocalScheduler(
    (arn, input, name) => stepFunctions.start(input, name, arn).executionArn,
    options.schedulesFile,
  );
  await scheduler.listen();
  const env = {
    AWS_ENDPOINT_URL_S3: s3.url,
    AWS_ENDPOINT_URL_SFN: stepFunctions.url,
    AWS_ENDPOINT_URL_DYNAMODB: dynamo.url,
    BATCH_BUCKET: bucket,
    STATE_MACHINE_ARN: LOCAL_STATE_MACHINE_ARN,
    LEDGER_TABLE: dynamo.tables.ledger,
    IDEMPOTENCY_TABLE: dynamo.tables.idempotency,
    RATE_BUDGET_TABLE: dynamo.tables.rateBudget,
    CIRCUIT_TABLE: dynamo.tables.circuits,
    AWS_ENDPOINT_URL_LAMBDA: lambda.url,
    AWS_ENDPOINT_URL_SCHEDULER: scheduler.url,
    SCHEDULE_GROUP: 'cancellations',
    SCHEDULER_ROLE_ARN: `arn:aws:iam::${LOCAL_ACCOUNT}:role/local-scheduler`,
    SCHEDULER_DLQ_ARN: `arn:aws:sqs:${LOCAL_REGION}:${LOCAL_ACCOUNT}:local-scheduler-dlq`,
    LOOKUP_FUNCTION_NAME: 'get-credit-application',
  };
  Object.assign(process.env, env);
  // Code in this process (the CLI's reads, the tests' own clients) sees the endpoints and tables just set.
  reloadConfig();
  // Containers start on demand: the endpoints (in this process's environment), the resources their template names,
  // the secrets file for functions given a secret, then the caller's overrides.
  Object.assign(resources, Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('AWS_ENDPOINT_URL'))));
  Object.assign(containerEnv, options.env);
  return {
    s3,
    dynamo,
    scheduler,
    stepFunctions,
    machine,
    functions,
    lambda: lambdaService,
    bucket,
    env,
    async stop() {
      await Promise.all([s3.stop(), stepFunctions.close(), dynamo.stop(), lambda.close(), scheduler.close()]);
      await lambdaService.stop();
      if (secretsDir) rmSync(secretsDir, { recursive: true, force: true });
    },
  };
}
