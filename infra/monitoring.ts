/**
 * Alarms on what needs a person (function errors and throttles, a batch function throttled while it runs nothing,
 * failed or timed-out batch executions, undeliverable schedules, a provider unreachable for 15 minutes, a provider
 * refusing cancellations, items given up at a batch's deadline) and a dashboard of cancellations by provider and
 * outcome and of each provider's circuit, from the metrics the functions emit (shared/observability/metrics.ts).
 */
import { Duration, Stack } from 'aws-cdk-lib';
import {
  Alarm,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  type IMetric,
  MathExpression,
  Metric,
  Stats,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import type { StateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { OUTCOMES, PROVIDERS } from '#shared/core/outcome.ts';

export interface MonitoringProps {
  readonly functions: Record<string, IFunction>;
  /** Functions the state machine invokes whose throttling is designed queuing (infra/budget.ts: many executions at
   * once queue on a few containers, and the definition retries them): alarmed only when throttled while running
   * nothing, not on every busy night. */
  readonly queuing?: readonly IFunction[];
  readonly stateMachine: StateMachine;
  readonly deadLetterQueues?: IQueue[];
  /** The namespace the functions' metrics go to (METRICS_NAMESPACE). */
  readonly namespace: string;
  /** Subscribed to the alarm topic by email (`cdk deploy -c alarmEmail=...`); confirm the mail AWS sends. */
  readonly alarmEmail?: string;
}

export class Monitoring extends Construct {
  readonly topic: Topic;
  readonly alarms: Alarm[] = [];
  readonly dashboard: Dashboard;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    this.topic = new Topic(this, 'Alarms', {
      displayName: 'Provider cancellations alarms',
      masterKey: new Key(this, 'AlarmsKey', { enableKeyRotation: true }),
      enforceSSL: true,
    });
    // CloudWatch publishes alarm notifications as itself: the topic's policy and its key's policy must both let it,
    // or every alarm fails silently (the key policy otherwise names only the account). Only for this account's
    // alarms: the service principal is conditioned on the source account (confused-deputy protection).
    this.topic.grantPublish(
      new ServicePrincipal('cloudwatch.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(this).account } },
      }),
    );
    if (props.alarmEmail) this.topic.addSubscription(new EmailSubscription(props.alarmEmail));
    const alarm = (name: string, metric: IMetric, description: string, threshold = 1) => {
      const a = new Alarm(this, name, {
        metric,
        threshold,
        evaluationPeriods: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      });
      a.addAlarmAction(new SnsAction(this.topic));
      this.alarms.push(a);
    };
    for (const [name, fn] of Object.entries(props.functions)) {
      alarm(
        `${name}Errors`,
        fn.metricErrors({ period: Duration.minutes(5) }),
        `${name}: the function raised errors (a bug or a crash, not a provider refusal)`,
      );
      if (props.queuing?.includes(fn)) {
        // Throttled while it ran nothing in five minutes: its reservation is 0 (set by hand, or by Lambda itself) or
        // every container is stuck, and batches wait on it until their deadlines. Throttled while it runs is the
        // budget at work (README, Architecture); items it delays past their batch's deadline raise GivenUp.
        // IF, AND and FILL: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-metric-math.html
        alarm(
          `${name}Stalled`,
          new MathExpression({
            expression: 'IF(FILL(throttles, 0) > 0 AND FILL(invocations, 0) == 0, 1, 0)',
            usingMetrics: {
              throttles: fn.metricThrottles({ period: Duration.minutes(5) }),
              invocations: fn.metricInvocations({ period: Duration.minutes(5) }),
            },
            period: Duration.minutes(5),
          }),
          `${name}: throttled for five minutes without running once (its reserved concurrency is 0, or every container is stuck): batch items wait on it until their deadlines`,
        );
      } else {
        alarm(
          `${name}Throttles`,
          fn.metricThrottles({ period: Duration.minutes(5) }),
          `${name}: invocations were throttled (an API caller was refused, or the account's concurrency ran out)`,
        );
      }
    }
    alarm(
      'BatchExecutionsFailed',
      props.stateMachine.metricFailed({ period: Duration.minutes(5) }),
      'A batch execution failed (invalid input, an unreadable guard, or a bug): nothing after the failure was cancelled; its error says why',
    );
    alarm(
      'BatchExecutionsTimedOut',
      props.stateMachine.metricTimedOut({ period: Duration.minutes(5) }),
      "A batch execution ran past the state machine's timeout (the latest deadline and an hour): items still pending were not cancelled",
    );
    for (const [i, queue] of (props.deadLetterQueues ?? []).entries()) {
      alarm(
        `DeadLetters${i}`,
        queue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5) }),
        'A scheduled expiration could not start its batch',
      );
    }

    /** A metric the functions emit (shared/observability/metrics.ts), per provider, over 5 minutes. */
    const providerMetric = (provider: string, name: string, statistic: string, more: Record<string, string> = {}) =>
      new Metric({
        namespace: props.namespace,
        metricName: name,
        dimensionsMap: { Provider: provider, ...more },
        statistic,
        period: Duration.minutes(5),
      });
    // A provider's circuit (shared/core/circuit.ts), as the cancel functions and Summarize see it: open or not, and for how
    // long. Each round of a waiting batch and each probe reports it, so an outage shows within a round's wait.
    const circuit = (provider: string, name: 'CircuitOpen' | 'UnreachableSeconds') =>
      providerMetric(provider, name, Stats.MAXIMUM);
    for (const provider of PROVIDERS) {
      alarm(
        `${provider}Unreachable`,
        circuit(provider, 'UnreachableSeconds'),
        `${provider} has been unreachable for 15 minutes (its circuit is open): batches wait in rounds until their deadline, then report the items failed`,
        15 * 60,
      );
    }

    // A refusal (`rejected`) is final and, with our input validated before anything is sent, almost always ours to
    // fix: credentials revoked or wrong (401 after a refreshed secret), organization headers (403), a wrong baseUrl or
    // apiVersion, an answer whose signature does not verify. Nobody waits on a scheduled expiration's result, so
    // the first one tells a person. So does the first item a batch gives up at its deadline, still failing
    // (Summarize's GivenUp).
    for (const provider of PROVIDERS) {
      alarm(
        `${provider}Rejected`,
        providerMetric(provider, 'Cancellations', Stats.SUM, { Outcome: 'rejected' }),
        `${provider} refused cancellations as invalid or unauthorized (outcome rejected): check its secret, baseUrl and apiVersion; each ledger entry's message says why`,
      );
      alarm(
        `${provider}GivenUp`,
        providerMetric(provider, 'GivenUp', Stats.SUM),
        `${provider}: a batch gave items up at its deadline, still failing (not cancelled); the batch's result and each ledger entry say why`,
      );
    }

    // One line per provider and outcome, found by SEARCH so new combinations appear without a redeploy.
    const byOutcome = (provider: string) =>
      new MathExpression({
        expression: `SEARCH('{${props.namespace},Provider,Outcome} MetricName="Cancellations" Provider="${provider}"', 'Sum', 300)`,
        label: provider,
        period: Duration.minutes(5),
      });
    this.dashboard = new Dashboard(this, 'Dashboard', {
      widgets: [
        PROVIDERS.map(
          (provider) =>
            new GraphWidget({
              title: `${provider}: cancellations by outcome (${OUTCOMES.join(', ')})`,
              left: [byOutcome(provider)],
              width: 6,
              stacked: true,
            }),
        ),
        PROVIDERS.map(
          (provider) =>
            new GraphWidget({
              title: `${provider}: circuit (1 open) and seconds unreachable`,
              left: [circuit(provider, 'CircuitOpen')],
              right: [circuit(provider, 'UnreachableSeconds')],
              leftYAxis: { min: 0, max: 1 },
              width: 6,
            }),
        ),
        [
          new GraphWidget({
            title: 'Batch executions',
            left: [
              props.stateMachine.metricStarted(),
              props.stateMachine.metricSucceeded(),
              props.stateMachine.metricFailed(),
            ],
            width: 12,
          }),
          new GraphWidget({
            title: 'Function errors',
            left: Object.values(props.functions).map((fn) => fn.metricErrors()),
            width: 12,
          }),
        ],
        [
          new GraphWidget({
            title: 'Function throttles (batch deployments: queuing by design; any other: a caller refused)',
            left: Object.values(props.functions).map((fn) => fn.metricThrottles()),
            width: 24,
          }),
        ],
      ],
    });
  }
}
