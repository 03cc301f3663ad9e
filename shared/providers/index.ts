/**
 * The registry: every provider, once. Code that loops over providers (batches, the ledger query, the stack, the
 * state machine, rate budgets, secrets' placeholders, cdk-nag, the local twin) reads this list; a provider's own
 * functions import their own module instead, so their bundles hold no other provider's code.
 *
 * Adding a provider: README, "Adding a provider".
 */
import * as z from 'zod/mini';
import type { SecretSchema } from '#shared/aws/secrets.ts';
import { RATE_MARGIN } from '#shared/core/cancel.ts';
import { PROVIDERS, type Provider } from '#shared/core/outcome.ts';
import { auco } from './auco/index.ts';
import { gocardless } from './gocardless/index.ts';
import { mycreditapp } from './mycreditapp/index.ts';
import type { ProviderFunctionSpec, ProviderModule } from './provider.ts';
import { truework } from './truework/index.ts';

/** Every provider, in the order they are listed everywhere (the API, the state machine's branches, summaries). */
export const REGISTRY = [mycreditapp, auco, truework, gocardless] as const satisfies readonly ProviderModule[];

const PROVIDER_MODULES = Object.fromEntries(REGISTRY.map((p) => [p.name, p])) as unknown as Record<
  Provider,
  ProviderModule<Provider>
>;

/** A provider's module. */
export function providerModule(provider: Provider): ProviderModule<Provider> {
  return PROVIDER_MODULES[provider];
}

/** Each provider's request budget per second (its descriptor's `limit`, from its adapter: PROVIDERS.md). */
export const PROVIDER_LIMITS = Object.fromEntries(REGISTRY.map((p) => [p.name, p.limit.perSecond])) as Record<
  Provider,
  number
>;

/** What one process paces to when nothing says otherwise (a single process: the CLI's tests, a script). */
export const DEFAULT_RATE_PER_SECOND = Object.fromEntries(
  REGISTRY.map((p) => [p.name, p.limit.perSecond * RATE_MARGIN]),
) as Record<Provider, number>;

/** Each provider's secret schema (what a local secrets file is validated with). */
export const SECRET_SCHEMAS = Object.fromEntries(REGISTRY.map((p) => [p.name, p.secret])) as unknown as Record<
  Provider,
  SecretSchema
>;

/** The provider a batch's guard looks up (its credit applications), with its title for messages. */
export const GUARD = { provider: mycreditapp.name, title: mycreditapp.title, ...mycreditapp.guard };

/** Who else reads a batch's reason, besides the record (the providers whose requests carry it). */
export const REASON_GOES_TO: readonly string[] = REGISTRY.flatMap((p) => ('reasonGoesTo' in p ? [p.reasonGoesTo] : []));

/** Any provider's batch item, told apart by `provider`. */
export const BatchItem = z.discriminatedUnion(
  'provider',
  REGISTRY.map((p) => p.item) as unknown as [
    (typeof REGISTRY)[0]['item'],
    (typeof REGISTRY)[1]['item'],
    (typeof REGISTRY)[2]['item'],
    (typeof REGISTRY)[3]['item'],
  ],
  { error: `must name a provider: ${PROVIDERS.slice(0, -1).join(', ')} or ${PROVIDERS.at(-1)}` },
);
export type BatchItem = z.infer<typeof BatchItem>;

/** Every function that calls a provider, with its provider. */
export const PROVIDER_FUNCTIONS: readonly (ProviderFunctionSpec & { provider: Provider })[] = REGISTRY.flatMap((p) =>
  p.functions.map((f) => ({ ...f, provider: p.name })),
);
