/** Wires the process-wide dependencies to simulators: fast retries, secrets held in memory. */

import { SecretStore, StaticSecretSource } from '#shared/aws/secrets.ts';
import { setDefaultDeps } from '#shared/core/cancel.ts';
import { MemoryLedger } from '#shared/core/ledger.ts';
import type { Provider } from '#shared/core/outcome.ts';
import { MemoryIdempotencyStore, setIdempotencyStore } from '#shared/handler/idempotency.ts';
import { HttpClient } from '#shared/http/client.ts';

export function useSecrets(
  secrets: Partial<Record<Provider, unknown>>,
  http = new HttpClient({ retry: { baseDelayMs: 5, maxDelayMs: 20 } }),
) {
  const store = new SecretStore(new StaticSecretSource(secrets));
  const ledger = new MemoryLedger();
  setDefaultDeps({ http, secrets: store, ledger });
  // A fresh idempotency store too: each test starts with no request remembered.
  setIdempotencyStore(new MemoryIdempotencyStore());
  return { http, store, ledger };
}
