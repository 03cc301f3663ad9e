/** The CDK app: `cdk synth -c stage=dev` (offline, no credentials needed). cdk-nag's AwsSolutions checks run on
 * every synthesis and fail it on any finding not acknowledged, with a reason, in infra/nag.ts. */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { CancellationsStack } from './stack.ts';

export function buildApp(app = new App(), options: { nag?: boolean } = {}): { app: App; stack: CancellationsStack } {
  const stage = String(app.node.tryGetContext('stage') ?? 'dev');
  if (!/^[a-z][a-z0-9-]{0,19}$/.test(stage)) {
    throw new Error(
      `stage "${stage}" must be 1-20 lower-case letters, digits or dashes, starting with a letter (cdk synth -c stage=dev)`,
    );
  }
  const alarmEmail = app.node.tryGetContext('alarmEmail') as unknown;
  if (alarmEmail !== undefined && (typeof alarmEmail !== 'string' || !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(alarmEmail))) {
    throw new Error(
      'alarmEmail must be one email address to mail alarms to (cdk deploy -c alarmEmail=ops@example.com)',
    );
  }
  const stack = new CancellationsStack(app, `ProviderCancellations-${stage}`, {
    stage,
    ...(alarmEmail ? { alarmEmail } : {}),
    description: `Provider cancellations (${stage})`,
    ...(process.env.CDK_DEFAULT_ACCOUNT
      ? { env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION } }
      : {}),
  });
  if (options.nag ?? true) Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
  return { app, stack };
}

if (import.meta.main) buildApp().app.synth();
