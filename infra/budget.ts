/**
 * One rate budget per provider, whatever runs at once (DESIGN.md 4, README "Architecture").
 *
 * Lambda's reserved concurrency is the semaphore: a function never runs more containers than it reserves, and
 * every container paces its own calls at its share of the provider's budget, so the worst case (every container
 * of every function that calls a provider busy at once, from any number of executions and API calls) is
 *
 *   Σ over the provider's functions of reserved concurrency × per-container rate = limit × RATE_MARGIN ≤ limit.
 *
 * An invocation beyond the reserved concurrency is throttled (Lambda.TooManyRequestsException), which the state
 * machine retries with backoff and an API caller sees as a 5xx to retry: throttling is part of the design.
 * A shared token bucket (DynamoDB) was not needed for the bound: it would add a write per provider call and a
 * hot key, and the bound it gives is the same one, provable from the template only through this table anyway.
 */
import { PROVIDER_LIMITS, RATE_MARGIN } from '../shared/cancel.ts';
import type { Provider } from '../shared/outcome.ts';
import type { FunctionName } from '../shared/routes.ts';

/** Every function that calls a provider: its reserved concurrency (containers at once) and its share of the
 * provider's budget (the shares of a provider add up to 1). A provider's cancel function comes first: the batch
 * maps fan out to it. */
export const PROVIDER_FUNCTIONS: Record<Provider, readonly { fn: FunctionName; reserved: number; share: number }[]> = {
  // The lookup (batch guards, expirations, API reads) shares mycreditapp's budget with the cancels. A static share
  // cannot be lent while idle, so it is small: one container at 0.7 requests/s reads 200 applications in under five
  // minutes (200 expirations at midnight), while the cancels keep 92.5 % of the budget (README, Performance: storm).
  mycreditapp: [
    { fn: 'cancel-document-request', reserved: 5, share: 0.925 },
    { fn: 'get-credit-application', reserved: 1, share: 0.075 },
  ],
  auco: [{ fn: 'cancel-signing-processes', reserved: 2, share: 1 }],
  truework: [{ fn: 'cancel-verification-order', reserved: 5, share: 1 }],
  gocardless: [{ fn: 'cancel-billing-request', reserved: 8, share: 1 }],
};

/** The provider each function calls, if any. */
export function providerOf(fn: string): Provider | undefined {
  for (const [provider, fns] of Object.entries(PROVIDER_FUNCTIONS) as [
    Provider,
    (typeof PROVIDER_FUNCTIONS)[Provider],
  ][])
    if (fns.some((f) => f.fn === fn)) return provider;
  return undefined;
}

/** The reserved concurrency of a function that calls a provider (undefined: unreserved). */
export function reservedConcurrency(fn: string): number | undefined {
  const provider = providerOf(fn);
  return provider ? PROVIDER_FUNCTIONS[provider].find((f) => f.fn === fn)?.reserved : undefined;
}

/** Requests per second one container of a function may send to its provider: the function's share of the budget
 * over its reserved concurrency, so Σ reserved × rate = limit × margin for every provider. */
export function containerRate(fn: string): number {
  const provider = providerOf(fn);
  const entry = provider ? PROVIDER_FUNCTIONS[provider].find((f) => f.fn === fn) : undefined;
  if (!provider || !entry) throw new Error(`${fn} calls no provider (infra/budget.ts)`);
  return (PROVIDER_LIMITS[provider] * RATE_MARGIN * entry.share) / entry.reserved;
}

/** A batch map's MaxConcurrency: the provider's cancel function's reserved concurrency (more would only be
 * throttled; fewer would leave budget unused when one batch runs alone). */
export function batchConcurrency(provider: Provider): number {
  return PROVIDER_FUNCTIONS[provider][0]?.reserved ?? 1;
}
