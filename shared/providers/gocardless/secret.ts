/** The gocardless secret's schema (DESIGN.md 3.2, a contract): validated at load by shared/aws/secrets.ts. */
import * as z from 'zod/mini';
import { nonEmpty, providerUrl } from '#shared/aws/secret-fields.ts';

export const GoCardlessSecret = z.strictObject({
  accessToken: nonEmpty(512),
  baseUrl: z.optional(providerUrl),
});
