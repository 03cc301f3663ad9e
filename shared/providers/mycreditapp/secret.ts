/** The mycreditapp secret's schema (DESIGN.md 3.2, a contract): validated at load by shared/aws/secrets.ts. */
import * as z from 'zod/mini';
import { nonEmpty, providerUrl } from '#shared/aws/secret-fields.ts';

export const MyCreditAppSecret = z.strictObject({
  clientId: nonEmpty(128),
  clientSecret: nonEmpty(64),
  baseUrl: z.optional(providerUrl),
  /** The version segment appended to a `baseUrl` without a path (and to the production URL). */
  apiVersion: z.optional(z.string().check(z.regex(/^v[0-9][0-9a-z-]*$/, 'must look like "v1" or "v1-beta"'))),
  /** Default for both organization headers when a call (a batch guard, say) does not name them. */
  organizationId: z.optional(z.uuid('must be a uuid')),
});
