/** `npm run openapi`: writes docs/openapi.json, the OpenAPI 3.1 document generated from the handlers' schemas. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { openApiDocument } from '../local/openapi.ts';

const file = new URL('../docs/openapi.json', import.meta.url);
mkdirSync(new URL('../docs/', import.meta.url), { recursive: true });
writeFileSync(
  file,
  `${JSON.stringify(openApiDocument(process.argv[2] ?? 'https://{api-id}.execute-api.{region}.amazonaws.com'), null, 2)}\n`,
);
console.log(`wrote ${file.pathname}`);
