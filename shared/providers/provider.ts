/**
 * What the rest of the code knows about a provider: one descriptor per provider (`shared/providers/<provider>/index.ts`),
 * listed once in the registry (`shared/providers/index.ts`). Batches, the ledger query, the stack, the state machine,
 * rate budgets, secrets' placeholders and cdk-nag loop over the registry instead of naming providers.
 *
 * A descriptor is light (schemas and facts, no I/O): the provider's own functions import their own module directly;
 * only code that loops over every provider imports the registry.
 */
import type * as z from 'zod/mini';
import type { SecretSchema, SecretStore } from '#shared/aws/secrets.ts';
import type { InputIssue } from '#shared/core/errors.ts';
import type { Operation } from '#shared/core/outcome.ts';

/** A function that calls the provider, with its reserved concurrency (containers at once, infra/budget.ts). */
export interface ProviderFunctionSpec {
  /** Its folder under functions/ (and its operation). */
  readonly fn: Operation;
  readonly reserved: number;
  /** Its Lambda description (and its route's summary). */
  readonly description: string;
  /** Its API route (shared/handler/routes.ts lists them in the registry's order): API Gateway path template. */
  readonly route: { readonly method: 'GET' | 'POST'; readonly path: string };
  /**
   * Containers of its own for API calls: the operation deployed a second time (the API deployment, tagged
   * `deployment: api`), which serves its route, while the first serves the state machine (and expirations).
   * Batches that hold every container of the first then do not throttle an API caller (README, Architecture). Only
   * for a metered budget: a static share would strand the API's share of the provider's limit whenever no caller
   * uses it (infra/budget.ts).
   */
  readonly api?: number;
}

/** A task of the batch state machine as a provider's hooks see it (shared/batch/prepare.ts, PreparedTask). */
export interface ChunkTask {
  item: Record<string, unknown> & { provider: string };
  indexes?: number[];
  idempotencyKey: string;
}

/** A provider that takes many targets in one call (Auco: many codes per call): how a batch groups its items. */
export interface ChunkHook {
  /** Targets per call (configurable by environment in the provider's module). */
  size(): number;
  /** The tasks for the provider's unique items, each holding at most `size` targets, keyed with `key(what)`. */
  tasks(
    items: readonly { item: Record<string, unknown>; index: number }[],
    batch: { reason: string; requestedBy?: string | undefined },
    size: number,
    key: (what: string) => string,
  ): ChunkTask[];
  /** The target of each of a chunk task's items, in the order of its `indexes`. */
  targets(task: ChunkTask): Record<string, string>[];
  /** The task that sends again only the given targets of a chunk (a round retries only its failed ones). */
  subset(
    task: ChunkTask,
    targets: readonly { index: number; target: Record<string, string> }[],
    key: (what: string) => string,
  ): ChunkTask;
}

/** How `npm run cli -- cancel <provider> ...` (local/cli.ts) turns its arguments into the provider's API route. */
export interface CliCancel {
  /** The command's usage line, after `cancel `. */
  readonly usage: string;
  request(
    ids: string[],
    opts: Readonly<Record<string, string | string[] | boolean | undefined>>,
    need: (value: string | undefined, what: string) => string,
    usage: (message: string) => Error,
  ): { path: string; body?: unknown; headers?: Record<string, string> };
}

/** A provider whose records a batch's guard reads before cancelling (a credit application's status and expiry). */
export interface GuardHook {
  /** The credit application statuses a guard may skip on. */
  readonly statuses: readonly [string, ...string[]];
  /** The organization id in its secret that the guard's lookup defaults both organization headers to, or undefined
   * when it has none or no secret is configured. Transient trouble reading it propagates. */
  organizationId(secrets: SecretStore): Promise<string | undefined>;
}

export interface ProviderModule<Name extends string = string> {
  readonly name: Name;
  /** Its name as people write it (in documents: "GoCardless"). */
  readonly title: string;
  /** The functions that call it; the first is its cancel function, which a batch's map fans out to. */
  readonly functions: readonly [ProviderFunctionSpec, ...ProviderFunctionSpec[]];
  /** Its batch item (a strict object whose `provider` is `name`), validated by the API, batches and tasks. */
  readonly item: z.ZodMiniObject;
  /** The item fields that identify a target, in the order a ledger key and an identity are written. */
  readonly targetFields: readonly string[];
  /** Its target as an example of a ledger query's (`GET /v1/cancellations?provider=<name>&<this>`), where the API's
   * messages give one. */
  readonly queryExample?: string;
  /** Its requests' budget per second (PROVIDERS.md), and the window the provider counts it over. */
  readonly limit: { readonly perSecond: number; readonly windowSeconds: number };
  /** Metered across every container of its functions through RATE_BUDGET_TABLE rather than split into static
   * shares (infra/budget.ts says when). */
  readonly metered: boolean;
  /** Its secret's schema (its secret.ts): its operations read their secret with it, a local secrets file is
   * validated with it. */
  readonly secret: SecretSchema;
  /** The secret as the stack creates it before an operator puts the real values in (infra/provider-secrets.ts). */
  readonly secretPlaceholder: { readonly template: Record<string, string>; readonly generated: string };
  /** Environment its cancel function and Prepare need (their settings of `chunk`). */
  readonly environment?: Record<string, string>;
  /** Problems of a valid item that depend on the batch around it. */
  checkItem?(item: Record<string, unknown>, batch: { requestedBy?: string | undefined }, where: string): InputIssue[];
  /** Who else reads a batch's reason (its requests carry it): named in the message that asks for one. */
  readonly reasonGoesTo?: string;
  /** The lookup a batch's guard makes. */
  readonly guard?: GuardHook;
  /** Many targets per call: how a batch chunks them. */
  readonly chunk?: ChunkHook;
  /** Its cancel command in the CLI. */
  readonly cli: CliCancel;
}
