/** GoCardless, as the rest of the code knows it (shared/providers/provider.ts): listed in shared/providers/index.ts. */
import type { ProviderModule } from '#shared/providers/provider.ts';
import { RATE } from './adapter.ts';
import { GoCardlessItem } from './items.ts';
import { GoCardlessSecret } from './secret.ts';

export const gocardless = {
  name: 'gocardless',
  title: 'GoCardless',
  functions: [
    {
      fn: 'cancel-billing-request',
      reserved: 8,
      api: 5,
      description: 'Cancel a GoCardless billing request',
      route: { method: 'POST', path: '/v1/gocardless/billing-requests/{billingRequestId}/cancel' },
    },
  ],
  item: GoCardlessItem,
  targetFields: ['billingRequestId'],
  // The example the ledger query's 400 gives (functions/cancellations).
  queryExample: 'billingRequestId=BRQ...',
  // 1,000 a minute (PROVIDERS.md 4.4): counted over any minute.
  limit: RATE,
  // Metered, so that the API deployment's containers strand nothing when no caller uses them.
  metered: true,
  secret: GoCardlessSecret,
  secretPlaceholder: { template: {}, generated: 'accessToken' },
  cli: {
    usage: 'gocardless <billingRequestId> [--metadata key=value]...',
    request(ids, opts, need, usage) {
      const id = need(ids[0], 'a billing request id');
      const metadata = Object.fromEntries(
        ((opts.metadata as string[] | undefined) ?? []).map((kv) => {
          const at = kv.indexOf('=');
          if (at < 1) throw usage(`--metadata takes key=value, not "${kv}"`);
          return [kv.slice(0, at), kv.slice(at + 1)];
        }),
      );
      return {
        path: `/v1/gocardless/billing-requests/${encodeURIComponent(id)}/cancel`,
        body: Object.keys(metadata).length ? { metadata } : {},
      };
    },
  },
} as const satisfies ProviderModule<'gocardless'>;
