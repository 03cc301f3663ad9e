/** The truework secret's schema (DESIGN.md 3.2, a contract): validated at load by shared/aws/secrets.ts. */
import * as z from 'zod/mini';
import { providerUrl } from '#shared/aws/secret-fields.ts';

export const TrueworkSecret = z.strictObject({
  apiKey: z.string().check(z.startsWith('tw_sk_', 'must be a Truework secret key (tw_sk_... or tw_sk_test_...)')),
  baseUrl: z.optional(providerUrl),
  /** Response-signature public keys by key id (base64 raw Ed25519). When present, every JSON answer is verified. */
  publicKeys: z.optional(
    z.record(
      z.string().check(z.minLength(1)),
      z.string().check(z.regex(/^[A-Za-z0-9+/]{43}=$/, 'must be a base64 raw Ed25519 key')),
    ),
  ),
  /** The API version sent in `Accept` (`application/json; version=...`); empty means the key's pinned version. */
  apiVersion: z.optional(z.string().check(z.regex(/^(\d{4}-\d{2}-\d{2})?$/, 'must be a date like 2023-10-30'))),
});
