/**
 * The batch state machine (JSONPath, so the same definition also runs locally in aws-local-stepfunctions).
 *
 *   Prepare -> [Guard -> skip?] -> inline:   Parallel of one Map per provider            -> Summarize -> waiting?
 *                                  manifest: Parallel of one Distributed Map per provider -> Summarize -> waiting?
 *            waiting: Wait (the round's seconds) -> the same fan-out with the items still pending (a round)
 *   Guard failing for a reason that passes, its retries spent -> GuardRound -> Wait (the round's seconds) -> Guard
 *   again, until the deadline; then GuardRound reports every item `failed`, not attempted, and the execution ends.
 *
 * Rounds (shared/batch/rounds.ts): items that end a round `failed` for a transient reason are tried again, with their
 * own idempotency keys, after a growing Wait, until the batch's `deadline`; only then are they `failed`. A
 * provider whose circuit is open gets one item per round, its probe. Summarize decides, after every round.
 *
 * One map per provider, each with its own MaxConcurrency, keeps every provider inside its own rate budget: the
 * budget is the map's concurrency times the pace each function keeps (`<PROVIDER>_RATE_PER_SECOND`, the
 * provider's rate divided by that concurrency). Every item ends with an outcome: transient and rate-limited
 * errors are retried with full jitter and a maximum delay; anything else, a crashed Lambda included, is caught
 * into the iteration's result and Summarize turns it into a `failed` outcome.
 *
 * Distributed Map children are Express workflows: a child runs ITEMS_PER_CHILD items in well under Express's five
 * minutes, and Express is charged per request and duration instead of per state transition. Per 10,000 items
 * (400 children): Standard children cost about 400 + 400 x ~28 transitions, about $0.29; Express children 400
 * parent transitions ($0.01) plus 400 requests and their duration, under $0.02 (bench/ counts both). Express runs
 * a child at least once: the items' idempotency keys make a second run harmless.
 */
import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { BlockPublicAccess, Bucket, BucketEncryption, type IBucket } from 'aws-cdk-lib/aws-s3';
import {
  Choice,
  Condition,
  DefinitionBody,
  DistributedMap,
  type IChainable,
  ItemBatcher,
  JitterType,
  JsonPath,
  LogLevel,
  Map as MapState,
  Parallel,
  Pass,
  StateMachine,
  StateMachineType,
  Succeed,
  TaskInput,
  Wait,
  WaitTime,
} from 'aws-cdk-lib/aws-stepfunctions';
import { LambdaInvoke, type LambdaInvokeProps } from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { MAX_DEADLINE_MS } from '#shared/batch/input.ts';
import { ROUND_RETRYABLE_ERRORS, THROTTLE_RETRIES, THROTTLED_ERROR } from '#shared/batch/rounds.ts';
import { RETRYABLE_ERROR_NAME } from '#shared/core/errors.ts';
import { PROVIDERS, type Provider } from '#shared/core/outcome.ts';
import { providerModule, REGISTRY } from '#shared/providers/index.ts';
import { MapRunResultWriter, TaskFileReader } from './batch-objects.ts';
import { batchConcurrency } from './budget.ts';

/** ResultWriterV2 is silently left out of the definition without this flag (TOOLING.md 1). */
export const RESULT_WRITER_V2_FLAG = '@aws-cdk/aws-stepfunctions:useDistributedMapResultWriterV2';

/** Concurrent cancellations per provider in one batch (the map's MaxConcurrency): the cancel function's reserved
 * concurrency (infra/budget.ts). Several batches at once are bounded by the reservation itself, not by this. */
export const BATCH_CONCURRENCY = Object.fromEntries(
  REGISTRY.map((p) => [p.name, batchConcurrency(p.name)]),
) as unknown as Record<Provider, number>;
/** Items per Distributed Map child workflow (ItemBatcher). */
export const ITEMS_PER_CHILD = 25;
/** Error names the item task retries; everything else is caught. */
const RATE_LIMITED = [RETRYABLE_ERROR_NAME.rate_limited];
const TRANSIENT = [RETRYABLE_ERROR_NAME.transient, RETRYABLE_ERROR_NAME.timeout];
const LAMBDA_SERVICE = [
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.ClientExecutionTimeoutException',
];
const pascal = (s: string) => s.replace(/(^|-)(\w)/g, (_m, _d, c: string) => c.toUpperCase());

export interface BatchStateMachineProps {
  readonly prepare: IFunction;
  readonly summarize: IFunction;
  readonly lookup: IFunction;
  readonly cancel: Record<Provider, IFunction>;
  readonly removalPolicy?: RemovalPolicy;
}

export class BatchStateMachine extends Construct {
  readonly stateMachine: StateMachine;
  readonly bucket: IBucket;
  readonly logGroup: LogGroup;

  constructor(scope: Construct, id: string, props: BatchStateMachineProps) {
    super(scope, id);
    if (Stack.of(this).node.tryGetContext(RESULT_WRITER_V2_FLAG) !== true) {
      throw new Error(
        `BatchStateMachine needs the ${RESULT_WRITER_V2_FLAG} feature flag set before any construct is added (CancellationsStack does)`,
      );
    }

    this.bucket = new Bucket(this, 'Batches', {
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      lifecycleRules: [{ expiration: Duration.days(90) }],
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });

    const invoke = (name: string, fn: IFunction, extra: Partial<LambdaInvokeProps> = {}) =>
      new LambdaInvoke(this, name, {
        lambdaFunction: fn,
        payloadResponseOnly: true,
        retryOnServiceExceptions: false,
        ...extra,
      })
        // A function at its reserved concurrency is throttled before it runs (nothing happened): retried patiently,
        // since many executions at once (200 expirations at midnight) queue on a few containers by design
        // (infra/budget.ts). 1 s doubling to 30 s, full jitter, 40 attempts: about 18 minutes of waiting at most.
        .addRetry({
          errors: [THROTTLED_ERROR],
          interval: Duration.seconds(1),
          backoffRate: 2,
          maxDelay: Duration.seconds(30),
          maxAttempts: THROTTLE_RETRIES,
          jitterStrategy: JitterType.FULL,
        })
        .addRetry({
          errors: LAMBDA_SERVICE,
          interval: Duration.seconds(1),
          backoffRate: 2,
          maxAttempts: 4,
          jitterStrategy: JitterType.FULL,
        });

    /** The per-item chain, shared by the inline maps and the Distributed Map children. */
    const cancelItem = (provider: Provider, suffix: string): IChainable =>
      invoke(`Cancel${pascal(provider)}${suffix}`, props.cancel[provider])
        .addRetry({
          errors: RATE_LIMITED,
          interval: Duration.seconds(5),
          backoffRate: 2,
          maxAttempts: 5,
          maxDelay: Duration.seconds(60),
          jitterStrategy: JitterType.FULL,
        })
        .addRetry({
          errors: TRANSIENT,
          interval: Duration.seconds(2),
          backoffRate: 2,
          maxAttempts: 4,
          maxDelay: Duration.seconds(30),
          jitterStrategy: JitterType.FULL,
        })
        .addRetry({
          errors: ['Lambda.Unknown', 'States.Timeout'],
          interval: Duration.seconds(2),
          backoffRate: 2,
          maxAttempts: 2,
          jitterStrategy: JitterType.FULL,
        })
        .addCatch(
          // The task and its error, without the batch it carried: every caught item of an inline round sits in the
          // execution's state (256 KiB), and the batch is there once already.
          new Pass(this, `Caught${pascal(provider)}${suffix}`, {
            parameters: {
              item: JsonPath.objectAt('$.item'),
              ...(providerModule(provider).chunk
                ? { indexes: JsonPath.listAt('$.indexes') }
                : { index: JsonPath.numberAt('$.index') }),
              idempotencyKey: JsonPath.stringAt('$.idempotencyKey'),
              error: JsonPath.objectAt('$.error'),
            },
          }),
          { errors: ['States.ALL'], resultPath: '$.error' },
        );

    /** What each item's task receives: the item, its position(s), its key, and the batch it belongs to. */
    const itemSelector = (provider: Provider, batchPath: string) => ({
      item: JsonPath.stringAt('$$.Map.Item.Value.item'),
      // A provider that takes many targets per call (its `chunk` hook) gets a chunk's positions.
      ...(providerModule(provider).chunk
        ? { indexes: JsonPath.listAt('$$.Map.Item.Value.indexes') }
        : { index: JsonPath.numberAt('$$.Map.Item.Value.index') }),
      idempotencyKey: JsonPath.stringAt('$$.Map.Item.Value.idempotencyKey'),
      batch: JsonPath.objectAt(batchPath),
    });

    const prepare = invoke('Prepare', props.prepare, {
      payload: TaskInput.fromObject({
        input: JsonPath.entirePayload,
        executionId: JsonPath.executionId,
        executionName: JsonPath.executionName,
        startTime: JsonPath.stringAt('$$.Execution.StartTime'),
      }),
    });
    const summarize = invoke('Summarize', props.summarize);

    const inline = new Parallel(this, 'FanOutInline', { resultPath: '$.groups' });
    for (const provider of PROVIDERS) {
      const map = new MapState(this, `Inline${pascal(provider)}`, {
        itemsPath: `$.groups.${provider}`,
        maxConcurrency: BATCH_CONCURRENCY[provider],
        itemSelector: itemSelector(provider, '$.batch'),
      });
      map.itemProcessor(cancelItem(provider, ''));
      inline.branch(map);
    }

    const distributed = new Parallel(this, 'FanOutManifest', { resultPath: '$.fanout' });
    for (const provider of PROVIDERS) {
      const P = pascal(provider);
      const dmap = new DistributedMap(this, `Distributed${P}`, {
        itemReader: new TaskFileReader({
          bucket: this.bucket,
          key: JsonPath.stringAt(`$.manifests.${provider}.key`),
        }),
        // ItemBatcher does not render JsonPath tokens in BatchInput: the `.$` key is written out.
        itemBatcher: new ItemBatcher({ maxItemsPerBatch: ITEMS_PER_CHILD, batchInput: { 'batch.$': '$.batch' } }),
        maxConcurrency: BATCH_CONCURRENCY[provider],
        // Never fail the batch for failed children: their items are reported `failed` by Summarize instead.
        toleratedFailurePercentage: 100,
        resultWriterV2: new MapRunResultWriter(this.bucket),
        mapExecutionType: StateMachineType.EXPRESS,
      });
      const child = new MapState(this, `Child${P}`, {
        itemsPath: '$.Items',
        maxConcurrency: 1,
        itemSelector: itemSelector(provider, '$.BatchInput.batch'),
      });
      child.itemProcessor(cancelItem(provider, 'InChild'));
      dmap.itemProcessor(child);
      distributed.branch(
        new Choice(this, `Has${P}Items`)
          .when(Condition.isPresent(`$.manifests.${provider}`), dmap)
          .otherwise(new Pass(this, `No${P}Items`, { parameters: { skipped: true } })),
      );
    }

    const skipped = new Pass(this, 'Skipped', {
      parameters: {
        status: 'skipped',
        message: JsonPath.stringAt('$.guardResult.message'),
        guard: JsonPath.objectAt('$.guardResult'),
        summary: { total: JsonPath.numberAt('$.total'), unique: JsonPath.numberAt('$.unique') },
      },
    });
    const byMode = new Choice(this, 'Mode')
      .when(Condition.stringEquals('$.mode', 'manifest'), distributed.next(summarize))
      .otherwise(inline.next(summarize));
    /** After a round's decision (`status: waiting` with `round.waitSeconds`, else the batch's result): another round
     * after its wait, from `again`, or the end, the result as the execution's output. */
    const nextRound = (ids: { choice: string; wait: string; end: string }, again: IChainable) =>
      new Choice(this, ids.choice)
        .when(
          Condition.stringEquals('$.status', 'waiting'),
          new Wait(this, ids.wait, { time: WaitTime.secondsPath('$.round.waitSeconds') }).next(again),
        )
        .otherwise(new Succeed(this, ids.end));
    summarize.next(nextRound({ choice: 'Waiting', wait: 'NextRound', end: 'Done' }, byMode));

    // InputPath, not a payload path: a payload path renders as `"Parameters": "$.guard"`, which is not ASL.
    const guard = invoke('Guard', props.lookup, { inputPath: '$.guard', resultPath: '$.guardResult' }).addRetry({
      errors: [...RATE_LIMITED, ...TRANSIENT],
      interval: Duration.seconds(5),
      backoffRate: 2,
      maxAttempts: 4,
      maxDelay: Duration.seconds(60),
      jitterStrategy: JitterType.FULL,
    });
    // The guard's provider down or busy past those retries: the batch waits in rounds until its deadline, as its
    // items would, and cancels nothing before the guard has read the application; at the deadline every item ends
    // `failed`, not attempted, saying why (shared/batch/rounds.ts).
    const guardRound = invoke('GuardRound', props.summarize, {
      payload: TaskInput.fromObject({ guardRound: JsonPath.entirePayload }),
    });
    guard.addCatch(guardRound, { errors: [...ROUND_RETRYABLE_ERRORS], resultPath: '$.guardError' });
    guardRound.next(nextRound({ choice: 'GuardWaiting', wait: 'GuardNextRound', end: 'GuardGaveUp' }, guard));
    const definition = prepare.next(
      new Choice(this, 'HasGuard')
        .when(
          Condition.isPresent('$.guard'),
          guard.next(
            new Choice(this, 'GuardDecision')
              .when(Condition.booleanEquals('$.guardResult.skip', true), skipped)
              .otherwise(byMode),
          ),
        )
        .otherwise(byMode),
    );

    this.logGroup = new LogGroup(this, 'Logs', {
      retention: RetentionDays.THREE_MONTHS,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });
    this.stateMachine = new StateMachine(this, 'StateMachine', {
      definitionBody: DefinitionBody.fromChainable(definition),
      stateMachineType: StateMachineType.STANDARD,
      // The latest deadline a batch may have, and an hour for its last round and Summarize.
      timeout: Duration.millis(MAX_DEADLINE_MS).plus(Duration.hours(1)),
      tracingEnabled: true,
      logs: { destination: this.logGroup, level: LogLevel.ALL, includeExecutionData: true },
      comment: 'Cancel in-flight provider work for credit applications (see infra/batch-state-machine.ts)',
    });
  }
}
