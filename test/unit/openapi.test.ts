/**
 * The OpenAPI document: every route, generated from the handlers' schemas, lint-clean by Redocly's recommended rules,
 * and the published copy and the client types generated from it up to date.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { openApiDocument } from '#local/openapi.ts';
import { ROUTES } from '#shared/handler/routes.ts';
import { generateTypes } from '../../tools/openapi-typescript/generate.ts';

const run = promisify(execFile);
const ROOT = new URL('../../', import.meta.url).pathname;

type Doc = {
  info: { license?: { name: string } };
  servers: { url: string; variables?: Record<string, { default: string }> }[];
  paths: Record<
    string,
    Record<
      string,
      {
        operationId: string;
        parameters: { name: string; in: string }[];
        requestBody?: unknown;
        security?: Record<string, string[]>[];
      }
    >
  >;
  components: { securitySchemes: Record<string, Record<string, unknown>> };
};

/** Problems Redocly CLI finds with its recommended rules, as `severity rule at location: message`. */
async function redocly(doc: unknown): Promise<string[]> {
  const file = join(mkdtempSync(join(tmpdir(), 'openapi-')), 'openapi.json');
  writeFileSync(file, JSON.stringify(doc));
  const lint = await run(
    process.execPath,
    [
      join(ROOT, 'node_modules/@redocly/cli/bin/cli.js'),
      'lint',
      file,
      '--extends=recommended',
      '--format=json',
      '--max-problems=1000',
    ],
    { cwd: ROOT, env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' } },
  ).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }));
  const report = JSON.parse(lint.stdout) as {
    problems: { ruleId: string; severity: string; message: string; location: { pointer: string }[] }[];
  };
  return report.problems.map((p) => `${p.severity} ${p.ruleId} at ${p.location[0]?.pointer}: ${p.message}`);
}

describe('OpenAPI document', () => {
  const doc = openApiDocument() as Doc;

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

  it('declares IAM (SigV4) authorization on every operation, as API Gateway knows it', () => {
    expect(doc.components.securitySchemes).toEqual({
      sigv4: expect.objectContaining({
        type: 'apiKey',
        in: 'header',
        name: 'Authorization',
        'x-amazon-apigateway-authtype': 'awsSigv4',
      }),
    });
    for (const [path, methods] of Object.entries(doc.paths))
      for (const [method, operation] of Object.entries(methods))
        expect(operation.security, `${method} ${path}`).toEqual([{ sigv4: [] }]);
  });

  it('names the deployed stack and npm start as servers, declaring every variable their URLs use', () => {
    expect(doc.servers.map((s) => s.url)).toEqual([
      'https://{apiId}.execute-api.{region}.amazonaws.com',
      'http://127.0.0.1:{port}',
    ]);
    for (const server of doc.servers)
      expect(Object.keys(server.variables ?? {}).sort(), server.url).toEqual(
        [...server.url.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort(),
      );
    expect(doc.info.license?.name).toBe(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).license);
    const served = openApiDocument('http://127.0.0.1:4321') as Doc;
    expect(served.servers[1]).toMatchObject({ url: 'http://127.0.0.1:4321' });
    expect(served.servers[1]?.variables).toBeUndefined();
  });

  it("passes Redocly CLI's recommended rules with no error and no warning", async () => {
    expect(await redocly(doc)).toEqual([]);
  });

  it('the linter does find problems: an operation without security, an undeclared server variable', async () => {
    const broken = structuredClone(doc);
    delete broken.paths['/v1/batches']?.post?.security;
    broken.servers[0] = { url: 'https://{apiId}.execute-api.{region}.amazonaws.com' };
    const problems = await redocly(broken);
    expect(problems).toContainEqual(expect.stringMatching(/^error security-defined at #\/paths\/~1v1~1batches\/post/));
    expect(problems).toContainEqual(expect.stringMatching(/^error no-undefined-server-variable/));
  });

  it('docs/openapi.json is the generated document (npm run openapi writes it)', () => {
    const published = JSON.parse(readFileSync(new URL('../../docs/openapi.json', import.meta.url), 'utf8')) as unknown;
    expect(published).toEqual(doc);
  });

  it("the end-to-end tests' client types are openapi-typescript's output for the document (npm run openapi writes them)", async () => {
    const committed = readFileSync(new URL('../e2e/api.generated.ts', import.meta.url), 'utf8');
    expect(committed).toBe(await generateTypes(doc));
    expect(committed).toContain('"/v1/batches/{batchId}": {');
  });
});
