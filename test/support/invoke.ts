/** Invokes handlers the way AWS does: API Gateway v2 events and Step Functions task inputs, with real contexts. */
import type { Context } from 'aws-lambda';
import { apiGatewayV2Event, lambdaContext } from '#local/lambda-events.ts';

type Handler = (event: never, context: Context) => Promise<unknown>;

export interface ApiCall {
  method: string;
  route: string;
  path: string;
  pathParameters?: Record<string, string>;
  headers?: Record<string, string>;
  query?: Record<string, string>;
  body?: unknown;
  timeoutMs?: number;
  /** The IAM principal API Gateway verified (SigV4), as it puts it into the event's `authorizer.iam`. */
  principal?: string;
}

/** API Gateway's IAM authorizer context for a principal ARN (`arn:aws:iam::<account>:user/alice`). */
export function iamAuthorizer(principal: string) {
  const accountId = principal.split(':')[4] ?? '';
  return {
    iam: {
      accessKey: 'AKIAEXAMPLE',
      accountId,
      callerId: `AIDAEXAMPLE${principal.length}`,
      cognitoIdentity: null,
      principalOrgId: null,
      userArn: principal,
      userId: `AIDAEXAMPLE${principal.length}`,
    },
  };
}

export interface ApiResult {
  status: number;
  headers: Record<string, string>;
  body: Record<string, unknown> & { outcome?: string; message?: string; issues?: { path: string; message: string }[] };
}

export async function callApi(handler: Handler, call: ApiCall): Promise<ApiResult> {
  const event = apiGatewayV2Event({
    method: call.method,
    routeKey: `${call.method} ${call.route}`,
    path: call.path,
    ...(call.pathParameters ? { pathParameters: call.pathParameters } : {}),
    headers: { 'content-type': 'application/json', ...call.headers },
    ...(call.query ? { query: new URLSearchParams(call.query) } : {}),
    ...(call.body !== undefined ? { body: typeof call.body === 'string' ? call.body : JSON.stringify(call.body) } : {}),
  });
  if (call.principal)
    (event.requestContext as unknown as { authorizer: unknown }).authorizer = iamAuthorizer(call.principal);
  const res = (await handler(event as never, lambdaContext('test', call.timeoutMs ?? 30_000))) as {
    statusCode: number;
    headers?: Record<string, string>;
    body?: string;
  };
  return { status: res.statusCode, headers: res.headers ?? {}, body: res.body ? JSON.parse(res.body) : {} };
}

/** A task invocation: resolves with the result, or with the error Step Functions would see. */
export async function callTask(
  handler: Handler,
  input: unknown,
  timeoutMs = 30_000,
): Promise<{ result?: unknown; error?: Error & { issues?: unknown } }> {
  try {
    return { result: await handler(input as never, lambdaContext('test', timeoutMs)) };
  } catch (error) {
    return { error: error as Error };
  }
}
