/**
 * The simulators, one per provider (npm start loops over them): how to make each, what its demo secret adds, and the
 * demo requests `npm start` prints for the simulated providers.
 */
import type { Provider } from '#shared/core/outcome.ts';
import { AUCO_DEMO, AucoSimulator } from './auco.ts';
import type { Simulator } from './base.ts';
import { GOCARDLESS_DEMO, GoCardlessSimulator } from './gocardless.ts';
import { MYCREDITAPP_DEMO, MyCreditAppSimulator } from './mycreditapp.ts';
import { TRUEWORK_DEMO, TrueworkSimulator } from './truework.ts';

export const SIMULATORS: Record<Provider, { create: () => Simulator; demoSecret?: Record<string, string> }> = {
  // The demo organization answers lookups that name none.
  mycreditapp: { create: () => new MyCreditAppSimulator(), demoSecret: { organizationId: MYCREDITAPP_DEMO.hostOrg } },
  auco: { create: () => new AucoSimulator() },
  truework: { create: () => new TrueworkSimulator() },
  gocardless: { create: () => new GoCardlessSimulator() },
};

/** The demo API calls and batch items for the simulated providers. */
export function demoRequests(simulated: Set<Provider>): { calls: { path: string; body: unknown }[]; items: unknown[] } {
  const out: { path: string; body: unknown }[] = [];
  const post = (path: string, body: unknown) => ({ path, body });
  if (simulated.has('gocardless'))
    out.push(
      post(`/v1/gocardless/billing-requests/${GOCARDLESS_DEMO.pending}/cancel`, { metadata: { reason: 'declined' } }),
    );
  if (simulated.has('truework'))
    out.push(
      post(`/v1/truework/orders/${TRUEWORK_DEMO.open}/cancel`, {
        reason: 'other',
        details: 'Credit application declined',
      }),
    );
  const items: unknown[] = [
    ...(simulated.has('auco') ? [{ provider: 'auco', code: AUCO_DEMO.created }] : []),
    ...(simulated.has('mycreditapp')
      ? [
          {
            provider: 'mycreditapp',
            orgId: MYCREDITAPP_DEMO.hostOrg,
            requestId: MYCREDITAPP_DEMO.pendingRequest,
            requesterOrganizationId: MYCREDITAPP_DEMO.hostOrg,
            targetOrganizationId: MYCREDITAPP_DEMO.guestOrg,
          },
        ]
      : []),
    ...(simulated.has('gocardless') ? [{ provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.ready }] : []),
  ];
  return { calls: out, items };
}
