/**
 * The whole system in one stack: the provider functions and their secrets, the batch state machine, the HTTP API,
 * monitoring. No physical name is hard-coded, so stages deploy side by side (`cdk deploy -c stage=...`).
 */
import { ArnFormat, CfnOutput, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import { type IRole, Policy, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import type { Provider } from '#shared/core/outcome.ts';
import { FUNCTIONS, type FunctionName } from '#shared/handler/routes.ts';
import { REGISTRY } from '#shared/providers/index.ts';
import type { ProviderFunctionSpec } from '#shared/providers/provider.ts';
import { BatchStateMachine, RESULT_WRITER_V2_FLAG } from './batch-state-machine.ts';
import { apiReservedConcurrency, paceOf, providerOf, reservedConcurrency, sharedBudget } from './budget.ts';
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
  /** Where alarms are mailed (`-c alarmEmail=...`): an email subscription to the alarm topic. */
  readonly alarmEmail?: string;
}

export class CancellationsStack extends Stack {
  readonly functions: Record<string, ProviderFunction>;
  /** Summarize's grant to read its execution's history (a policy apart from its role's default one). */
  readonly summarizeReadsHistory: Policy;
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
      const reserved = reservedConcurrency(fn.operation);
      functions[id] = new ProviderFunction(this, id, {
        removalPolicy,
        ...(reserved ? { reservedConcurrentExecutions: reserved } : {}),
        ...fn,
        environment: { METRICS_NAMESPACE: namespace, ...fn.environment },
      });
      return functions[id];
    };

    /** Each function's pace of its provider: its containers' share of the budget, or the whole budget metered across
     * containers where several functions share it (infra/budget.ts). */
    const pace = (operation: FunctionName) => ({
      [`${String(providerOf(operation)).toUpperCase()}_RATE_PER_SECOND`]: String(paceOf(operation)),
    });
    /** What the providers' hooks read in the functions that run them (Auco's codes per call: its cancel function
     * and Prepare, which chunks). */
    const hooks = Object.assign({}, ...REGISTRY.map((p) => ('environment' in p ? p.environment : {})));
    const pascal = (s: string) => s.replace(/(^|-)(\w)/g, (_m, _d, c: string) => c.toUpperCase());
    /** A function that calls a provider: its batch deployment, or (`api`: its reservation) its API deployment, the
     * same handler with containers of its own, serving the operation's route, so an API caller is not throttled
     * behind batches (and guards) that hold every container of the deployment they call. */
    const provided = (
      provider: Provider,
      spec: ProviderFunctionSpec,
      environment: Record<string, string>,
      api?: number,
    ) =>
      make(`${pascal(spec.fn)}${api === undefined ? '' : 'Api'}`, {
        operation: spec.fn,
        description: api === undefined ? spec.description : `${spec.description} (API calls)`,
        environment: { ...pace(spec.fn), ...environment },
        ...(api === undefined ? {} : { reservedConcurrentExecutions: api, deployment: 'api' as const }),
      }).bindSecret(this.secrets.secrets[provider]);

    // Each provider's functions, the first its cancel function (the batch maps fan out to it; it and its API
    // deployment get the provider's settings, such as Auco's chunking), each with its API deployment if it has one.
    const cancel = {} as Record<Provider, ProviderFunction>;
    const apiDeployments = new Map<FunctionName, ProviderFunction>();
    for (const p of REGISTRY) {
      for (const [i, spec] of p.functions.entries()) {
        const environment = i === 0 && 'environment' in p ? p.environment : {};
        const fn = provided(p.name, spec, environment);
        if (i === 0) cancel[p.name] = fn;
        const api = apiReservedConcurrency(spec.fn);
        if (api !== undefined) apiDeployments.set(spec.fn, provided(p.name, spec, environment, api));
      }
    }
    const lookup = functions.GetCreditApplication;
    if (!lookup) throw new Error('No provider module lists get-credit-application, the batch guard');
    const apiFns = [...apiDeployments.values()];
    /** Every deployment of a cancel operation, and of the lookup. */
    const cancelers = [...Object.values(cancel), ...apiFns.filter((fn) => fn.operation !== lookup.operation)];
    const lookups = [lookup, ...apiFns.filter((fn) => fn.operation === lookup.operation)];
    /** The provider functions' deployments the state machine invokes (and expirations, through it). */
    const batchDeployments = [...Object.values(cancel), lookup];
    /** The provider whose secret holds the guard's default organization ids. */
    const guardSecret = this.secrets.secrets[providerOf(lookup.operation) as Provider];
    // Prepare and Summarize parse and write whole manifests (up to 100,000 items): more memory and time.
    const big = { memorySize: 1024, timeout: Duration.minutes(5) };
    const prepare = make('BatchPrepare', {
      operation: 'batch-prepare',
      description: 'Batch: validate, de-duplicate, chunk',
      environment: hooks,
      ...big,
    });
    const summarize = make('BatchSummarize', {
      operation: 'batch-summarize',
      description: 'Batch: one outcome per item, counts',
      ...big,
    });

    this.batch = new BatchStateMachine(this, 'Batch', { prepare, summarize, lookup, cancel, removalPolicy });
    /** Executions of the batch state machine (their names are made per batch). */
    const executions = Stack.of(this).formatArn({
      service: 'states',
      resource: 'execution',
      resourceName: `${this.batch.stateMachine.stateMachineName}:*`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    // Summarize reads its own execution's history: how much of the 25,000 events its rounds have used
    // (shared/batch/rounds.ts). A policy of its own: on the role's default policy the grant would make the function
    // depend on the state machine, which depends on the function.
    this.summarizeReadsHistory = new Policy(this, 'SummarizeReadsHistory', {
      roles: [summarize.role as IRole],
      statements: [new PolicyStatement({ actions: ['states:GetExecutionHistory'], resources: [executions] })],
    });
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
    // The lookup's provider's secret (its organizationId) is the default of a guard's organization ids: without either, a
    // guarded batch is refused (400) before it starts.
    batches.bindSecret(guardSecret);
    this.batch.stateMachine.grantStartExecution(batches);
    batches.addToRolePolicy(
      new PolicyStatement({
        actions: ['states:DescribeExecution', 'states:GetExecutionHistory'],
        resources: [executions],
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
    }).bindSecret(guardSecret); // as Batches: the guard's default organization ids
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
    for (const fn of cancelers) {
      this.tables.grantLedger(fn, 'write-and-read-target');
      this.tables.grantIdempotency(fn);
    }
    // A metered budget (every provider's today: infra/budget.ts) is one table item across all their containers.
    for (const fn of [...cancelers, ...lookups]) {
      const provider = providerOf(fn.operation);
      if (provider && sharedBudget(provider)) this.tables.grantRateBudget(fn);
    }
    this.tables.grantLedger(summarize, 'write');
    this.tables.grantLedger(cancellations, 'query');
    this.tables.grantIdempotency(batches);
    this.tables.grantLedger(batches, 'progress');
    // Who started each execution, for the ledger's caller: said by those that start them, read by Prepare.
    this.tables.grantExecutionStarts(expirationsFn, 'record');
    this.tables.grantExecutionStarts(prepare, 'read');
    // The providers' circuits: the batch deployments of the cancel functions and the batch guard's lookup keep them
    // (API calls are not gated), Summarize reads them to plan each round.
    for (const fn of batchDeployments) this.tables.grantCircuits(fn, 'update');
    this.tables.grantCircuits(summarize, 'read');

    this.functions = functions;
    // Each route's function, by its operation (shared/handler/routes.ts): its API deployment where it has one.
    const byOperation = new Map(Object.values(functions).map((fn) => [fn.operation, fn]));
    const routed = FUNCTIONS.map((name) => {
      const fn = apiDeployments.get(name) ?? byOperation.get(name);
      if (!fn) throw new Error(`No function has operation ${name}, which shared/handler/routes.ts routes to`);
      return [name, fn] as const;
    });
    this.api = new CancellationsApi(this, 'Http', {
      removalPolicy,
      functions: Object.fromEntries(routed) as Record<FunctionName, ProviderFunction>,
    });
    new Monitoring(this, 'Monitoring', {
      functions: this.functions,
      // Their throttling is queuing by design.
      queuing: batchDeployments,
      stateMachine: this.batch.stateMachine,
      namespace,
      deadLetterQueues: [expirations.deadLetters],
      ...(props.alarmEmail ? { alarmEmail: props.alarmEmail } : {}),
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
