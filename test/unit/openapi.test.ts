/** The OpenAPI document: every route, generated from the handlers' schemas, and the published copy up to date. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { openApiDocument } from '../../local/openapi.ts';
import { ROUTES } from '../../shared/routes.ts';

type Doc = {
  paths: Record<
    string,
    Record<string, { operationId: string; parameters: { name: string; in: string }[]; requestBody?: unknown }>
  >;
};

describe('OpenAPI document', () => {
  const doc = openApiDocument('https://{api-id}.execute-api.{region}.amazonaws.com') as Doc;

  it('describes every route of the contract, once, with unique operation ids', () => {
    const operations = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`),
    );
    expect(operations.sort()).toEqual(ROUTES.map((r) => `${r.method} ${r.path}`).sort());
    const ids = Object.values(doc.paths).flatMap((methods) => Object.values(methods).map((o) => o.operationId));
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("takes parameters and bodies from the handlers' own schemas", () => {
    const mycreditapp = doc.paths['/v1/mycreditapp/organizations/{orgId}/document-requests/{requestId}/cancel']?.post;
    expect(mycreditapp?.parameters.map((p) => `${p.in}:${p.name}`)).toEqual([
      'path:orgId',
      'path:requestId',
      'header:idempotency-key',
      'header:requester-organization-id',
      'header:target-organization-id',
    ]);
    const truework = JSON.stringify(doc.paths['/v1/truework/orders/{orderId}/cancel']?.post?.requestBody);
    expect(truework).toContain('"enum":["immediate","high-turnaround-time","competitor","wrong-info","other"]');
  });

  it('docs/openapi.json is the generated document (npm run openapi writes it)', () => {
    const published = JSON.parse(readFileSync(new URL('../../docs/openapi.json', import.meta.url), 'utf8')) as unknown;
    expect(published).toEqual(doc);
  });
});
