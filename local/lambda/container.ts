/**
 * One Lambda container of the local twin: a worker thread with its own module state (the handler's secret cache,
 * token cache, pacer, connections, retry budgets), as a Lambda execution environment has. Its first import is the
 * cold start; later invocations reuse it warm. It runs one invocation at a time (local/lambda/service.ts sees to
 * that), with a context whose deadline counts down like Lambda's.
 */
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import type { Context } from 'aws-lambda';
import { lambdaContext, lambdaErrorPayload } from '#local/lambda-events.ts';

const { name, handler: file, nice } = workerData as { name: string; handler: string; nice?: number };
const port = parentPort;
if (!port) throw new Error('local/lambda/container.ts runs as a worker thread');
// This thread only (on Linux a thread has its own nice value): the benchmarks run the containers below the simulators.
if (nice) setPriority(nice);

// The INIT phase: an import that throws (a misconfiguration found at cold start, say) ends the container, as
// Lambda reports an init error on every invocation until the configuration is fixed.
const { handler } = (await import(file)) as { handler: (event: unknown, context: Context) => Promise<unknown> };

port.on('message', async ({ id, event, timeoutMs }: { id: number; event: unknown; timeoutMs: number }) => {
  try {
    const result = await handler(event, lambdaContext(name, timeoutMs));
    // Lambda serializes the result as JSON: undefined becomes null, Dates strings, functions vanish.
    port.postMessage({ id, result: JSON.stringify(result ?? null) });
  } catch (error) {
    port.postMessage({ id, error: lambdaErrorPayload(error) });
  }
});
port.postMessage({ ready: true });
