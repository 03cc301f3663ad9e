/** Truework, as the rest of the code knows it (shared/providers/provider.ts): listed in shared/providers/index.ts. */
import type { ProviderModule } from '#shared/providers/provider.ts';
import { RATE } from './adapter.ts';
import { TrueworkItem } from './items.ts';
import { TrueworkSecret } from './secret.ts';

export const truework = {
  name: 'truework',
  title: 'Truework',
  // 10 at 0.95 requests/s each (at most one a second each): 10 in any second, and a container has a whole second for
  // each call, the provider's answer, the ledger and the idempotency record included.
  functions: [
    {
      fn: 'cancel-verification-order',
      reserved: 10,
      description: 'Cancel a Truework verification order',
      route: { method: 'POST', path: '/v1/truework/orders/{orderId}/cancel' },
    },
  ],
  item: TrueworkItem,
  targetFields: ['orderId'],
  limit: RATE,
  metered: false,
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
