/**
 * The events a handler receives: API Gateway HTTP API (payload format 2.0) events and Step Functions task
 * inputs (plain JSON), told apart by shape, and turned into one validated input.
 */
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { describeIssues, type InputIssue, listedIssues } from '#shared/core/errors.ts';

/** How deep a JSON body may nest: no route needs more than a few levels, and a deeper one only costs stack. */
export const MAX_BODY_DEPTH = 32;
/** How many values a JSON body may hold: a 10,000-item batch, the largest request, holds well under this. */
export const MAX_BODY_VALUES = 200_000;

/**
 * Why a JSON text is beyond the bounds, or undefined; counted before anything parses or validates it, so a body of
 * millions of values or thousands of levels costs one pass over its characters. Values are counted by their
 * separators (a bound, not an exact count).
 */
export function jsonBoundsProblem(raw: string): string | undefined {
  let depth = 0;
  let values = 1;
  let inString = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > MAX_BODY_DEPTH)
        return `is nested more than ${MAX_BODY_DEPTH} levels deep; no request of this API needs more than a few`;
    } else if (c === 0x7d || c === 0x5d) depth--;
    else if (c === 0x2c && ++values > MAX_BODY_VALUES)
      return `holds more than ${MAX_BODY_VALUES} values; the largest request, a batch of 10,000 items, holds far fewer: split it`;
  }
  return undefined;
}

export function isApiEvent(event: unknown): event is APIGatewayProxyEventV2 {
  const e = event as Partial<APIGatewayProxyEventV2> | null;
  return (
    typeof e === 'object' && e !== null && e.version === '2.0' && typeof e.requestContext?.http?.method === 'string'
  );
}

/** The parts of an HTTP API request a route validates. Header names are lower-case; the body is parsed JSON. */
export interface ApiRequest {
  method: string;
  path: Record<string, string>;
  headers: Record<string, string>;
  query: Record<string, string>;
  body: unknown;
}

/** Splits an API event into its parts; a body that is not JSON is an issue, not an exception. */
export function apiRequest(event: APIGatewayProxyEventV2): { request: ApiRequest; issues: InputIssue[] } {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(event.headers ?? {})) if (v !== undefined) headers[k.toLowerCase()] = v;
  const issues: InputIssue[] = [];
  let body: unknown;
  if (event.body !== undefined && event.body !== null && event.body !== '') {
    const raw = event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
    const type = headers['content-type'];
    if (type && !/^application\/(.+\+)?json\b/i.test(type)) {
      issues.push({ path: 'body', message: `must be JSON (Content-Type: application/json), not ${type}` });
    } else {
      const problem = jsonBoundsProblem(raw);
      if (problem) issues.push({ path: 'body', message: problem });
      else {
        try {
          body = JSON.parse(raw);
        } catch {
          issues.push({ path: 'body', message: 'is not valid JSON' });
        }
      }
    }
  }
  const path: Record<string, string> = {};
  for (const [k, v] of Object.entries(event.pathParameters ?? {})) if (v !== undefined) path[k] = v;
  const query: Record<string, string> = {};
  for (const [k, v] of Object.entries(event.queryStringParameters ?? {})) if (v !== undefined) query[k] = v;
  return { request: { method: event.requestContext.http.method, path, headers, query, body }, issues };
}

export function jsonResponse(
  statusCode: number,
  body: unknown,
  headers: Record<string, string> = {},
): APIGatewayProxyStructuredResultV2 {
  return { statusCode, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) };
}

/** The body of every 4xx the API gives for bad input: what is wrong, where, and how to fix it. At most
 * MAX_LISTED_ISSUES problems are listed; `issueCount` says how many there are in all. */
export function invalidInputResponse(
  all: InputIssue[],
  requestId: string,
  count = all.length,
): APIGatewayProxyStructuredResultV2 {
  const { issues, count: issueCount } = listedIssues(all, count);
  return jsonResponse(400, {
    error: 'invalid_request',
    message: `The request is invalid: ${describeIssues(issues, issueCount)}`,
    issues,
    issueCount,
    requestId,
  });
}
