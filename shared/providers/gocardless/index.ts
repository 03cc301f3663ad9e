/** GoCardless, as the rest of the code knows it (shared/providers/provider.ts): listed in shared/providers/index.ts. */
import { PROVIDER_LIMITS } from '#shared/core/cancel.ts';
import type { ProviderModule } from '#shared/providers/provider.ts';
import { GoCardlessItem } from './items.ts';

export const gocardless = {
  name: 'gocardless',
  functions: [{ fn: 'cancel-billing-request', reserved: 8, description: 'Cancel a GoCardless billing request' }],
  item: GoCardlessItem,
  targetFields: ['billingRequestId'],
  // 1,000 a minute (PROVIDERS.md 4.4): counted over any minute.
  limit: { perSecond: PROVIDER_LIMITS.gocardless, windowSeconds: 60 },
  metered: false,
  secretPlaceholder: { template: {}, generated: 'accessToken' },
} as const satisfies ProviderModule<'gocardless'>;
