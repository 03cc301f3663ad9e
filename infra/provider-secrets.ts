/**
 * One Secrets Manager secret per provider (DESIGN.md 3.2). The template holds placeholders only: each secret is
 * created with a generated value in its credential field, which fails validation or authentication until an
 * operator puts the real credentials in (README, "Deploy"). No credential is ever in code or in the template.
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import type { Provider } from '#shared/core/outcome.ts';

/** What each secret looks like before the real values are put in: the shape of `shared/aws/secrets.ts`. */
const PLACEHOLDERS: Record<Provider, { template: Record<string, string>; generated: string }> = {
  mycreditapp: { template: { clientId: 'REPLACE_WITH_CLIENT_ID' }, generated: 'clientSecret' },
  auco: { template: { publicKey: 'puk_REPLACE_WITH_PUBLIC_KEY' }, generated: 'privateKey' },
  truework: { template: {}, generated: 'apiKey' },
  gocardless: { template: {}, generated: 'accessToken' },
};

export class ProviderSecrets extends Construct {
  readonly secrets: Record<Provider, Secret>;

  constructor(scope: Construct, id: string, props: { removalPolicy?: RemovalPolicy } = {}) {
    super(scope, id);
    const make = (provider: Provider) =>
      new Secret(this, provider, {
        description: `${provider} credentials for provider cancellations (JSON; see README "Configuration")`,
        removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
        generateSecretString: {
          secretStringTemplate: JSON.stringify(PLACEHOLDERS[provider].template),
          generateStringKey: PLACEHOLDERS[provider].generated,
          excludePunctuation: true,
          passwordLength: 32,
        },
      });
    this.secrets = {
      mycreditapp: make('mycreditapp'),
      auco: make('auco'),
      truework: make('truework'),
      gocardless: make('gocardless'),
    };
  }
}
