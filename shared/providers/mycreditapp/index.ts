/** mycreditapp, as the rest of the code knows it (shared/providers/provider.ts): listed in shared/providers/index.ts. */
import { ConfigurationError } from '#shared/core/errors.ts';
import type { ProviderModule } from '#shared/providers/provider.ts';
import { CREDIT_APPLICATION_STATUSES, RATE } from './adapter.ts';
import { MyCreditAppItem } from './items.ts';
import { MyCreditAppSecret } from './secret.ts';

export const mycreditapp = {
  name: 'mycreditapp',
  title: 'mycreditapp',
  functions: [
    {
      fn: 'cancel-document-request',
      reserved: 5,
      api: 3,
      description: 'Cancel a mycreditapp document request',
      route: { method: 'POST', path: '/v1/mycreditapp/organizations/{orgId}/document-requests/{requestId}/cancel' },
    },
    // The lookup (batch guards, expirations, API reads) shares mycreditapp's budget with the cancels.
    // Metered across containers, its bound does not depend on how many run; 2 keep the budget busy (each has about
    // half a second per call) without crowding the shared slots (more measured worse: README, Performance, storm).
    {
      fn: 'get-credit-application',
      reserved: 2,
      // API reads of their own: 200 guards at midnight do not throttle a caller's read.
      api: 2,
      description: 'Read a mycreditapp credit application',
      route: { method: 'GET', path: '/v1/mycreditapp/credit-applications/{creditApplicationId}' },
    },
  ],
  item: MyCreditAppItem,
  targetFields: ['orgId', 'requestId'],
  limit: RATE,
  // Several functions share the budget (the cancels and the lookup).
  metered: true,
  secret: MyCreditAppSecret,
  secretPlaceholder: { template: { clientId: 'REPLACE_WITH_CLIENT_ID' }, generated: 'clientSecret' },
  // A batch's guard and the expirations read its credit applications (get-credit-application).
  guard: {
    statuses: CREDIT_APPLICATION_STATUSES,
    async organizationId(secrets) {
      try {
        return (await secrets.get('mycreditapp', MyCreditAppSecret)).organizationId;
      } catch (error) {
        if (error instanceof ConfigurationError) return undefined;
        throw error;
      }
    },
  },
  cli: {
    usage: 'mycreditapp <orgId> <requestId> --requester <uuid> --target <uuid>',
    request(ids, opts, need) {
      const [orgId, requestId] = [need(ids[0], 'an organization id'), need(ids[1], 'a document request id')];
      return {
        path: `/v1/mycreditapp/organizations/${encodeURIComponent(orgId)}/document-requests/${encodeURIComponent(requestId)}/cancel`,
        headers: {
          'requester-organization-id': need(opts.requester as string | undefined, '--requester'),
          'target-organization-id': need(opts.target as string | undefined, '--target'),
        },
      };
    },
  },
} as const satisfies ProviderModule<'mycreditapp'>;
