/**
 * Real API Gateway HTTP API (payload format 2.0) events and Lambda contexts, built the way the AWS services
 * build them, so the local API, the local state-machine runner and the tests invoke handlers exactly as AWS does.
 */
import { randomUUID } from 'node:crypto';
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';

export interface ApiEventInput {
  method: string;
  /** The route as API Gateway declares it: `POST /v1/truework/orders/{orderId}/cancel`. */
  routeKey: string;
  path: string;
  pathParameters?: Record<string, string>;
  headers?: Record<string, string>;
  query?: URLSearchParams;
  body?: string;
  sourceIp?: string;
  /** The verified IAM principal, as API Gateway passes it for an IAM-authorized route. */
  authorizer?: { iam: object };
}

export function apiGatewayV2Event(input: ApiEventInput): APIGatewayProxyEventV2 {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(input.headers ?? {})) headers[k.toLowerCase()] = v;
  const query = input.query ?? new URLSearchParams();
  const queryStringParameters: Record<string, string> = {};
  for (const [k, v] of query)
    queryStringParameters[k] = queryStringParameters[k] ? `${queryStringParameters[k]},${v}` : v;
  const now = new Date();
  const requestId = randomUUID();
  return {
    version: '2.0',
    routeKey: input.routeKey,
    rawPath: input.path,
    rawQueryString: query.toString(),
    headers,
    ...(query.size ? { queryStringParameters } : {}),
    ...(input.pathParameters && Object.keys(input.pathParameters).length
      ? { pathParameters: input.pathParameters }
      : {}),
    requestContext: {
      accountId: LOCAL_ACCOUNT,
      apiId: 'local',
      domainName: headers.host ?? 'localhost',
      domainPrefix: 'localhost',
      http: {
        method: input.method,
        path: input.path,
        protocol: 'HTTP/1.1',
        sourceIp: input.sourceIp ?? '127.0.0.1',
        userAgent: headers['user-agent'] ?? '',
      },
      requestId,
      routeKey: input.routeKey,
      stage: '$default',
      time: now.toUTCString(),
      timeEpoch: now.getTime(),
      ...(input.authorizer ? { authorizer: input.authorizer } : {}),
    },
    ...(input.body !== undefined && input.body !== '' ? { body: input.body } : {}),
    isBase64Encoded: false,
  };
}

/** The account and region everything local pretends to run in. */
export const LOCAL_REGION = 'eu-west-1';
export const LOCAL_ACCOUNT = '111111111111';

/** The ARN a local function is invoked by: its operation name (the function's folder). */
export function localFunctionArn(name: string): string {
  return `arn:aws:lambda:${LOCAL_REGION}:${LOCAL_ACCOUNT}:function:${name}`;
}

export type LambdaErrorPayload = { errorType: string; errorMessage: string; trace: string[] };

/**
 * A function error as Lambda's Node.js runtime reports it, the payload Step Functions shows as the error's Cause: its
 * name, its message and its stack line by line (`trace`), as the runtime's toRapidResponse makes it
 * (aws-lambda-nodejs-runtime-interface-client, Errors.js), so a Cause here is as large as in AWS. Errors of the
 * service and the runtime themselves (a throttle, a timeout: `Lambda.*`, `Runtime.*`, `Sandbox.*`) carry no stack of
 * the function's. A payload a container already made is passed on as it came.
 */
export function lambdaErrorPayload(error: unknown): LambdaErrorPayload {
  const e = error as Partial<Error> & { payload?: LambdaErrorPayload };
  if (e.payload) return e.payload;
  const errorType = e.name ?? 'Error';
  const own = !/^(Lambda|Runtime|Sandbox)\./.test(errorType);
  return {
    errorType,
    errorMessage: e.message ?? String(error),
    trace: own && typeof e.stack === 'string' ? e.stack.split('\n') : [],
  };
}

/** A Lambda context with a real deadline: `getRemainingTimeInMillis` counts down from `timeoutMs`. */
export function lambdaContext(functionName: string, timeoutMs = 30_000): Context {
  const deadline = Date.now() + timeoutMs;
  const awsRequestId = randomUUID();
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: localFunctionArn(functionName),
    memoryLimitInMB: '256',
    awsRequestId,
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: `local/${awsRequestId}`,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}
