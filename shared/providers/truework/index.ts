/** Truework, as the rest of the code knows it (shared/providers/provider.ts): listed in shared/providers/index.ts. */
import type { ProviderModule } from '#shared/providers/provider.ts';
import { RATE } from './adapter.ts';
import { TrueworkItem } from './items.ts';
import { TrueworkSecret } from './secret.ts';

export const truework = {
  name: 'truework',
  title: 'Truework',
  // 10 containers keep the metered budget (9.5 a second) busy while each call waits on the provider, the ledger and
  // the idempotency record; 5 more serve the API.
  functions: [
    {
      fn: 'cancel-verification-order',
      reserved: 10,
      api: 5,
      description: 'Cancel a Truework verification order',
      route: { method: 'POST', path: '/v1/truework/orders/{orderId}/cancel' },
    },
  ],
  item: TrueworkItem,
  targetFields: ['orderId'],
  limit: RATE,
  // Metered, so that the API deployment's containers strand nothing when no caller uses them.
  metered: true,
  secret: TrueworkSecret,
  secretPlaceholder: { template: {}, generated: 'apiKey' },
  cli: {
    usage: 'truework <orderId> [--reason other] [--details TEXT]',
    request: (ids, opts, need) => ({
      path: `/v1/truework/orders/${encodeURIComponent(need(ids[0], 'an order id'))}/cancel`,
      body: {
        reason: (opts.reason as string | undefined) ?? 'other',
        ...(opts.details ? { details: opts.details } : {}),
      },
    }),
  },
} as const satisfies ProviderModule<'truework'>;
