/** The auco secret's schema (DESIGN.md 3.2, a contract): validated at load by shared/aws/secrets.ts. */
import * as z from 'zod/mini';
import { providerUrl } from '#shared/aws/secret-fields.ts';

export const AucoSecret = z.strictObject({
  privateKey: z.string().check(z.startsWith('prk_', 'must be an Auco private key (prk_...)')),
  publicKey: z.string().check(z.startsWith('puk_', 'must be an Auco public key (puk_...)')),
  baseUrl: z.optional(providerUrl),
});
