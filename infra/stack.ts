/**
 * The whole system in one stack: the provider functions and their secrets, the batch state machine, the HTTP API,
 * monitoring. No physical name is hard-coded, so stages deploy side by side (`cdk deploy -c stage=...`).
 */
import { ArnFormat, CfnOutput, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import { DEFAULT_RATE_PER_SECOND } from '../shared/cancel.ts';
import type { Provider } from '../shared/outcome.ts';
import { DEFAULT_MAX_CODES_PER_CALL } from '../shared/providers/auco.ts';
import { FUNCTIONS, type FunctionName } from '../shared/routes.ts';
import { BATCH_CONCURRENCY, BatchStateMachine, RESULT_WRITER_V2_FLAG } from './batch-state-machine.ts';
import { Expirations } from './expirations.ts';
import { CancellationsApi } from './http-api.ts';
import { Monitoring } from './monitoring.ts';
import { acknowledgeFindings } from './nag.ts';
import { ProviderFunction, type ProviderFunctionProps } from './provider-function.ts';
import { ProviderSecrets } from './provider-secrets.ts';
import { CancellationTables } from './tables.ts';

export interface CancellationsStackProps extends StackProps {
  /** dev, staging, prod...: names nothing physical, only the stack and the metrics namespace. */
  readonly stage: string;
}

export class CancellationsStack extends Stack {
  readonly functions: Record<string, ProviderFunction>;
  readonly batch: BatchStateMachine;
  readonly api: CancellationsApi;
  readonly secrets: ProviderSecrets;
  readonly tables: CancellationTables;
  readonly expirations: Expirations;

  constructor(scope: Construct, id: string, props: CancellationsStackProps) {
    super(scope, id, props);
    this.node.setContext(RESULT_WRITER_V2_FLAG, true);
    const removalPolicy = props.stage === 'prod' ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;
    const namespace = `ProviderCancellations/${props.stage}`;
    this.secrets = new ProviderSecrets(this, 'Secrets', { removalPolicy });
    const functions: Record<string, ProviderFunction> = {};
    const make = (id: string, fn: Omit<ProviderFunctionProps, 'removalPolicy'>) => {
      functions[id] = new ProviderFunction(this, id, {
        removalPolicy,
        ...fn,
        environment: { METRICS_NAMESPACE: namespace, ...fn.environment },
      });
      return functions[id];
    };

    /** Each function paces its provider at the provider's rate over the batch map's concurrency, so all of them
     * together stay within the provider's budget (infra/batch-state-machine.ts). */
    const pace = (provider: Provider) => ({
      [`${provider.toUpperCase()}_RATE_PER_SECOND`]: String(
        DEFAULT_RATE_PER_SECOND[provider] / BATCH_CONCURRENCY[provider],
      ),
    });
    const auco = { AUCO_MAX_CODES_PER_CALL: String(DEFAULT_MAX_CODES_PER_CALL) };

    const cancel = {
      mycreditapp: make('CancelDocumentRequest', {
        operation: 'cancel-document-request',
        description: 'Cancel a mycreditapp document request',
        environment: pace('mycreditapp'),
      }).bindSecret(this.secrets.secrets.mycreditapp),
      auco: make('CancelSigningProcesses', {
        operation: 'cancel-signing-processes',
        description: 'Cancel Auco signing processes',
        environment: { ...pace('auco'), ...auco },
      }).bindSecret(this.secrets.secrets.auco),
      truework: make('CancelVerificationOrder', {
        operation: 'cancel-verification-order',
        description: 'Cancel a Truework verification order',
        environment: pace('truework'),
      }).bindSecret(this.secrets.secrets.truework),
      gocardless: make('CancelBillingRequest', {
        operation: 'cancel-billing-request',
        description: 'Cancel a GoCardless billing request',
        environment: pace('gocardless'),
      }).bindSecret(this.secrets.secrets.gocardless),
    } satisfies Record<Provider, ProviderFunction>;
    const lookup = make('GetCreditApplication', {
      operation: 'get-credit-application',
      description: 'Read a mycreditapp credit application',
      environment: pace('mycreditapp'),
    }).bindSecret(this.secrets.secrets.mycreditapp);
    // Prepare and Summarize parse and write whole manifests (up to 100,000 items): more memory and time.
    const big = { memorySize: 1024, timeout: Duration.minutes(5) };
    const prepare = make('BatchPrepare', {
      operation: 'batch-prepare',
      description: 'Batch: validate, de-duplicate, chunk',
      environment: auco,
      ...big,
    });
    const summarize = make('BatchSummarize', {
      operation: 'batch-summarize',
      description: 'Batch: one outcome per item, counts',
      ...big,
    });

    this.batch = new BatchStateMachine(this, 'Batch', { prepare, summarize, lookup, cancel, removalPolicy });
    const bucket = this.batch.bucket;
    for (const fn of [prepare, summarize]) fn.addEnvironment('BATCH_BUCKET', bucket.bucketName);
    // Object-level grants on the prefixes each function uses (keys are per execution, unknown at deploy time).
    const objects = (...prefixes: string[]) => prefixes.map((p) => bucket.arnForObjects(`${p}/*`));
    prepare.addToRolePolicy(
      new PolicyStatement({ actions: ['s3:GetObject'], resources: objects('manifests', 'requests') }),
    );
    prepare.addToRolePolicy(new PolicyStatement({ actions: ['s3:PutObject'], resources: objects('batches') }));
    summarize.addToRolePolicy(
      new PolicyStatement({ actions: ['s3:GetObject'], resources: objects('batches', 'map-runs') }),
    );
    summarize.addToRolePolicy(new PolicyStatement({ actions: ['s3:PutObject'], resources: objects('batches') }));

    const batches = make('Batches', {
      operation: 'batches',
      description: 'POST /v1/batches and GET /v1/batches/{batchId}',
      environment: { STATE_MACHINE_ARN: this.batch.stateMachine.stateMachineArn, BATCH_BUCKET: bucket.bucketName },
    });
    this.batch.stateMachine.grantStartExecution(batches);
    batches.addToRolePolicy(
      new PolicyStatement({
        actions: ['states:DescribeExecution', 'states:GetExecutionHistory'],
        resources: [
          Stack.of(this).formatArn({
            service: 'states',
            resource: 'execution',
            resourceName: `${this.batch.stateMachine.stateMachineName}:*`,
            arnFormat: ArnFormat.COLON_RESOURCE_NAME,
          }),
        ],
      }),
    );
    batches.addToRolePolicy(new PolicyStatement({ actions: ['s3:PutObject'], resources: objects('requests') }));

    const cancellations = make('Cancellations', {
      operation: 'cancellations',
      description: 'GET /v1/cancellations: the audit ledger',
    });
    const expirationsFn = make('Expirations', {
      operation: 'expirations',
      description: 'POST, GET and DELETE /v1/expirations',
      environment: { BATCH_BUCKET: bucket.bucketName },
    });
    const expirations = new Expirations(this, 'Expiry', {
      fn: expirationsFn,
      stateMachine: this.batch.stateMachine,
      lookup,
      removalPolicy,
    });
    this.expirations = expirations;
    // Long item lists of a schedule wait in S3 (expirations/), read back by Prepare when the schedule fires.
    expirationsFn.addToRolePolicy(
      new PolicyStatement({ actions: ['s3:PutObject'], resources: objects('expirations') }),
    );
    prepare.addToRolePolicy(new PolicyStatement({ actions: ['s3:GetObject'], resources: objects('expirations') }));

    // The ledger and idempotency records: each function gets the actions it uses, on the table it uses.
    this.tables = new CancellationTables(this, 'Tables', { removalPolicy });
    for (const fn of Object.values(cancel)) {
      this.tables.grantLedger(fn, 'write-and-read-target');
      this.tables.grantIdempotency(fn);
    }
    this.tables.grantLedger(summarize, 'write');
    this.tables.grantLedger(cancellations, 'query');
    this.tables.grantIdempotency(batches);
    this.tables.grantLedger(batches, 'progress');
    // The providers' circuits: the cancel functions keep them, Summarize reads them to plan each round.
    for (const fn of Object.values(cancel)) this.tables.grantCircuits(fn, 'update');
    this.tables.grantCircuits(summarize, 'read');

    this.functions = functions;
    // Each route's function, by its operation (shared/routes.ts).
    const byOperation = new Map(Object.values(functions).map((fn) => [fn.operation, fn]));
    const routed = FUNCTIONS.map((name) => {
      const fn = byOperation.get(name);
      if (!fn) throw new Error(`No function has operation ${name}, which shared/routes.ts routes to`);
      return [name, fn] as const;
    });
    this.api = new CancellationsApi(this, 'Http', {
      removalPolicy,
      functions: Object.fromEntries(routed) as Record<FunctionName, ProviderFunction>,
    });
    new Monitoring(this, 'Monitoring', {
      functions: this.functions,
      stateMachine: this.batch.stateMachine,
      namespace,
      deadLetterQueues: [expirations.deadLetters],
    });

    new CfnOutput(this, 'ApiUrl', {
      value: this.api.url,
      description: 'HTTP API (IAM-authorized: sign requests with SigV4)',
    });
    new CfnOutput(this, 'StateMachineArn', {
      value: this.batch.stateMachine.stateMachineArn,
      description: 'Batch state machine: start it from the console with a batch input',
    });
    new CfnOutput(this, 'BatchBucket', {
      value: bucket.bucketName,
      description: 'Upload JSONL manifests under manifests/',
    });
    for (const [provider, secret] of Object.entries(this.secrets.secrets)) {
      new CfnOutput(this, `${provider}Secret`, {
        value: secret.secretArn,
        description: `Put the ${provider} credentials here (README, Deploy)`,
      });
    }
    acknowledgeFindings(this);
  }
}
