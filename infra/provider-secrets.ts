/**
 * One Secrets Manager secret per provider (DESIGN.md 3.2). The template holds placeholders only: each secret is
 * created with a generated value in its credential field, which fails validation or authentication until an
 * operator puts the real credentials in (README, "Deploy"). No credential is ever in code or in the template.
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import type { Provider } from '#shared/core/outcome.ts';
import { REGISTRY } from '#shared/providers/index.ts';

export class ProviderSecrets extends Construct {
  readonly secrets: Record<Provider, Secret>;

  constructor(scope: Construct, id: string, props: { removalPolicy?: RemovalPolicy } = {}) {
    super(scope, id);
    // Before the real values are put in, each secret holds its provider module's placeholder: the shape of its
    // secret schema, with a generated value in its credential field.
    const make = ({ name, secretPlaceholder }: (typeof REGISTRY)[number]) =>
      new Secret(this, name, {
        description: `${name} credentials for provider cancellations (JSON; see README "Configuration")`,
        removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
        generateSecretString: {
          secretStringTemplate: JSON.stringify(secretPlaceholder.template),
          generateStringKey: secretPlaceholder.generated,
          excludePunctuation: true,
          passwordLength: 32,
        },
      });
    this.secrets = Object.fromEntries(REGISTRY.map((p) => [p.name, make(p)])) as unknown as Record<Provider, Secret>;
  }
}
