/**
 * The AWS side of the system on one machine: S3, DynamoDB (dynalite), Step Functions (the synthesized definition,
 * run locally) and, for expirations, Lambda and EventBridge Scheduler endpoints, all on loopback. The handlers run in this process and
 * reach them through the AWS SDK's own endpoint variables (AWS_ENDPOINT_URL_<SERVICE>), so their code is the code
 * that runs in Lambda.
 */
import { batchStateMachine } from './asl.ts';
import { type LocalDynamo, startLocalDynamo } from './aws/dynamodb.ts';
import { startLocalLambda } from './aws/lambda.ts';
import { LocalS3 } from './aws/s3.ts';
import { LocalScheduler } from './aws/scheduler.ts';
import { LocalStepFunctions } from './aws/stepfunctions.ts';
import { loadFunctions } from './functions.ts';
import { LOCAL_ACCOUNT, LOCAL_REGION } from './lambda-events.ts';
import { type LocalLambda, type LocalRunnerOptions, LocalStateMachine } from './state-machine.ts';

export interface LocalCloudOptions {
  /** A directory for S3 objects (survives restarts); none keeps them in memory. */
  s3Root?: string;
  /** A directory for the DynamoDB tables (survive restarts); none keeps them in memory. */
  dynamoPath?: string;
  /** A file for the scheduled expirations (survive restarts); none keeps them in memory. */
  schedulesFile?: string;
  retryIntervalMs?: number;
  /** Scales the state machine's Wait states (its rounds): tests and the bench. */
  waitScale?: number;
  intercept?: LocalRunnerOptions['intercept'];
}

export interface LocalCloud {
  s3: LocalS3;
  dynamo: LocalDynamo;
  scheduler: LocalScheduler;
  stepFunctions: LocalStepFunctions;
  machine: LocalStateMachine;
  functions: Record<string, LocalLambda>;
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
  const dynamo = await startLocalDynamo(options.dynamoPath ? { path: options.dynamoPath } : {});
  const { definition, bucket } = batchStateMachine();
  const functions = await loadFunctions();
  const machine = new LocalStateMachine({
    definition,
    functions,
    s3,
    ...(options.retryIntervalMs !== undefined ? { retryIntervalMs: options.retryIntervalMs } : {}),
    ...(options.waitScale !== undefined ? { waitScale: options.waitScale } : {}),
    ...(options.intercept ? { intercept: options.intercept } : {}),
  });
  const stepFunctions = new LocalStepFunctions(machine, LOCAL_STATE_MACHINE_ARN);
  await stepFunctions.listen();
  const lambda = await startLocalLambda(functions);
  const scheduler = new LocalScheduler(
    (arn, input) => stepFunctions.start(input, undefined, arn).executionArn,
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
    CIRCUIT_TABLE: dynamo.tables.circuits,
    AWS_ENDPOINT_URL_LAMBDA: lambda.url,
    AWS_ENDPOINT_URL_SCHEDULER: scheduler.url,
    SCHEDULE_GROUP: 'cancellations',
    SCHEDULER_ROLE_ARN: `arn:aws:iam::${LOCAL_ACCOUNT}:role/local-scheduler`,
    SCHEDULER_DLQ_ARN: `arn:aws:sqs:${LOCAL_REGION}:${LOCAL_ACCOUNT}:local-scheduler-dlq`,
    LOOKUP_FUNCTION_NAME: 'get-credit-application',
  };
  Object.assign(process.env, env);
  return {
    s3,
    dynamo,
    scheduler,
    stepFunctions,
    machine,
    functions,
    bucket,
    env,
    async stop() {
      await Promise.all([s3.stop(), stepFunctions.close(), dynamo.stop(), lambda.close(), scheduler.close()]);
    },
  };
}
