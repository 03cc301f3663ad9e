/**
 * Lambda: GET /v1/cancellations, the audit ledger. By provider and target
 * (`?provider=gocardless&billingRequestId=BRQ...`, `?provider=mycreditapp&orgId=...&requestId=...`) or by credit
 * application (`?creditApplicationId=...`); newest first, `limit` (1-100) and `cursor` to page.
 */
import * as z from 'zod/mini';
import { needs } from '#shared/config.ts';
import { defaultDeps } from '#shared/core/cancel.ts';
import { InvalidInputError } from '#shared/core/errors.ts';
import { Uuid } from '#shared/core/items.ts';
import { type LedgerQuery, targetKey } from '#shared/core/ledger.ts';
import { PROVIDERS } from '#shared/core/outcome.ts';
import { defineHandler } from '#shared/handler/middleware.ts';
import { REGISTRY } from '#shared/providers/index.ts';

/** Every provider's target fields, each validated as its item validates it. */
const TARGET_FIELDS = Object.fromEntries(
  REGISTRY.flatMap((p) => p.targetFields.map((f) => [f, z.optional(p.item.shape[f as keyof typeof p.item.shape])])),
);

/** The example a query without a target is answered with: a provider's own (its descriptor's `queryExample`). */
const EXAMPLE = REGISTRY.flatMap((p) => ('queryExample' in p ? [`provider=${p.name}&${p.queryExample}`] : []))[0];

needs('LEDGER_TABLE');

export const Query = z.strictObject({
  provider: z.optional(z.enum(PROVIDERS, { error: `must be one of ${PROVIDERS.join(', ')}` })),
  creditApplicationId: z.optional(Uuid),
  ...TARGET_FIELDS,
  limit: z.optional(
    z
      .pipe(z.string().check(z.regex(/^\d{1,3}$/, 'must be a number from 1 to 100')), z.transform(Number))
      .check(z.refine((n: number) => n >= 1 && n <= 100, 'must be a number from 1 to 100')),
  ),
  cursor: z.optional(
    z.string().check(z.regex(/^[A-Za-z0-9_-]{1,2048}$/, 'must be a cursor as a previous page returned it')),
  ),
});
type Query = z.infer<typeof Query>;

function toLedgerQuery(q: Query): LedgerQuery {
  const page = { ...(q.limit ? { limit: q.limit } : {}), ...(q.cursor ? { cursor: q.cursor } : {}) };
  if (q.creditApplicationId) return { creditApplicationId: q.creditApplicationId, ...page };
  if (!q.provider) {
    throw new InvalidInputError([
      {
        path: 'query',
        message: `give creditApplicationId, or provider with its target${EXAMPLE ? ` (e.g. ${EXAMPLE})` : ''}`,
      },
    ]);
  }
  const fields = REGISTRY.find((p) => p.name === q.provider)?.targetFields ?? [];
  const values = q as Record<string, unknown>;
  const missing = fields.filter((f) => values[f] === undefined);
  if (missing.length)
    throw new InvalidInputError(
      missing.map((f) => ({ path: `query.${f}`, message: `is required to find a ${q.provider} target` })),
    );
  const target = Object.fromEntries(fields.map((f) => [f, String(values[f])]));
  return { provider: q.provider, target: targetKey(target), ...page };
}

export const handler = defineHandler<
  LedgerQuery,
  Awaited<ReturnType<ReturnType<typeof defaultDeps>['ledger']['query']>>
>({
  name: 'cancellations',
  api: { schema: z.object({ query: Query }), toInput: (p: { query: Query }) => toLedgerQuery(p.query) },
  run: (query) => defaultDeps().ledger.query(query),
  reply: (page) => ({
    statusCode: 200,
    body: { cancellations: page.entries, ...(page.cursor ? { next: page.cursor } : {}) },
  }),
});
