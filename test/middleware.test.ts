import { afterEach, describe, expect, it } from 'vitest';
import * as z from 'zod/mini';
import { apiGatewayV2Event, lambdaContext } from '#local/lambda-events.ts';
import { ConfigurationError, type InvalidInputError } from '#shared/core/errors.ts';
import { TaskContext } from '#shared/core/items.ts';
import { defineHandler, type Invocation } from '#shared/handler/middleware.ts';
import { log, registerSecretValues, setLogSink } from '#shared/observability/log.ts';

const Body = z.strictObject({
  reason: z.enum(['a', 'b']),
  codes: z.array(z.string().check(z.minLength(2))).check(z.minLength(1)),
});

function echoHandler(run: (input: { id: string; codes: string[] }, invocation: Invocation) => Promise<unknown>) {
  return defineHandler({
    name: 'echo',
    api: {
      schema: z.object({ path: z.object({ id: z.guid('must be a uuid') }), body: Body }),
      toInput: (p: { path: { id: string }; body: { codes: string[] } }) => ({ id: p.path.id, codes: p.body.codes }),
    },
    task: {
      schema: z.strictObject({ id: z.string(), codes: z.array(z.string()), ...TaskContext }),
      toInput: (p: { id: string; codes: string[] }) => p,
    },
    run,
    reply: (result) => ({ statusCode: 200, body: result }),
  });
}

const ID = '3f2b8c1e-9a4d-4e2f-8b7a-1c2d3e4f5a6b';
const event = (body: string, id = ID) =>
  apiGatewayV2Event({
    method: 'POST',
    routeKey: 'POST /echo/{id}',
    path: `/echo/${id}`,
    pathParameters: { id },
    headers: { 'content-type': 'application/json' },
    body,
  });

let restore: ((line: string) => void) | undefined;
afterEach(() => {
  if (restore) setLogSink(restore);
  restore = undefined;
});
const captureLogs = () => {
  const lines: string[] = [];
  restore = setLogSink((line) => lines.push(line));
  return lines;
};

describe('handler pipeline', () => {
  it('answers 400 listing every problem with its path, and never runs the operation', async () => {
    let ran = false;
    const handler = echoHandler(async () => {
      ran = true;
    });
    const res = (await handler(
      event(JSON.stringify({ reason: 'z', codes: ['ok', 'x'], extra: 1 }), 'nope'),
      lambdaContext('echo'),
    )) as {
      statusCode: number;
      body: string;
    };
    expect(res.statusCode).toBe(400);
    const body = JSON.parse(res.body);
    expect(body.error).toBe('invalid_request');
    expect(body.issues).toEqual([
      { path: 'path.id', message: 'must be a uuid' },
      { path: 'body.reason', message: 'must be one of "a", "b"' },
      { path: 'body.codes[1]', message: 'must be at least 2 characters' },
      { path: 'body', message: 'unknown field(s) "extra": remove or correct them' },
    ]);
    expect(body.message).toContain('path.id must be a uuid');
    expect(ran).toBe(false);
  });

  it('answers 400 for a body that is not JSON', async () => {
    const res = (await echoHandler(async () => 1)(event('{nope'), lambdaContext('echo'))) as {
      statusCode: number;
      body: string;
    };
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body).issues).toEqual([{ path: 'body', message: 'is not valid JSON' }]);
  });

  it('raises a typed Input.Invalid error for a bad task input', async () => {
    captureLogs();
    const error = (await echoHandler(async () => 1)({ id: 5 }, lambdaContext('echo')).catch(
      (e) => e,
    )) as InvalidInputError;
    expect(error.name).toBe('Input.Invalid');
    expect(error.issues).toEqual([
      { path: 'id', message: 'must be a string' },
      { path: 'codes', message: 'is required' },
    ]);
  });

  it('gives 500 with the request id and no internals for an unexpected error', async () => {
    const logs = captureLogs();
    const handler = echoHandler(async () => {
      throw new Error('database password is hunter2-internal');
    });
    const ev = event(JSON.stringify({ reason: 'a', codes: ['ok'] }));
    const res = (await handler(ev, lambdaContext('echo'))) as { statusCode: number; body: string };
    expect(res.statusCode).toBe(500);
    expect(res.body).not.toContain('hunter2');
    expect(JSON.parse(res.body)).toMatchObject({ error: 'internal_error', requestId: ev.requestContext.requestId });
    // The log has the detail, tied to the same request id.
    const line = JSON.parse(logs.find((l) => l.includes('unexpected error'))!);
    expect(line.requestId).toBe(ev.requestContext.requestId);
    expect(line.error.message).toContain('hunter2');
  });

  it('gives 500 with an actionable message for a configuration error', async () => {
    captureLogs();
    const handler = echoHandler(async () => {
      throw new ConfigurationError('Secret "x" for auco was not found');
    });
    const res = (await handler(event(JSON.stringify({ reason: 'a', codes: ['ok'] })), lambdaContext('echo'))) as {
      statusCode: number;
      body: string;
    };
    expect(res.statusCode).toBe(500);
    expect(JSON.parse(res.body)).toMatchObject({
      error: 'configuration_error',
      message: 'Secret "x" for auco was not found',
    });
  });

  it('hands the operation a deadline and a signal that fire before the Lambda times out', async () => {
    let seen: Invocation | undefined;
    const handler = echoHandler(async (_input, invocation) => {
      seen = invocation;
      await new Promise((resolve) => invocation.signal.addEventListener('abort', resolve));
      return { abortedAfter: Date.now() };
    });
    // The context's clock starts when it is made: measure from then, not from before it.
    const context = lambdaContext('echo', 1_500);
    const started = Date.now();
    const result = (await handler({ id: 'a', codes: [] }, context)) as { abortedAfter: number };
    expect(seen?.source).toBe('task');
    // The deadline keeps a reserve before the Lambda's own (1.5 s here); the signal fires at it, not before.
    expect(seen!.deadline - started).toBeLessThanOrEqual(1_200);
    expect(result.abortedAfter).toBeGreaterThanOrEqual(seen!.deadline - 5);
    expect(seen!.signal.aborted).toBe(true);
  });

  it('stamps correlation ids on every log line and scrubs secret values', async () => {
    const logs = captureLogs();
    registerSecretValues(['tw_sk_test_supersecret123']);
    const handler = echoHandler(async () => {
      log.warn('calling provider', {
        headers: { Authorization: 'Bearer abc' },
        note: 'key tw_sk_test_supersecret123 used',
      });
      return 'ok';
    });
    await handler({ id: 'a', codes: [], executionId: 'exec-1', itemId: 'item-7' } as never, lambdaContext('echo'));
    const line = JSON.parse(logs.find((l) => l.includes('calling provider'))!);
    expect(line).toMatchObject({ executionId: 'exec-1', itemId: 'item-7', operation: 'echo' });
    expect(line.headers.Authorization).toBe('[REDACTED]');
    expect(line.note).toBe('key [REDACTED] used');
    expect(logs.join('\n')).not.toContain('supersecret');
  });

  it("adds Powertools Logger's Lambda context keys: cold start once per container, the request and the trace", async () => {
    const logs = captureLogs();
    const handler = echoHandler(async () => {
      log.warn('working');
      return 'ok';
    });
    const previous = process.env._X_AMZN_TRACE_ID;
    process.env._X_AMZN_TRACE_ID = 'Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1';
    try {
      const first = lambdaContext('echo');
      await handler({ id: 'a', codes: [] } as never, first);
      await handler({ id: 'b', codes: [] } as never, lambdaContext('echo'));
      const done = logs.filter((l) => l.includes('working')).map((l) => JSON.parse(l));
      expect(done[0]).toMatchObject({
        function_name: 'echo',
        function_arn: first.invokedFunctionArn,
        function_memory_size: 256,
        function_request_id: first.awsRequestId,
        xray_trace_id: '1-5759e988-bd862e3fe1be46a994272793',
      });
      expect(typeof done[0].cold_start).toBe('boolean');
      // The second invocation of the same module instance is warm, whatever the first was.
      expect(done[1].cold_start).toBe(false);
      expect(done[1].function_request_id).not.toBe(first.awsRequestId);
    } finally {
      if (previous === undefined) delete process.env._X_AMZN_TRACE_ID;
      else process.env._X_AMZN_TRACE_ID = previous;
    }
  });
});
