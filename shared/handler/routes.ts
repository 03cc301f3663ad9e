/**
 * The HTTP API (DESIGN.md 3.3, a contract): every route and the function folder that serves it. The CDK stack,
 * the local API and the OpenAPI document are all built from this table, so a route exists in all three or none.
 */
import { InvalidInputError } from '#shared/core/errors.ts';
import { REGISTRY } from '#shared/providers/index.ts';

export const FUNCTIONS = [
  'cancel-document-request',
  'get-credit-application',
  'cancel-signing-processes',
  'cancel-verification-order',
  'cancel-billing-request',
  'batches',
  'expirations',
  'cancellations',
] as const;
export type FunctionName = (typeof FUNCTIONS)[number];

export interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  /** API Gateway path template (`{name}` parameters). */
  path: string;
  function: FunctionName;
  summary: string;
}

export const ROUTES: readonly Route[] = [
  // Each provider's, in the registry's order (its descriptor's functions: shared/providers/<provider>/index.ts).
  ...REGISTRY.flatMap((p) => p.functions.map((f): Route => ({ ...f.route, function: f.fn, summary: f.description }))),
  { method: 'POST', path: '/v1/batches', function: 'batches', summary: 'Start a batch of cancellations' },
  {
    method: 'GET',
    path: '/v1/batches/{batchId}',
    function: 'batches',
    summary: 'Read a batch: status, summary and results',
  },
  {
    method: 'POST',
    path: '/v1/expirations',
    function: 'expirations',
    summary: 'Schedule the cancellations of a credit application at its expiry',
  },
  { method: 'GET', path: '/v1/expirations/{id}', function: 'expirations', summary: 'Read a scheduled expiration' },
  { method: 'DELETE', path: '/v1/expirations/{id}', function: 'expirations', summary: 'Delete a scheduled expiration' },
  {
    method: 'GET',
    path: '/v1/cancellations',
    function: 'cancellations',
    summary: 'Query the audit ledger of cancellations',
  },
];

/** Each template compiled once: its pattern and its parameters' names, in order. */
const compiled = new Map<string, { pattern: RegExp; names: string[] }>();
function compile(template: string): { pattern: RegExp; names: string[] } {
  let entry = compiled.get(template);
  if (!entry) {
    const names: string[] = [];
    const source = template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{(\w+)\}/g, (_m, name: string) => {
      names.push(name);
      return '([^/]+)';
    });
    entry = { pattern: new RegExp(`^${source}$`), names };
    compiled.set(template, entry);
  }
  return entry;
}

/** Matches a concrete path against a template; returns the path parameters (percent-decoded), or undefined. A
 * parameter that is not valid percent-encoding (`%zz`, a lone `%`) is the caller's mistake: InvalidInputError. */
export function matchPath(template: string, path: string): Record<string, string> | undefined {
  const { pattern, names } = compile(template);
  const match = pattern.exec(path);
  if (!match) return undefined;
  return Object.fromEntries(names.map((name, i) => [name, decodePathParameter(name, match[i + 1] ?? '')]));
}

function decodePathParameter(name: string, raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new InvalidInputError([
      {
        path: `path.${name}`,
        message:
          'is not valid percent-encoding (a % must start an escape of two hex digits, such as %2F): write a literal % as %25',
      },
    ]);
  }
}
