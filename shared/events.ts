/**
 * The events a handler receives: API Gateway HTTP API (payload format 2.0) events and Step Functions task
 * inputs (plain JSON), told apart by shape, and turned into one validated input.
 */
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type { InputIssue } from './errors.ts';

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
      try {
        body = JSON.parse(raw);
      } catch {
        issues.push({ path: 'body', message: 'is not valid JSON' });
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

/** The body of every 4xx the API gives for bad input: what is wrong, where, and how to fix it. */
export function invalidInputResponse(issues: InputIssue[], requestId: string): APIGatewayProxyStructuredResultV2 {
  return jsonResponse(400, {
    error: 'invalid_request',
    message: `The request is invalid: ${issues.map((i) => (i.path ? `${i.path} ${i.message}` : i.message)).join('; ')}`,
    issues,
    requestId,
  });
}
