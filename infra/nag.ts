/**
 * cdk-nag (AwsSolutions) findings we accept, each with the reason it is right here. Anything not listed fails
 * synthesis. IAM5 findings are acknowledged one finding at a time, on the narrowest scope that has them, with the
 * logical ids computed from the constructs (so a rename cannot silently widen or break an acknowledgement).
 */
import { type CfnElement, Stack, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';
import type { CancellationsStack } from './stack.ts';

const IAM5 = (finding: string) => `AwsSolutions::AwsSolutions-IAM5[${finding}]`;

function logicalId(construct: IConstruct): string {
  return Stack.of(construct).getLogicalId(construct.node.defaultChild as CfnElement);
}

export function acknowledgeFindings(stack: CancellationsStack): void {
  for (const secret of Object.values(stack.secrets.secrets)) {
    Validations.of(secret).acknowledge({
      id: 'AwsSolutions::AwsSolutions-SMG4',
      reason:
        'Provider credentials (OAuth client credentials, API keys) are issued by the providers and rotated in their dashboards, which Secrets Manager cannot drive; the functions refetch the secret after a provider 401, so a rotation applies within one call.',
    });
  }

  for (const fn of Object.values(stack.functions)) {
    Validations.of(fn.role ?? fn).acknowledge({
      id: IAM5('Resource::*'),
      reason:
        'Active X-Ray tracing: xray:PutTraceSegments and xray:PutTelemetryRecords have no resource-level permissions (AWS docs, "Actions, resources, and condition keys for AWS X-Ray").',
    });
  }

  const bucket = stack.batch.bucket;
  const bucketId = logicalId(bucket);
  const objectPrefix = (prefix: string) => IAM5(`Resource::<${bucketId}.Arn>/${prefix}/*`);
  const prefixReason =
    'Object keys are per execution (batches/<execution>/..., requests/<id>.jsonl, map-runs/<map run>/...), unknown at deploy time; the grant is limited to the prefix this function reads or writes, in the one batch bucket.';
  const { BatchPrepare, BatchSummarize, Batches } = stack.functions;
  for (const [fn, prefixes] of [
    [BatchPrepare, ['manifests', 'requests', 'batches', 'expirations']],
    [BatchSummarize, ['batches', 'map-runs']],
    [Batches, ['requests']],
    [stack.functions.Expirations, ['expirations']],
  ] as const) {
    if (!fn) continue;
    Validations.of(fn.role ?? fn).acknowledge(...prefixes.map((p) => ({ id: objectPrefix(p), reason: prefixReason })));
  }
  if (Batches) {
    Validations.of(Batches.role ?? Batches).acknowledge({
      id: IAM5(
        `Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:<${logicalId(stack.batch.stateMachine)}.Name>:*`,
      ),
      reason:
        'GET /v1/batches/{id} describes executions of this one state machine; execution names are generated per batch.',
    });
  }

  const machine = stack.batch.stateMachine;
  const machineRole = machine.role;
  const invoked = [...Object.values(stack.functions)].filter((fn) =>
    [
      'BatchPrepare',
      'BatchSummarize',
      'GetCreditApplication',
      'CancelDocumentRequest',
      'CancelSigningProcesses',
      'CancelVerificationOrder',
      'CancelBillingRequest',
    ].includes(fn.node.id),
  );
  Validations.of(machineRole).acknowledge(
    {
      id: IAM5('Resource::*'),
      reason:
        'X-Ray tracing (xray:PutTraceSegments, xray:GetSamplingRules...) and CloudWatch Logs delivery for state machine logging (logs:CreateLogDelivery, logs:DescribeResourcePolicies...) have no resource-level permissions.',
    },
    ...invoked.map((fn) => ({
      id: IAM5(`Resource::<${logicalId(fn)}.Arn>:*`),
      reason:
        'LambdaInvoke grants the function and its versions/aliases (<arn>:*), the same function and nothing else.',
    })),
    {
      id: IAM5(`Resource::arn:<AWS::Partition>:s3:::<${bucketId}>/*`),
      reason:
        'The Distributed Map reads the per-execution task manifests (ItemReader) and writes its results (ResultWriter) under keys chosen at run time, in the batch bucket only.',
    },
  );
  const machineName = `{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"${logicalId(machine)}"}]}]}`;
  Validations.of(machine).acknowledge(
    {
      id: IAM5(`Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:${machineName}:*`),
      reason:
        'A Distributed Map starts and describes child executions of its own state machine; their names are generated per map run.',
    },
    {
      id: IAM5(`Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:${machineName}/*:*`),
      reason:
        'A Distributed Map manages the map runs of its own state machine (execution:<machine>/<map run>:<id>), named at run time.',
    },
  );

  if (stack.expirations && stack.functions.Expirations) {
    const { group, deadLetters } = stack.expirations;
    Validations.of(stack.functions.Expirations.role ?? stack.functions.Expirations).acknowledge({
      id: IAM5(
        `Resource::arn:<AWS::Partition>:scheduler:<AWS::Region>:<AWS::AccountId>:schedule/${group.scheduleGroupName}/*`,
      ),
      reason:
        "One schedule per credit application is created, read, replaced and deleted at run time (expire-<id>); the grant is limited to this stack's own schedule group.",
    });
    Validations.of(deadLetters).acknowledge({
      id: 'AwsSolutions::AwsSolutions-SQS3',
      reason:
        'This queue is itself the dead-letter queue of the expiration schedules: each message is a schedule that could not start its batch, alarmed for a person to act on.',
    });
  }

  Validations.of(bucket).acknowledge({
    id: 'AwsSolutions::AwsSolutions-S1',
    reason:
      "The batch bucket holds manifests and results written and read only by this stack's roles; every access is an IAM-authorized API call recorded by CloudTrail, and a second log bucket would itself need logging.",
  });
}
