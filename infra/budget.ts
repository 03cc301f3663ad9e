/**
 * One rate budget per provider, whatever runs at once (DESIGN.md 4, README "Architecture").
 *
 * Lambda's reserved concurrency bounds the containers: a function never runs more at once than it reserves, however
 * many executions and API calls want it (the rest are throttled, Lambda.TooManyRequestsException, and retried).
 * Within that bound, requests are paced in one of two ways, both provable from the template:
 *
 * - A provider called by one function: each container paces at its share of the budget, so every container busy
 *   at once sends Σ reserved × rate = limit × RATE_MARGIN ≤ limit; and, counted the way a provider counts (any
 *   one window of its limit), at most Σ reserved × ⌈rate × window⌉ ≤ limit × window (worstInWindow).
 * - A provider whose budget several functions share (mycreditapp: the cancels and the lookup), or whose limit is too
 *   small to split into per-container shares (Auco): one budget metered across all of their containers through a
 *   DynamoDB item (RATE_BUDGET_TABLE, shared/aws/rate-budget.ts), at limit × RATE_MARGIN. Static shares would strand budget: the lookup's share idles while a batch cancels, and
 *   200 guards at midnight crawl through a small share (measured: README, Performance, storm). The price is one
 *   conditional write per request to that provider.
 *
 * No request to a provider goes out unmetered: a shared budget that cannot be read fails the request as transient.
 */
import { PROVIDER_LIMITS, RATE_MARGIN } from '#shared/core/cancel.ts';
import type { Provider } from '#shared/core/outcome.ts';
import type { FunctionName } from '#shared/handler/routes.ts';

/** Every function that calls a provider, with its reserved concurrency (containers at once). A provider's cancel
 * function comes first: the batch maps fan out to it. */
export const PROVIDER_FUNCTIONS: Record<Provider, readonly { fn: FunctionName; reserved: number }[]> = {
  // The lookup (batch guards, expirations, API reads) shares mycreditapp's budget with the cancels.
  // Metered across containers, its bound does not depend on how many run; 5 keep the budget busy (each has about
  // half a second per call) without crowding the shared slots (10 measured worse: README, Performance, storm).
  mycreditapp: [
    { fn: 'cancel-document-request', reserved: 5 },
    { fn: 'get-credit-application', reserved: 2 },
  ],
  // Metered: two containers at a static 2.375/s each could send 3 each in one second (a window catches three slots
  // 421 ms apart), 6 where the budget is 5; one container would throttle an API call whenever a batch runs.
  auco: [{ fn: 'cancel-signing-processes', reserved: 2 }],
  // 10 at 0.95 requests/s each (at most one a second each): 10 in any second, and a container has a whole second for
  // each call, the provider's answer, the ledger and the idempotency record included.
  truework: [{ fn: 'cancel-verification-order', reserved: 10 }],
  gocardless: [{ fn: 'cancel-billing-request', reserved: 8 }],
};

/** The window each provider counts its limit over (GoCardless: 1,000 a minute; the others: per second). */
export const LIMIT_WINDOW_SECONDS: Record<Provider, number> = { mycreditapp: 1, auco: 1, truework: 1, gocardless: 60 };

/** The most requests a function's containers can send in any one limit window, all busy at once: each sends at
 * most ⌈rate × window⌉ in a window (its slots are 1/rate apart), and a shared budget is one sender. */
export function worstInWindow(provider: Provider, rate: number, containers: number): number {
  return containers * Math.ceil(rate * LIMIT_WINDOW_SECONDS[provider] - 1e-9);
}

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

/** Providers whose budget is metered across containers (RATE_BUDGET_TABLE) rather than split into static shares:
 * where several functions share it (mycreditapp), and where a share per container could not keep the count in a
 * window within the limit without leaving a single container (Auco, 5/s). */
const METERED: ReadonlySet<Provider> = new Set<Provider>(['mycreditapp', 'auco']);

/** Whether the provider's budget is metered across every container of its functions. */
export function sharedBudget(provider: Provider): boolean {
  return METERED.has(provider);
}

/** `<PROVIDER>_RATE_PER_SECOND` of a function: the whole budget, metered across containers, where the budget is
 * shared; otherwise this container's share of it (the budget over the function's reserved concurrency). */
export function paceOf(fn: string): number {
  const provider = providerOf(fn);
  const entry = provider ? PROVIDER_FUNCTIONS[provider].find((f) => f.fn === fn) : undefined;
  if (!provider || !entry) throw new Error(`${fn} calls no provider (infra/budget.ts)`);
  const budget = PROVIDER_LIMITS[provider] * RATE_MARGIN;
  return sharedBudget(provider) ? budget : budget / entry.reserved;
}

/** A batch map's MaxConcurrency: the provider's cancel function's reserved concurrency (more would only be
 * throttled; fewer would leave budget unused when one batch runs alone). */
export function batchConcurrency(provider: Provider): number {
  return PROVIDER_FUNCTIONS[provider][0]?.reserved ?? 1;
}
