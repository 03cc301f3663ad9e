/**
 * The synthesized template, asserted (not snapshotted): runtimes, least privilege, IAM auth, log retention,
 * alarms, and cdk-nag clean. Bundling is skipped here for speed; test/infra/bundle.test.ts bundles for real.
 */
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '#infra/app.ts';
import { LIMIT_WINDOW_SECONDS, worstInWindow } from '#infra/budget.ts';
import type { CancellationsStack } from '#infra/stack.ts';
import { extractStateMachine, type Template as ResolvableTemplate } from '#local/asl.ts';
import { localFunctionName } from '#local/functions.ts';
import { PROVIDERS } from '#shared/core/outcome.ts';
import { ROUTES } from '#shared/handler/routes.ts';
import { PROVIDER_LIMITS, REGISTRY } from '#shared/providers/index.ts';
import type { ProviderFunctionSpec } from '#shared/providers/provider.ts';

let stack: CancellationsStack;
let template: Template;
type Resource = { Type: string; Properties: Record<string, unknown> };
let resources: Record<string, Resource>;

beforeAll(() => {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [], stage: 'test' } });
  ({ stack } = buildApp(app));
  // cdk-nag runs as a validation plugin: synthesis throws on any unacknowledged finding.
  app.synth();
  template = Template.fromStack(stack);
  resources = template.toJSON().Resources as Record<string, Resource>;
});

const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
const idOf = (construct: { node: { defaultChild?: unknown } }) =>
  stack.getLogicalId(construct.node.defaultChild as never);
/** The four cancel functions, each deployed twice (for batches, and `Api` for API calls), with the same access. */
const cancelers = <T>(access: T): Record<string, T> =>
  Object.fromEntries(
    ['CancelDocumentRequest', 'CancelSigningProcesses', 'CancelVerificationOrder', 'CancelBillingRequest'].flatMap(
      (id) => [
        [id, access],
        [`${id}Api`, access],
      ],
    ),
  );

describe('the stack', () => {
  it('synthesizes with cdk-nag (AwsSolutions) reporting nothing unacknowledged, every acknowledgement with a reason', () => {
    const acknowledged = stack.node
      .findAll()
      .flatMap((c) => c.node.metadata.filter((m) => m.type === 'aws:cdk:acknowledged-rules'))
      .flatMap((m) => Object.entries(m.data as Record<string, string>));
    expect(acknowledged.length).toBeGreaterThan(10);
    for (const [id, reason] of acknowledged) expect(reason.length, id).toBeGreaterThan(60);
  });

  it('every function: Node 24 on arm64, memory and timeout as chosen, its own log group with retention', () => {
    const functions = ofType('AWS::Lambda::Function');
    expect(functions.length).toBe(Object.keys(stack.functions).length);
    for (const [id, fn] of functions) {
      expect(fn.Properties.Runtime, id).toBe('nodejs24.x');
      expect(fn.Properties.Architectures, id).toEqual(['arm64']);
      const heavy = /^Batch(Prepare|Summarize)/.test(id);
      expect(fn.Properties.MemorySize, id).toBe(heavy ? 1024 : 256);
      expect(fn.Properties.Timeout, id).toBe(heavy ? 300 : 25);
      expect(fn.Properties.LoggingConfig, id).toMatchObject({ LogGroup: { Ref: expect.stringMatching(/Logs/) } });
      expect(fn.Properties.FunctionName, id).toBeUndefined();
    }
  });

  it('log retention on every log group', () => {
    const groups = ofType('AWS::Logs::LogGroup');
    expect(groups.length).toBeGreaterThanOrEqual(Object.keys(stack.functions).length + 2);
    for (const [id, group] of groups) expect(group.Properties.RetentionInDays, id).toBeGreaterThan(0);
  });

  it('each provider function can read exactly its own secret (Batches and Expirations the mycreditapp one), and no function reads another', () => {
    const secretIds = Object.fromEntries(Object.entries(stack.secrets.secrets).map(([p, s]) => [p, idOf(s)]));
    const expected: Record<string, string | undefined> = {
      CancelDocumentRequest: secretIds.mycreditapp,
      GetCreditApplication: secretIds.mycreditapp,
      CancelSigningProcesses: secretIds.auco,
      CancelVerificationOrder: secretIds.truework,
      CancelBillingRequest: secretIds.gocardless,
      // Each cancel operation's API deployment, its provider's secret as its batch deployment.
      CancelDocumentRequestApi: secretIds.mycreditapp,
      CancelSigningProcessesApi: secretIds.auco,
      CancelVerificationOrderApi: secretIds.truework,
      CancelBillingRequestApi: secretIds.gocardless,
      GetCreditApplicationApi: secretIds.mycreditapp,
      // A guard's organization ids default to the mycreditapp secret's organizationId: these two check it.
      Batches: secretIds.mycreditapp,
      Expirations: secretIds.mycreditapp,
    };
    for (const [name, fn] of Object.entries(stack.functions)) {
      const roleId = idOf(fn.role as never);
      const statements = ofType('AWS::IAM::Policy')
        .filter(([, p]) => (p.Properties.Roles as { Ref: string }[]).some((r) => r.Ref === roleId))
        .flatMap(
          ([, p]) =>
            (p.Properties.PolicyDocument as { Statement: { Action: string | string[]; Resource: unknown }[] })
              .Statement,
        );
      const secretReads = statements.filter((s) => [s.Action].flat().some((a) => a.startsWith('secretsmanager:')));
      if (expected[name]) {
        expect(secretReads, name).toHaveLength(1);
        expect(secretReads[0]?.Resource, name).toEqual({ Ref: expected[name] });
        expect([secretReads[0]?.Action].flat().sort(), name).toEqual([
          'secretsmanager:DescribeSecret',
          'secretsmanager:GetSecretValue',
        ]);
        const environment = resources[idOf(fn)]?.Properties.Environment as
          | { Variables: Record<string, unknown> }
          | undefined;
        expect(environment?.Variables.SECRET_ID, name).toEqual({ Ref: expected[name] });
      } else {
        expect(secretReads, name).toHaveLength(0);
      }
    }
  });

  it('the ledger and idempotency tables are reachable only by the functions that need them, with only the actions they need', () => {
    const ledger = idOf(stack.tables.ledger);
    const idempotency = idOf(stack.tables.idempotency);
    const access = (table: string) => {
      const byFunction: Record<string, string[]> = {};
      for (const [name, fn] of Object.entries(stack.functions)) {
        const roleId = idOf(fn.role as never);
        const actions = ofType('AWS::IAM::Policy')
          .filter(([, p]) => (p.Properties.Roles as { Ref: string }[]).some((r) => r.Ref === roleId))
          .flatMap(
            ([, p]) =>
              (p.Properties.PolicyDocument as { Statement: { Action: string | string[]; Resource: unknown }[] })
                .Statement,
          )
          .filter((st) => JSON.stringify(st.Resource).includes(table))
          .flatMap((st) => [st.Action].flat());
        if (actions.length) byFunction[name] = [...new Set(actions)].sort();
      }
      return byFunction;
    };
    const writeAndRead = ['dynamodb:BatchWriteItem', 'dynamodb:Query'];
    expect(access(ledger)).toEqual({
      ...cancelers(writeAndRead),
      BatchSummarize: ['dynamodb:BatchWriteItem'],
      Cancellations: ['dynamodb:Query'],
      Batches: ['dynamodb:Query'],
    });
    const records = ['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'];
    expect(access(idempotency)).toEqual({
      ...cancelers(records),
      Batches: records,
      // The execution start records (shared/core/execution-starts.ts): written where executions start, read by Prepare.
      Expirations: ['dynamodb:DeleteItem', 'dynamodb:PutItem'],
      BatchPrepare: ['dynamodb:GetItem'],
    });
    // The ledger is an audit record: point-in-time recovery on.
    expect(JSON.stringify(resources[ledger]?.Properties)).toContain('"PointInTimeRecoveryEnabled":true');
  });

  it("the circuits table: the cancel functions and the guard's lookup read and update it, Summarize only reads it, nobody else", () => {
    const circuits = idOf(stack.tables.circuits);
    const byFunction: Record<string, string[]> = {};
    for (const [name, fn] of Object.entries(stack.functions)) {
      const roleId = idOf(fn.role as never);
      const actions = ofType('AWS::IAM::Policy')
        .filter(([, p]) => (p.Properties.Roles as { Ref: string }[]).some((r) => r.Ref === roleId))
        .flatMap(
          ([, p]) =>
            (p.Properties.PolicyDocument as { Statement: { Action: string | string[]; Resource: unknown }[] })
              .Statement,
        )
        .filter((st) => JSON.stringify(st.Resource).includes(circuits))
        .flatMap((st) => [st.Action].flat());
      if (actions.length) byFunction[name] = [...new Set(actions)].sort();
    }
    const update = ['dynamodb:GetItem', 'dynamodb:UpdateItem'];
    // The batch deployments only: API calls are not gated by a circuit.
    expect(byFunction).toEqual({
      CancelDocumentRequest: update,
      CancelSigningProcesses: update,
      CancelVerificationOrder: update,
      CancelBillingRequest: update,
      GetCreditApplication: update,
      BatchSummarize: ['dynamodb:GetItem'],
    });
  });

  it('batches wait in rounds (a Wait from the state, back to the fan-out) and may outlive the 7-day deadline by an hour', () => {
    const [, machine] = ofType('AWS::StepFunctions::StateMachine')[0] ?? [];
    const definition = JSON.stringify(machine?.Properties.DefinitionString);
    expect(definition).toContain(
      '\\"NextRound\\":{\\"Type\\":\\"Wait\\",\\"SecondsPath\\":\\"$.round.waitSeconds\\",\\"Next\\":\\"Mode\\"}',
    );
    expect(definition).toContain('\\"TimeoutSeconds\\":608400');
    const alarms = ofType('AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);
    for (const provider of ['mycreditapp', 'auco', 'truework', 'gocardless']) {
      expect(
        alarms.some(
          (a) =>
            a.MetricName === 'UnreachableSeconds' &&
            a.Threshold === 900 &&
            JSON.stringify(a.Dimensions) === JSON.stringify([{ Name: 'Provider', Value: provider }]),
        ),
        provider,
      ).toBe(true);
    }
    expect(JSON.stringify(ofType('AWS::CloudWatch::Dashboard')[0]?.[1].Properties.DashboardBody)).toContain(
      'CircuitOpen',
    );
  });

  it("Summarize may read its executions' history (the rounds count it), by a policy the function does not wait for", () => {
    const summarizeRole = idOf(stack.functions.BatchSummarize?.role as never);
    const machineName = { 'Fn::GetAtt': [idOf(stack.batch.stateMachine), 'Name'] };
    const reads = ofType('AWS::IAM::Policy').filter(([, p]) =>
      JSON.stringify(p.Properties.PolicyDocument).includes('states:GetExecutionHistory'),
    );
    const mine = reads.filter(
      ([, p]) => JSON.stringify(p.Properties.Roles) === JSON.stringify([{ Ref: summarizeRole }]),
    );
    expect(mine).toHaveLength(1);
    const [policyId, policy] = mine[0] as [string, Resource];
    const statements = (policy.Properties.PolicyDocument as { Statement: { Action: unknown; Resource: unknown }[] })
      .Statement;
    expect(statements).toHaveLength(1);
    expect(statements[0]?.Action).toBe('states:GetExecutionHistory');
    expect(JSON.stringify(statements[0]?.Resource)).toContain(JSON.stringify(machineName));
    // The function does not depend on it (the state machine, which the policy names, depends on the function).
    const fn = resources[idOf(stack.functions.BatchSummarize as never)];
    expect(JSON.stringify((fn as { DependsOn?: unknown } | undefined)?.DependsOn ?? [])).not.toContain(policyId);
  });

  it('expirations: Scheduler may only start the batch state machine and dead-letter; the function manages its own group', () => {
    const roleId = idOf(stack.expirations.role);
    template.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: {
        Statement: [
          Match.objectLike({
            Principal: { Service: 'scheduler.amazonaws.com' },
            Condition: Match.objectLike({ StringEquals: { 'aws:SourceAccount': Match.anyValue() } }),
          }),
        ],
      },
    });
    const statements = ofType('AWS::IAM::Policy')
      .filter(([, p]) => (p.Properties.Roles as { Ref: string }[]).some((r) => r.Ref === roleId))
      .flatMap(([, p]) => (p.Properties.PolicyDocument as { Statement: { Action: string | string[] }[] }).Statement)
      .flatMap((st) => [st.Action].flat())
      .sort();
    expect(statements).toEqual([
      'sqs:GetQueueAttributes',
      'sqs:GetQueueUrl',
      'sqs:SendMessage',
      'states:StartExecution',
    ]);
    const fnRole = idOf(stack.functions.Expirations?.role as never);
    const fnActions = ofType('AWS::IAM::Policy')
      .filter(([, p]) => (p.Properties.Roles as { Ref: string }[]).some((r) => r.Ref === fnRole))
      .flatMap(([, p]) => (p.Properties.PolicyDocument as { Statement: { Action: string | string[] }[] }).Statement)
      .flatMap((st) => [st.Action].flat());
    expect(new Set(fnActions)).toEqual(
      new Set([
        'logs:CreateLogStream',
        'logs:PutLogEvents',
        'xray:PutTraceSegments',
        'xray:PutTelemetryRecords',
        'scheduler:CreateSchedule',
        'scheduler:UpdateSchedule',
        'scheduler:GetSchedule',
        'scheduler:DeleteSchedule',
        'iam:PassRole',
        'lambda:InvokeFunction',
        'states:StartExecution',
        's3:PutObject',
        // Who started an execution, said before starting it (shared/core/execution-starts.ts).
        'dynamodb:PutItem',
        'dynamodb:DeleteItem',
        // The mycreditapp secret's organizationId: the default of the guard's organization ids.
        'secretsmanager:GetSecretValue',
        'secretsmanager:DescribeSecret',
      ]),
    );
    const alarms = ofType('AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);
    expect(alarms.some((a) => a.MetricName === 'ApproximateNumberOfMessagesVisible')).toBe(true);
  });

  it('no wildcard action in any policy; wildcard resources only where acknowledged with a reason', () => {
    for (const [id, policy] of ofType('AWS::IAM::Policy')) {
      for (const statement of (policy.Properties.PolicyDocument as { Statement: { Action: string | string[] }[] })
        .Statement) {
        for (const action of [statement.Action].flat()) expect(action, `${id}: ${action}`).not.toContain('*');
      }
    }
    // cdk-nag's IAM5 covers wildcard resources; the synthesis above passed, so each one is acknowledged.
  });

  it('the state machine role reads only the task files and writes only the map-run results, not bucket/*', () => {
    const roleId = idOf(stack.batch.stateMachine.role as never);
    const bucketArn = { 'Fn::GetAtt': [idOf(stack.batch.bucket), 'Arn'] };
    const s3 = ofType('AWS::IAM::Policy')
      .filter(([, p]) => (p.Properties.Roles as { Ref: string }[]).some((r) => r.Ref === roleId))
      .flatMap(([, p]) => (p.Properties.PolicyDocument as { Statement: { Action: string | string[] }[] }).Statement)
      .filter((st) => [st.Action].flat().some((a) => a.startsWith('s3:')))
      .map((st) => ({ ...st, Action: [st.Action].flat().sort() }));
    expect(s3).toHaveLength(2);
    expect(s3).toEqual(
      expect.arrayContaining([
        {
          Effect: 'Allow',
          Action: ['s3:GetObject'],
          Resource: { 'Fn::Join': ['', [bucketArn, '/batches/*/tasks/*']] },
        },
        {
          Effect: 'Allow',
          Action: ['s3:AbortMultipartUpload', 's3:GetObject', 's3:ListMultipartUploadParts', 's3:PutObject'],
          Resource: { 'Fn::Join': ['', [bucketArn, '/map-runs/*']] },
        },
      ]),
    );
    // Prepare writes the task files where the Distributed Maps may read them.
    expect(JSON.stringify(resources[idOf(stack.batch.stateMachine)]?.Properties.DefinitionString)).toContain(
      'manifests.gocardless.key',
    );
  });

  it('IAM5 Resource::* acknowledgements name the actions they cover, and cover no other action granted on *', () => {
    const anyResource = stack.node
      .findAll()
      .flatMap((c) => c.node.metadata.filter((m) => m.type === 'aws:cdk:acknowledged-rules'))
      .flatMap((m) => Object.entries(m.data as Record<string, string>))
      .filter(([id]) => id.endsWith('IAM5[Resource::*]'));
    expect(anyResource.length).toBe(Object.keys(stack.functions).length + 1);
    for (const [, reason] of anyResource)
      expect(reason).toMatch(/Covers only xray:PutTraceSegments, xray:PutTelemetryRecords/);
    // A later grant on * is not hidden by the acknowledgement: synthesis fails, naming the role and the action.
    const widened = (grant: (s: CancellationsStack) => void) => {
      const app = new App({ context: { 'aws:cdk:bundling-stacks': [], stage: 'wide' } });
      grant(buildApp(app, { nag: false }).stack);
      return () => app.synth();
    };
    expect(
      widened((s) =>
        s.functions.Cancellations?.addToRolePolicy(
          new PolicyStatement({ actions: ['s3:GetObject'], resources: ['*'] }),
        ),
      ),
    ).toThrow(/CancellationsRole is granted s3:GetObject on Resource "\*"/);
    expect(
      widened((s) =>
        s.batch.stateMachine.addToRolePolicy(
          new PolicyStatement({ actions: ['xray:PutTraceSegments', 'dynamodb:Scan'], resources: ['*'] }),
        ),
      ),
    ).toThrow(/StateMachine\/Role is granted dynamodb:Scan on Resource "\*"/);
    // The actions it does cover still synthesize.
    expect(
      widened((s) =>
        s.functions.Cancellations?.addToRolePolicy(
          new PolicyStatement({ actions: ['xray:PutTraceSegments'], resources: ['*'] }),
        ),
      ),
    ).not.toThrow();
  });

  it('every route of the contract exists, and every route uses AWS_IAM', () => {
    const routes = ofType('AWS::ApiGatewayV2::Route');
    const keys = routes.map(([, r]) => r.Properties.RouteKey).sort();
    const implemented = ROUTES.filter((r) =>
      [
        'cancel-document-request',
        'get-credit-application',
        'cancel-signing-processes',
        'cancel-verification-order',
        'cancel-billing-request',
        'batches',
      ].includes(r.function),
    );
    expect(keys).toEqual(expect.arrayContaining(implemented.map((r) => `${r.method} ${r.path}`)));
    for (const [id, route] of routes) expect(route.Properties.AuthorizationType, id).toBe('AWS_IAM');
  });

  it("each provider operation's route is served by its API deployment: containers of its own, tagged, as the registry says", () => {
    const byId = Object.fromEntries(ofType('AWS::Lambda::Function'));
    const integrations = Object.fromEntries(ofType('AWS::ApiGatewayV2::Integration'));
    const served = (route: { method: string; path: string }) => {
      const [, r] = ofType('AWS::ApiGatewayV2::Route').find(
        ([, x]) => x.Properties.RouteKey === `${route.method} ${route.path}`,
      ) ?? [undefined, undefined];
      const integration = JSON.stringify(r?.Properties.Target).match(/"Ref":"([^"]+)"/)?.[1] ?? '';
      return JSON.stringify(integrations[integration]?.Properties.IntegrationUri).match(
        /"Fn::GetAtt":\["([^"]+)"/,
      )?.[1];
    };
    for (const spec of REGISTRY.flatMap((p): readonly ProviderFunctionSpec[] => p.functions)) {
      const fn = served(spec.route);
      expect(fn, spec.fn).toBeDefined();
      const properties = byId[fn ?? '']?.Properties;
      expect(localFunctionName(properties), spec.fn).toBe(`${spec.fn}-api`);
      expect(properties?.ReservedConcurrentExecutions, spec.fn).toBe(spec.api);
      expect(
        (properties?.Environment as { Variables?: { OPERATION?: string } } | undefined)?.Variables?.OPERATION,
      ).toBe(spec.fn);
    }
    // Other routes go to their one deployment.
    const batches = ROUTES.find((r) => r.function === 'batches');
    expect(localFunctionName(byId[served(batches ?? { method: '', path: '' }) ?? '']?.Properties)).toBe('batches');
  });

  it('the API stage has access logs and default throttling', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      AccessLogSettings: { DestinationArn: Match.anyValue(), Format: Match.stringLikeRegexp('requestId') },
      DefaultRouteSettings: { ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 },
    });
  });

  it('one rate budget per provider, provable from the template, whatever runs at once', () => {
    const functions = ofType('AWS::Lambda::Function').map(([id, r]) => ({
      id,
      reserved: r.Properties.ReservedConcurrentExecutions as number | undefined,
      env: ((r.Properties.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables ??
        {}) as Record<string, unknown>,
    }));
    for (const provider of PROVIDERS) {
      const variable = `${provider.toUpperCase()}_RATE_PER_SECOND`;
      const callers = functions.filter((f) => variable in f.env);
      expect(callers.length, provider).toBeGreaterThan(0);
      // Every function that calls the provider is bounded: an unreserved one could scale to the account's limit.
      for (const f of callers) expect(f.reserved, `${f.id} calls ${provider} unreserved`).toBeGreaterThan(0);
      const rates = callers.map((f) => Number(f.env[variable]));
      const metered = callers.filter((f) => 'RATE_BUDGET_TABLE' in f.env);
      let worst: number;
      if (metered.length) {
        // One budget metered across every container of every caller: all of them, one table, one rate.
        expect(metered, `${provider}: every caller meters through the shared budget`).toHaveLength(callers.length);
        expect(new Set(metered.map((f) => JSON.stringify(f.env.RATE_BUDGET_TABLE))).size, provider).toBe(1);
        expect(new Set(rates).size, provider).toBe(1);
        worst = rates[0] as number;
      } else {
        // Each container at its share: every container busy at once.
        worst = callers.reduce((sum, f) => sum + (f.reserved ?? 0) * Number(f.env[variable]), 0);
      }
      expect(worst, `${provider}: worst-case requests per second`).toBeLessThanOrEqual(PROVIDER_LIMITS[provider]);
      // Counted as the provider counts, in any one window of its limit (1 s; a minute for GoCardless): each sender
      // (a container, or the shared budget) fits ⌈rate × window⌉ of its evenly spaced slots in a window.
      const inWindow = metered.length
        ? worstInWindow(provider, rates[0] as number, 1)
        : callers.reduce((n, f) => n + worstInWindow(provider, Number(f.env[variable]), f.reserved ?? 0), 0);
      expect(inWindow, `${provider}: worst case in one limit window`).toBeLessThanOrEqual(
        PROVIDER_LIMITS[provider] * LIMIT_WINDOW_SECONDS[provider],
      );
      // With today's margin: the whole budget is usable, and nothing more.
      expect(worst / PROVIDER_LIMITS[provider], provider).toBeCloseTo(0.95, 6);
    }
    // mycreditapp's budget is shared by the cancel and the lookup (two deployments each), metered across them.
    const mycreditapp = functions.filter((f) => 'MYCREDITAPP_RATE_PER_SECOND' in f.env);
    expect(mycreditapp).toHaveLength(4);
    for (const f of mycreditapp) expect(f.env.RATE_BUDGET_TABLE).toEqual({ Ref: idOf(stack.tables.rateBudget) });
    // The budget table: UpdateItem only, and only for the functions that meter through it.
    const grants = ofType('AWS::IAM::Policy').flatMap(([, p]) =>
      (
        p.Properties.PolicyDocument as { Statement: { Action: string | string[]; Resource: unknown }[] }
      ).Statement.filter((st) => JSON.stringify(st.Resource).includes(idOf(stack.tables.rateBudget))),
    );
    // Every function that calls a provider meters: each cancel's two deployments, and the lookup's two.
    expect(grants).toHaveLength(2 * PROVIDERS.length + 2);
    for (const g of grants) expect(g.Action).toBe('dynamodb:UpdateItem');
  });

  it('every Lambda task retries throttling (TooManyRequestsException) with backoff; maps fan out no wider than the reservation', () => {
    const { definition } = extractStateMachine(template.toJSON() as ResolvableTemplate);
    const tasks: { name: string; state: Record<string, unknown> }[] = [];
    const maps: { name: string; state: Record<string, unknown> }[] = [];
    const visit = (states: Record<string, Record<string, unknown>>) => {
      for (const [name, state] of Object.entries(states)) {
        if (state.Type === 'Task' && String(state.Resource).includes(':lambda:')) tasks.push({ name, state });
        if (state.Type === 'Map') maps.push({ name, state });
        for (const branch of (state.Branches as { States: Record<string, Record<string, unknown>> }[] | undefined) ??
          [])
          visit(branch.States);
        const processor = state.ItemProcessor as { States: Record<string, Record<string, unknown>> } | undefined;
        if (processor) visit(processor.States);
      }
    };
    visit(definition.States as unknown as Record<string, Record<string, unknown>>);
    expect(tasks.length).toBeGreaterThanOrEqual(11);
    for (const { name, state } of tasks) {
      const retry = (state.Retry as { ErrorEquals: string[]; MaxAttempts: number; BackoffRate: number }[]).find((r) =>
        r.ErrorEquals.includes('Lambda.TooManyRequestsException'),
      );
      expect(retry, name).toBeDefined();
      expect(retry?.MaxAttempts, name).toBeGreaterThanOrEqual(20);
      expect(retry?.BackoffRate, name).toBeGreaterThan(1);
    }
    const reserved = Object.fromEntries(
      ofType('AWS::Lambda::Function').map(([, r]) => [
        localFunctionName(r.Properties),
        r.Properties.ReservedConcurrentExecutions as number | undefined,
      ]),
    );
    const fanOut = maps.filter((m) => /^(Inline|Distributed)/.test(m.name));
    expect(fanOut).toHaveLength(2 * PROVIDERS.length);
    for (const { name, state } of fanOut) {
      const fn = String(JSON.stringify(state).match(/function:(cancel-[a-z-]+)/)?.[1]);
      // Batches invoke the batch deployment, never the API's.
      expect(fn.endsWith('-api'), `${name} invokes ${fn}`).toBe(false);
      expect(state.MaxConcurrency, name).toBeLessThanOrEqual(reserved[fn] ?? 0);
    }
  });

  it('the state machine logs ALL with execution data, is traced, and uses Express children for its Distributed Maps', () => {
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineType: 'STANDARD',
      LoggingConfiguration: { Level: 'ALL', IncludeExecutionData: true },
      TracingConfiguration: { Enabled: true },
    });
    const definition = JSON.stringify(ofType('AWS::StepFunctions::StateMachine')[0]?.[1].Properties.DefinitionString);
    expect(definition.match(/\\"ExecutionType\\":\\"EXPRESS\\"/g)).toHaveLength(4);
    expect(definition).toContain('ResultWriter');
    expect(definition).toContain('\\"InputType\\":\\"JSONL\\"');
    expect(definition).toContain('\\"ToleratedFailurePercentage\\":100');
    expect(definition.match(/\\"MaxItemsPerBatch\\":25/g)).toHaveLength(4);
  });

  it('alarms on every function (errors, throttles), on failed and timed-out executions and on refusals, to an encrypted topic; a dashboard', () => {
    const alarms = ofType('AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);
    // The reserved functions the state machine invokes queue by design: alarmed when throttled while running nothing.
    const definition = JSON.stringify(resources[idOf(stack.batch.stateMachine)]?.Properties.DefinitionString);
    for (const name of Object.keys(stack.functions)) {
      const id = idOf(stack.functions[name] as never);
      expect(
        alarms.some((a) => a.MetricName === 'Errors' && JSON.stringify(a.Dimensions).includes(id)),
        name,
      ).toBe(true);
      const throttles = alarms.filter((a) => a.MetricName === 'Throttles' && JSON.stringify(a.Dimensions).includes(id));
      const stalled = alarms.filter((a) => {
        const metrics = JSON.stringify(a.Metrics ?? []);
        return (
          metrics.includes('IF(FILL(throttles, 0) > 0 AND FILL(invocations, 0) == 0, 1, 0)') &&
          metrics.includes('"MetricName":"Throttles"') &&
          metrics.includes('"MetricName":"Invocations"') &&
          metrics.includes(`{"Ref":"${id}"}`) &&
          a.Threshold === 1
        );
      });
      const queuing =
        definition.includes(`"Fn::GetAtt":["${id}","Arn"]`) && resources[id]?.Properties.ReservedConcurrentExecutions;
      expect([throttles.length, stalled.length], name).toEqual(queuing ? [0, 1] : [1, 0]);
    }
    const stalledAlarms = alarms.filter((a) => String(a.AlarmDescription).includes('without running once'));
    // The four cancels and the lookup, as the state machine invokes them.
    expect(stalledAlarms).toHaveLength(5);
    expect(alarms.some((a) => a.MetricName === 'ExecutionsFailed')).toBe(true);
    expect(alarms.some((a) => a.MetricName === 'ExecutionsTimedOut')).toBe(true);
    // Per provider, on the metrics the functions emit: a refused cancellation (rejected: credentials, configuration,
    // unverifiable answers; Cancellations by Provider and Outcome), and items a batch gave up at its deadline
    // (Summarize's GivenUp). The first of either tells a person.
    const sumAlarms = (metric: string, dimensions: Record<string, string>) =>
      alarms.filter(
        (a) =>
          a.MetricName === metric &&
          a.Statistic === 'Sum' &&
          a.Threshold === 1 &&
          JSON.stringify(a.Dimensions) ===
            JSON.stringify(
              Object.entries(dimensions)
                .sort(([x], [y]) => x.localeCompare(y))
                .map(([Name, Value]) => ({ Name, Value })),
            ),
      );
    for (const provider of ['mycreditapp', 'auco', 'truework', 'gocardless']) {
      expect(sumAlarms('Cancellations', { Provider: provider, Outcome: 'rejected' }), provider).toHaveLength(1);
      expect(sumAlarms('GivenUp', { Provider: provider }), provider).toHaveLength(1);
    }
    expect(alarms.every((a) => Array.isArray(a.AlarmActions) && a.AlarmActions.length === 1)).toBe(true);
    template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.anyValue() });
    expect(JSON.stringify(ofType('AWS::CloudWatch::Dashboard')[0]?.[1].Properties.DashboardBody)).toContain(
      'Cancellations',
    );
  });

  it("alarms are delivered: CloudWatch may use the topic's key and publish to it, for this account only", () => {
    const [[topicId, topic]] = ofType('AWS::SNS::Topic') as [[string, Resource]];
    const keyId = (topic.Properties.KmsMasterKeyId as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
    type Statement = { Effect: string; Principal?: unknown; Action: string | string[]; Condition?: unknown };
    const fromCloudWatch = (statements: Statement[]) =>
      statements.filter(
        (st) => st.Effect === 'Allow' && JSON.stringify(st.Principal) === '{"Service":"cloudwatch.amazonaws.com"}',
      );
    const account = { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } };
    const keyStatements = fromCloudWatch(
      (resources[keyId]?.Properties.KeyPolicy as { Statement: Statement[] } | undefined)?.Statement ?? [],
    );
    expect(keyStatements).toHaveLength(1);
    expect([keyStatements[0]?.Action].flat().sort()).toEqual(['kms:Decrypt', 'kms:GenerateDataKey*']);
    expect(keyStatements[0]?.Condition).toEqual(account);
    const topicPolicy = ofType('AWS::SNS::TopicPolicy').find(([, p]) =>
      JSON.stringify(p.Properties.Topics).includes(topicId),
    );
    const publish = fromCloudWatch(
      (topicPolicy?.[1].Properties.PolicyDocument as { Statement: Statement[] } | undefined)?.Statement ?? [],
    );
    expect(publish.map((st) => [st.Action, st.Condition])).toEqual([['sns:Publish', account]]);
    // Without -c alarmEmail, nobody is subscribed (the topic is there for the deployer to subscribe to).
    expect(ofType('AWS::SNS::Subscription')).toHaveLength(0);
  });

  it('-c alarmEmail=... subscribes that address to the alarm topic; anything but one address is refused', () => {
    const app = new App({ context: { 'aws:cdk:bundling-stacks': [], stage: 'mail', alarmEmail: 'ops@example.com' } });
    const mailed = Template.fromStack(buildApp(app, { nag: false }).stack);
    const topics = Object.keys(mailed.findResources('AWS::SNS::Topic'));
    mailed.resourceCountIs('AWS::SNS::Subscription', 1);
    mailed.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'ops@example.com',
      TopicArn: { Ref: topics[0] },
    });
    for (const bad of ['ops', 'a@b', 'ops@example.com,boss@example.com', 'ops @example.com'])
      expect(() => buildApp(new App({ context: { alarmEmail: bad } }), { nag: false }), bad).toThrow(
        /alarmEmail must be one email address/,
      );
  });

  it('secrets hold placeholders only: generated values, no credential in the template', () => {
    for (const [, secret] of ofType('AWS::SecretsManager::Secret')) {
      expect(secret.Properties.SecretString).toBeUndefined();
      expect(secret.Properties.GenerateSecretString).toMatchObject({ GenerateStringKey: expect.any(String) });
    }
    expect(JSON.stringify(template.toJSON())).not.toMatch(/tw_sk_|prk_[a-z0-9]{8}|sandbox_|live_/);
  });

  it('two stages synthesize side by side in one account: no hard-coded physical names', () => {
    const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
    app.node.setContext('stage', 'blue');
    const blue = buildApp(app, { nag: false }).stack;
    const other = new App({ context: { 'aws:cdk:bundling-stacks': [], stage: 'green' } });
    const green = buildApp(other, { nag: false }).stack;
    expect(blue.stackName).not.toBe(green.stackName);
    const named =
      /^(FunctionName|StateMachineName|BucketName|Name|LogGroupName|TableName|TopicName|QueueName|RoleName|ScheduleGroupName)$/;
    for (const s of [blue, green]) {
      for (const [id, r] of Object.entries(Template.fromStack(s).toJSON().Resources as Record<string, Resource>)) {
        if (r.Type === 'AWS::ApiGatewayV2::Stage') continue; // "$default" is API Gateway's own name for the default stage
        if (r.Type === 'AWS::ApiGatewayV2::Api') {
          expect(JSON.stringify(r.Properties.Name)).toContain(s.stackName); // a label, derived from the stack
          continue;
        }
        // A reference ({ Ref }, { Fn::GetAtt }) to a generated name is fine; so is a literal name CDK derived from
        // the stack (a schedule group's); a literal that does not carry the stack's name is hard-coded.
        for (const [key, value] of Object.entries(r.Properties ?? {})) {
          if (named.test(key) && typeof value === 'string')
            expect(value, `${id}.${key}`).toContain(s.stackName.replace(/-/g, ''));
        }
      }
    }
    expect(Stack.of(blue).node.tryGetContext('stage')).toBe('blue');
  });

  it('rejects a stage name that cannot name a stack', () => {
    expect(() => buildApp(new App({ context: { stage: 'Prod Stage!' } }), { nag: false })).toThrow(
      /stage "Prod Stage!" must be/,
    );
  });
});
