/** Field schemas the providers' secret schemas share (shared/providers/<provider>/secret.ts). */
import * as z from 'zod/mini';

/** A loopback host: the only place a plaintext `http://` URL may carry a credential (a simulator, a local proxy). */
const isLoopback = (hostname: string) =>
  hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
export const providerUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).check(
  z.refine(
    (v) => {
      try {
        const url = new URL(v);
        return url.protocol !== 'http:' || isLoopback(url.hostname); // other schemes: reported by the check above
      } catch {
        return true; // not a URL at all: reported by the check above
      }
    },
    {
      error:
        'must be an https URL: http:// would send the credential in plaintext, and is accepted only for a loopback address (127.0.0.1, localhost, [::1])',
    },
  ),
);
export const nonEmpty = (max: number) => z.string().check(z.minLength(1, 'must not be empty'), z.maxLength(max));
