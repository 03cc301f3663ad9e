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
 *
 * Today every provider is metered: each cancel operation also has an API deployment (`api`: containers of its own
 * for API calls, shared/providers/provider.ts), and static shares would strand its share whenever no caller uses it.
 * The static-share path stays for a provider that calls for it (one function, no API deployment, a limit that
 * splits well).
 */
import { RATE_MARGIN } from '#shared/core/cancel.ts';
import type { Provider } from '#shared/core/outcome.ts';
import { providerModule, REGISTRY } from '#shared/providers/index.ts';
import type { ProviderFunctionSpec } from '#shared/providers/provider.ts';

/** Every function that calls a provider, with its reserved concurrency (containers at once), from each provider's
 * module (`functions`: its cancel function first, which the batch maps fan out to). */
export const PROVIDER_FUNCTIONS = Object.fromEntries(REGISTRY.map((p) => [p.name, p.functions])) as unknown as Record<
  Provider,
  readonly ProviderFunctionSpec[]
>;

/** The window each provider counts its limit over (GoCardless: 1,000 a minute; the others: per second). */
export const LIMIT_WINDOW_SECONDS = Object.fromEntries(
  REGISTRY.map((p) => [p.name, p.limit.windowSeconds]),
) as unknown as Record<Provider, number>;

/** The most requests a function's containers can send in any one limit window, all busy at once: each sends at
 * most ⌈rate × window⌉ in a window (its slots are 1/rate apart), and a shared budget is one sender. */
export function worstInWindow(provider: Provider, rate: number, containers: number): number {
  return containers * Math.ceil(rate * LIMIT_WINDOW_SECONDS[provider] - 1e-9);
}

/** The provider each function calls, if any. */
export function providerOf(fn: string): Provider | undefined {
  return REGISTRY.find((p) => p.functions.some((f) => f.fn === fn))?.name;
}

/** The reserved concurrency of a function that calls a provider (undefined: unreserved). */
export function reservedConcurrency(fn: string): number | undefined {
  const provider = providerOf(fn);
  return provider ? PROVIDER_FUNCTIONS[provider].find((f) => f.fn === fn)?.reserved : undefined;
}

/** Whether the provider's budget is metered across every container of its functions (RATE_BUDGET_TABLE) rather
 * than split into static shares: where several functions share it, and where a share per container could not keep
 * the count in a window within the limit without leaving a single container (its module's `metered`). */
export function sharedBudget(provider: Provider): boolean {
  return providerModule(provider).metered;
}

/** `<PROVIDER>_RATE_PER_SECOND` of a function: the whole budget, metered across containers, where the budget is
 * shared; otherwise this container's share of it (the budget over the function's reserved concurrency). */
export function paceOf(fn: string): number {
  const provider = providerOf(fn);
  const entry = provider ? PROVIDER_FUNCTIONS[provider].find((f) => f.fn === fn) : undefined;
  if (!provider || !entry) throw new Error(`${fn} calls no provider (infra/budget.ts)`);
  const budget = providerModule(provider).limit.perSecond * RATE_MARGIN;
  return sharedBudget(provider) ? budget : budget / entry.reserved;
}

/** The reserved concurrency of an operation's API deployment, if it has one (undefined: its one deployment serves
 * both the API and batches). Refused for a provider with static shares: the API's share would be stranded. */
export function apiReservedConcurrency(fn: string): number | undefined {
  const provider = providerOf(fn);
  const api = provider ? PROVIDER_FUNCTIONS[provider].find((f) => f.fn === fn)?.api : undefined;
  if (api !== undefined && provider && !sharedBudget(provider))
    throw new Error(`${fn} has an API deployment but ${provider}'s budget is not metered (infra/budget.ts)`);
  return api;
}

/** A batch map's MaxConcurrency: the provider's cancel function's reserved concurrency (more would only be
 * throttled; fewer would leave budget unused when one batch runs alone). */
export function batchConcurrency(provider: Provider): number {
  return PROVIDER_FUNCTIONS[provider][0]?.reserved ?? 1;
}
