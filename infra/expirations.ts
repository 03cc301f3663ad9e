/**
 * Scheduled expirations: the schedule group the expirations function writes one-time schedules into, the role
 * EventBridge Scheduler assumes to start the batch state machine (and nothing else), and the dead-letter queue
 * for a start that keeps failing (alarmed in Monitoring).
 */
import { Duration, type RemovalPolicy, Stack } from 'aws-cdk-lib';
import { PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { ScheduleGroup } from 'aws-cdk-lib/aws-scheduler';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import type { StateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { ProviderFunction } from './provider-function.ts';

export interface ExpirationsProps {
  readonly fn: ProviderFunction;
  readonly stateMachine: StateMachine;
  readonly lookup: IFunction;
  readonly removalPolicy: RemovalPolicy;
}

export class Expirations extends Construct {
  readonly group: ScheduleGroup;
  readonly role: Role;
  readonly deadLetters: Queue;

  constructor(scope: Construct, id: string, props: ExpirationsProps) {
    super(scope, id);
    this.group = new ScheduleGroup(this, 'Group', { removalPolicy: props.removalPolicy });
    this.deadLetters = new Queue(this, 'DeadLetters', {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    const account = Stack.of(this).account;
    const schedulesOfGroup = Stack.of(this).formatArn({
      service: 'scheduler',
      resource: 'schedule',
      resourceName: `${this.group.scheduleGroupName}/*`,
    });
    this.role = new Role(this, 'SchedulerRole', {
      description: 'Assumed by EventBridge Scheduler to start the batch state machine at an expiry',
      // Only schedules of this account's own group may assume it (confused-deputy protection).
      assumedBy: new ServicePrincipal('scheduler.amazonaws.com', {
        conditions: {
          StringEquals: { 'aws:SourceAccount': account },
          ArnLike: { 'aws:SourceArn': schedulesOfGroup },
        },
      }),
    });
    // Schedules use the universal target sfn:startExecution (to name the execution, functions/expirations): the
    // role needs the API's own permission, states:StartExecution on this state machine, and nothing more.
    props.stateMachine.grantStartExecution(this.role);
    this.deadLetters.grantSendMessages(this.role);

    const fn = props.fn;
    fn.addEnvironment('SCHEDULE_GROUP', this.group.scheduleGroupName);
    fn.addEnvironment('SCHEDULER_ROLE_ARN', this.role.roleArn);
    fn.addEnvironment('SCHEDULER_DLQ_ARN', this.deadLetters.queueArn);
    fn.addEnvironment('STATE_MACHINE_ARN', props.stateMachine.stateMachineArn);
    fn.addEnvironment('LOOKUP_FUNCTION_NAME', props.lookup.functionName);
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: [
          'scheduler:CreateSchedule',
          'scheduler:UpdateSchedule',
          'scheduler:GetSchedule',
          'scheduler:DeleteSchedule',
        ],
        resources: [schedulesOfGroup],
      }),
    );
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['iam:PassRole'],
        resources: [this.role.roleArn],
        conditions: { StringEquals: { 'iam:PassedToService': 'scheduler.amazonaws.com' } },
      }),
    );
    // The function itself, not its versions: grantInvoke would add `<arn>:*`.
    fn.addToRolePolicy(
      new PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [props.lookup.functionArn] }),
    );
    props.stateMachine.grantStartExecution(fn);
  }
}
