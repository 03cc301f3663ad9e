/**
 * One Lambda function of this project, with every deployment choice made once (STYLE.md: the Powertools
 * example app's construct, plus least privilege and an explicit log group).
 */
import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy, Tags } from 'aws-cdk-lib';
import { Effect, PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Architecture, Runtime, Tracing } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import type { BuildOptions } from 'esbuild';
import type { FunctionName } from '#shared/handler/routes.ts';

export const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));

/** How every function is bundled (esbuild): the stack's, and so the local twin's containers' and the bench's, so
 * what runs locally is what deploys. ESM lets esbuild drop unused exports; minified for a smaller, faster-to-parse
 * bundle; the AWS SDK is bundled (not taken from the runtime) so the version we test is the version we run. Some
 * CommonJS dependencies call require() on Node built-ins; ESM has no require, so the banner gives it one. */
export const BUNDLE = {
  target: 'node24',
  minify: true,
  mainFields: ['module', 'main'],
  banner: "import{createRequire as __cr}from'module';const require=__cr(import.meta.url);",
  /** node:http without the ESM import that loads Node's bundled undici at every cold start (infra/node-http.cjs). */
  alias: { 'node:http': `${PROJECT_ROOT}infra/node-http.cjs`, http: `${PROJECT_ROOT}infra/node-http.cjs` },
} as const;

/** BUNDLE as esbuild's own build options, which NodejsFunction passes on esbuild's command line: for building the
 * same bundles outside CDK (the local twin's containers, the bench's floor). */
export function bundleBuildOptions(): BuildOptions {
  return {
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: BUNDLE.target,
    minify: BUNDLE.minify,
    mainFields: [...BUNDLE.mainFields],
    banner: { js: BUNDLE.banner },
    alias: { ...BUNDLE.alias },
  };
}

export interface ProviderFunctionProps {
  /** The folder under `functions/` whose `handler.ts` this function runs. */
  readonly operation: FunctionName | 'batch-prepare' | 'batch-summarize';
  readonly description: string;
  /**
   * 256 MB by default: the work is waiting on providers, but Lambda gives CPU in proportion to memory and the
   * cold start (parsing a ~0.5 MB bundle) is CPU-bound; 256 MB on arm64 halves it against 128 MB for a small
   * difference in price. Batch functions that parse large manifests take more.
   */
  readonly memorySize?: number;
  /**
   * 25 s by default: below API Gateway's 30 s integration limit, so an API caller always gets our answer (a clean
   * `failed` outcome at worst) rather than a gateway timeout. The handler keeps a reserve before it for replying.
   */
  readonly timeout?: Duration;
  readonly environment?: Record<string, string>;
  /** Containers this function may run at once: a provider function's share of its provider's budget
   * (infra/budget.ts). Unreserved functions draw on the account's concurrency. */
  readonly reservedConcurrentExecutions?: number;
  /** `api`: an operation's API deployment, which serves its route beside the deployment batches call (tagged
   * `deployment: api`; shared/providers/provider.ts, `api`). */
  readonly deployment?: 'api';
  readonly logRetention?: RetentionDays;
  readonly removalPolicy?: RemovalPolicy;
}

export class ProviderFunction extends NodejsFunction {
  /** The function's own log group (explicit, with retention), also what `logGroup` returns. */
  readonly functionLogGroup: LogGroup;
  readonly operation: ProviderFunctionProps['operation'];
  readonly deployment: 'api' | undefined;

  constructor(scope: Construct, id: string, props: ProviderFunctionProps) {
    const logGroup = new LogGroup(scope, `${id}Logs`, {
      retention: props.logRetention ?? RetentionDays.THREE_MONTHS,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });
    // Our own role, not the AWSLambdaBasicExecutionRole managed policy: it may write to its own log group only.
    const role = new Role(scope, `${id}Role`, {
      assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
      description: `Runs the ${props.operation} function${props.deployment ? ` (${props.deployment} deployment)` : ''}`,
    });
    super(scope, id, {
      description: props.description,
      entry: `${PROJECT_ROOT}functions/${props.operation}/handler.ts`,
      handler: 'handler',
      projectRoot: PROJECT_ROOT,
      depsLockFilePath: `${PROJECT_ROOT}package-lock.json`,
      runtime: Runtime.NODEJS_24_X,
      architecture: Architecture.ARM_64,
      memorySize: props.memorySize ?? 256,
      ...(props.reservedConcurrentExecutions !== undefined
        ? { reservedConcurrentExecutions: props.reservedConcurrentExecutions }
        : {}),
      timeout: props.timeout ?? Duration.seconds(25),
      role,
      logGroup,
      tracing: Tracing.ACTIVE,
      environment: { OPERATION: props.operation, LOG_LEVEL: 'info', ...props.environment },
      bundling: {
        format: OutputFormat.ESM,
        target: BUNDLE.target,
        minify: BUNDLE.minify,
        // Source maps are written next to the bundle for reading stack traces, but not enabled at runtime:
        // --enable-source-maps costs cold-start time on every invocation.
        sourceMap: true,
        sourcesContent: false,
        mainFields: [...BUNDLE.mainFields],
        externalModules: [],
        banner: BUNDLE.banner,
        esbuildArgs: Object.fromEntries(Object.entries(BUNDLE.alias).map(([from, to]) => [`--alias:${from}`, to])),
      },
    });
    this.functionLogGroup = logGroup;
    this.operation = props.operation;
    this.deployment = props.deployment;
    if (props.deployment) Tags.of(this).add('deployment', props.deployment);
    role.addToPrincipalPolicy(
      new PolicyStatement({
        effect: Effect.ALLOW,
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [logGroup.logGroupArn],
      }),
    );
  }

  /** Grants read on the provider's secret, and only that, and tells the function where it is, in one call. */
  bindSecret(secret: ISecret): this {
    secret.grantRead(this);
    this.addEnvironment('SECRET_ID', secret.secretArn);
    return this;
  }
}
