/**
 * A local Lambda Invoke endpoint (`POST /2015-03-31/functions/{name}/invocations`) for the functions that invoke
 * others (expirations reads an application through the lookup function), answering as Lambda does: the payload,
 * or 200 with `X-Amz-Function-Error: Unhandled` and the error payload.
 */
import http from 'node:http';
import { TooManyRequestsError } from '#local/lambda/service.ts';
import { lambdaContext, lambdaErrorPayload } from '#local/lambda-events.ts';
import { listenOnLoopback, withBody } from '#local/listen.ts';
import type { LocalLambda } from '#local/state-machine.ts';

export async function startLocalLambda(
  functions: Record<string, LocalLambda>,
): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer(
    withBody(async (req, res, body) => {
      const match = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/.exec(
        new URL(req.url ?? '/', 'http://lambda').pathname,
      );
      const name =
        decodeURIComponent(match?.[1] ?? '')
          .split(':')
          .at(-1) ?? '';
      const handler = functions[name];
      if (!match || !handler) {
        res.writeHead(404, { 'content-type': 'application/json', 'x-amzn-errortype': 'ResourceNotFoundException' });
        return void res.end(JSON.stringify({ Type: 'User', message: `Function not found: ${name}` }));
      }
      try {
        const event = JSON.parse(body || 'null') as never;
        const result = await handler(event, lambdaContext(name));
        res.writeHead(200, { 'content-type': 'application/json', 'x-amz-executed-version': '$LATEST' });
        res.end(JSON.stringify(result ?? null));
      } catch (error) {
        if (error instanceof TooManyRequestsError) {
          // Throttled before it ran: Lambda's 429, which the SDK retries with backoff on its own.
          res.writeHead(429, { 'content-type': 'application/json', 'x-amzn-errortype': 'TooManyRequestsException' });
          return void res.end(JSON.stringify({ Type: 'User', message: 'Rate Exceeded.', Reason: error.reason }));
        }
        res.writeHead(200, {
          'content-type': 'application/json',
          'x-amz-function-error': 'Unhandled',
          'x-amz-executed-version': '$LATEST',
        });
        res.end(JSON.stringify(lambdaErrorPayload(error)));
      }
    }),
  );
  return listenOnLoopback(server);
}
