/**
 * zod issues as short, value-free sentences a person can act on ("items[3].orderId is required").
 * zod/mini ships no locale (that keeps Lambda bundles small), so the wording lives here, once, for every
 * schema: API input, task input, batch input and secrets. No message quotes the value it rejects.
 */
import type * as z from 'zod/mini';
import type { InputIssue } from './errors.ts';

type Issue = z.core.$ZodIssue;
const GENERIC = 'Invalid input';
/** Unknown field names quoted in one message. */
const MAX_LISTED_KEYS = 10;
const article = (type: string) => (/^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`);

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let value = root;
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

function sizeLimit(issue: Issue & { origin?: string }, bound: 'at most' | 'at least', n: number | bigint): string {
  if (issue.origin === 'string')
    return bound === 'at least' && n === 1 ? 'must not be empty' : `must be ${bound} ${n} characters`;
  if (issue.origin === 'array' || issue.origin === 'set')
    return bound === 'at least' && n === 1 ? 'must not be empty' : `must hold ${bound} ${n} items`;
  return `must be ${bound} ${n}`;
}

function describe(issue: Issue, input: unknown): string {
  const absent =
    (issue.code === 'invalid_type' || issue.code === 'invalid_value' || issue.code === 'invalid_union') &&
    valueAt(input, issue.path) === undefined;
  if (absent && input !== undefined) return 'is required';
  if (issue.message && issue.message !== GENERIC) return issue.message;
  switch (issue.code) {
    case 'invalid_type':
      return `must be ${article(issue.expected)}${valueAt(input, issue.path) === null ? ' (got null)' : ''}`;
    case 'invalid_value':
      return issue.values.length === 1
        ? `must be ${JSON.stringify(issue.values[0])}`
        : `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'too_big':
      return sizeLimit(issue, 'at most', issue.maximum);
    case 'too_small':
      return sizeLimit(issue, 'at least', issue.minimum);
    case 'invalid_format':
      return `must be a valid ${issue.format}`;
    case 'unrecognized_keys': {
      // At most a few names, each cut short: the keys are the caller's, and there may be thousands.
      const names = issue.keys.slice(0, MAX_LISTED_KEYS).map((k) => `"${k.length > 64 ? `${k.slice(0, 64)}...` : k}"`);
      const more = issue.keys.length > MAX_LISTED_KEYS ? ` and ${issue.keys.length - MAX_LISTED_KEYS} more` : '';
      return `unknown field(s) ${names.join(', ')}${more}: remove or correct them`;
    }
    case 'invalid_union': {
      const options = (issue as { options?: unknown[] }).options;
      return options?.length
        ? `must be one of ${options.map((o) => JSON.stringify(o)).join(', ')}`
        : 'does not match any accepted shape';
    }
    case 'invalid_key':
    case 'invalid_element': {
      const inner = issue.issues[0];
      return inner
        ? describe(inner, undefined)
        : issue.code === 'invalid_key'
          ? 'has an invalid key'
          : 'has an invalid element';
    }
    default:
      return 'is invalid';
  }
}

/** Writes a path as a reader would: `items[3].orderId`. */
export function formatPath(path: readonly PropertyKey[], prefix = ''): string {
  let out = prefix;
  for (const key of path) out += typeof key === 'number' ? `[${key}]` : out ? `.${String(key)}` : String(key);
  return out;
}

/** Every issue of a failed parse of `input`, with its path and a readable message. */
export function toInputIssues(error: z.core.$ZodError, input: unknown, prefix = ''): InputIssue[] {
  return error.issues.map((issue) => ({ path: formatPath(issue.path, prefix), message: describe(issue, input) }));
}
