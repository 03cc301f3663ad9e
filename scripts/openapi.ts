/**
 * `npm run openapi`: writes docs/openapi.json, the OpenAPI 3.1 document generated from the handlers' schemas, and
 * test/e2e/api.generated.ts, the types openapi-typescript generates from it (the end-to-end tests' client).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { openApiDocument } from '#local/openapi.ts';
import { generateTypes } from '../tools/openapi-typescript/generate.ts';

const doc = openApiDocument();
const file = new URL('../docs/openapi.json', import.meta.url);
mkdirSync(new URL('../docs/', import.meta.url), { recursive: true });
writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
console.log(`wrote ${file.pathname}`);
const types = new URL('../test/e2e/api.generated.ts', import.meta.url);
writeFileSync(types, await generateTypes(doc));
console.log(`wrote ${types.pathname}`);
