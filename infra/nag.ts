/**
 * cdk-nag (AwsSolutions) findings we accept, each with the reason it is right here. Anything not listed fails
 * synthesis. IAM5 findings are acknowledged one finding at a time, on the narrowest scope that has them, with the
 * logical ids computed from the constructs (so a rename cannot silently widen or break an acknowledgement).
 */
import { type CfnElement, Stack, Validations } from 'aws-cdk-lib';
import { CfnPolicy, CfnRole } from 'aws-cdk-lib/aws-iam';
import type { IConstruct } from 'constructs';
import { PROVIDER_FUNCTIONS } from '#shared/providers/index.ts';
import { MAP_RUNS_PREFIX, TASK_FILES } from './batch-objects.ts';
import type { BatchStateMachine } from './batch-state-machine.ts';
import type { Expirations } from './expirations.ts';
import type { ProviderFunction } from './provider-function.ts';
import type { ProviderSecrets } from './provider-secrets.ts';

/** What the acknowledgements are about: the stack's constructs (CancellationsStack passes itself). */
export interface Acknowledged {
  readonly secrets: ProviderSecrets;
  readonly functions: Record<string, ProviderFunction>;
  readonly batch: BatchStateMachine;
  readonly expirations?: Expirations;
  readonly summarizeReadsHistory?: IConstruct;
}

/** The functions the state machine invokes: Prepare, Summarize and every function that calls a provider (the
 * cancels, the guard's lookup), from the registry. */
const INVOKED: ReadonlySet<string> = new Set([
  'batch-prepare',
  'batch-summarize',
  ...PROVIDER_FUNCTIONS.map((f) => f.fn),
]);

const IAM5 = (finding: string) => `AwsSolutions::AwsSolutions-IAM5[${finding}]`;

/** What a function role may be granted on `Resource: *`: active X-Ray tracing. */
export const FUNCTION_ANY_RESOURCE_ACTIONS = ['xray:PutTraceSegments', 'xray:PutTelemetryRecords'];
/** What the state machine role may be granted on `Resource: *`: X-Ray tracing and log delivery for its logging. */
export const MACHINE_ANY_RESOURCE_ACTIONS = [
  'xray:PutTraceSegments',
  'xray:PutTelemetryRecords',
  'xray:GetSamplingRules',
  'xray:GetSamplingTargets',
  'logs:CreateLogDelivery',
  'logs:GetLogDelivery',
  'logs:UpdateLogDelivery',
  'logs:DeleteLogDelivery',
  'logs:ListLogDeliveries',
  'logs:PutResourcePolicy',
  'logs:DescribeResourcePolicies',
  'logs:DescribeLogGroups',
];

/**
 * cdk-nag's IAM5 finding for a wildcard resource is `Resource::*` whatever the actions (3.0.2 names actions only
 * when they hold a wildcard themselves), so acknowledging it would also hide any action granted on `*` later. This
 * acknowledges it for the listed actions only, and fails synthesis when the role is granted anything else on `*`.
 */
function acknowledgeAnyResource(role: IConstruct, actions: readonly string[], why: string): void {
  Validations.of(role).acknowledge({ id: IAM5('Resource::*'), reason: `${why} Covers only ${actions.join(', ')}.` });
  role.node.addValidation({ validate: () => actionsOnAnyResourceBeyond(role, actions) });
}

function actionsOnAnyResourceBeyond(role: IConstruct, allowed: readonly string[]): string[] {
  const stack = Stack.of(role);
  const cfnRole = role.node.defaultChild;
  if (!(cfnRole instanceof CfnRole)) return [`${role.node.path} is not an IAM role`];
  const ref = JSON.stringify(stack.resolve(cfnRole.ref));
  type Statement = { Effect?: string; Action?: string | string[]; Resource?: unknown };
  const statements: Statement[] = [];
  for (const policy of stack.node.findAll()) {
    if (!(policy instanceof CfnPolicy)) continue;
    const roles = (stack.resolve(policy.roles) as unknown[] | undefined) ?? [];
    if (roles.some((r) => JSON.stringify(r) === ref))
      statements.push(...((stack.resolve(policy.policyDocument) as { Statement?: Statement[] }).Statement ?? []));
  }
  for (const inline of (stack.resolve(cfnRole.policies) as { PolicyDocument?: { Statement?: Statement[] } }[]) ?? [])
    statements.push(...(inline.PolicyDocument?.Statement ?? []));
  const beyond = statements
    .filter((st) => st.Effect === 'Allow' && [st.Resource].flat().includes('*'))
    .flatMap((st) => [st.Action ?? []].flat())
    .filter((action) => !allowed.includes(action));
  return beyond.length
    ? [
        `${role.node.path} is granted ${[...new Set(beyond)].join(', ')} on Resource "*", which its IAM5 Resource::* acknowledgement (infra/nag.ts) does not cover: grant it on the resources it needs, or add the action there with a reason`,
      ]
    : [];
}

function logicalId(construct: IConstruct): string {
  return Stack.of(construct).getLogicalId(construct.node.defaultChild as CfnElement);
}

export function acknowledgeFindings(stack: Acknowledged): void {
  for (const secret of Object.values(stack.secrets.secrets)) {
    Validations.of(secret).acknowledge({
      id: 'AwsSolutions::AwsSolutions-SMG4',
      reason:
        'Provider credentials (OAuth client credentials, API keys) are issued by the providers and rotated in their dashboards, which Secrets Manager cannot drive; the functions refetch the secret after a provider 401, so a rotation applies within one call.',
    });
  }

  for (const fn of Object.values(stack.functions)) {
    acknowledgeAnyResource(
      fn.role ?? fn,
      FUNCTION_ANY_RESOURCE_ACTIONS,
      'Active X-Ray tracing: its actions have no resource-level permissions (AWS docs, "Actions, resources, and condition keys for AWS X-Ray").',
    );
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
  if (stack.summarizeReadsHistory)
    Validations.of(stack.summarizeReadsHistory).acknowledge({
      id: IAM5(
        `Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:<${logicalId(stack.batch.stateMachine)}.Name>:*`,
      ),
      reason:
        "Summarize reads its own execution's history (how many events its rounds have used); execution names are generated per batch.",
    });
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
  const invoked = Object.values(stack.functions).filter((fn) => INVOKED.has(fn.operation) && !fn.deployment);
  acknowledgeAnyResource(
    machineRole,
    MACHINE_ANY_RESOURCE_ACTIONS,
    'X-Ray tracing and CloudWatch Logs delivery for state machine logging have no resource-level permissions.',
  );
  Validations.of(machineRole).acknowledge(
    ...invoked.map((fn) => ({
      id: IAM5(`Resource::<${logicalId(fn)}.Arn>:*`),
      reason:
        'LambdaInvoke grants the function and its versions/aliases (<arn>:*), the same function and nothing else.',
    })),
    {
      id: IAM5(`Resource::<${bucketId}.Arn>/${TASK_FILES}`),
      reason:
        'The Distributed Maps read the task files Prepare writes per execution (batches/<execution>/tasks/<provider>.jsonl, ItemReader), named at run time; nothing else in the bucket.',
    },
    {
      id: IAM5(`Resource::<${bucketId}.Arn>/${MAP_RUNS_PREFIX}/*`),
      reason:
        'The Distributed Maps write their results (ResultWriter) under map-runs/<map run id>/, named by Step Functions at run time; nothing else in the bucket.',
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
