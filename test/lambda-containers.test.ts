/**
 * The local Lambda service behaves like Lambda where it matters here: each function runs in its own containers with
 * their own module state, created on demand and reused warm, at most its reserved concurrency at once; beyond that
 * an invocation is throttled, and the state machine runner retries the throttle as the definition says.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LocalApi } from '#local/api.ts';
import { LocalLambdaService, TooManyRequestsError } from '#local/lambda/service.ts';
import { MYCREDITAPP_DEMO } from '#local/simulators/mycreditapp.ts';
import { startTestSystem, type TestSystem } from '#test/support/system.ts';

const counter = (reserved: number | undefined, timeoutMs = 5_000) => ({
  name: 'counter',
  handler: fileURLToPath(new URL('./fixtures/lambda/counter.ts', import.meta.url)),
  ...(reserved !== undefined ? { reserved } : {}),
  timeoutMs,
  memoryMb: 128,
  env: { FIXTURE_VALUE: 'from the template' },
});

type Answer = {
  invocations: number;
  container: number;
  value: string | null;
  heapLimitMb: number;
  initStartedAt: number;
  initEndedAt: number;
};

describe('local Lambda service', () => {
  let service: LocalLambdaService;
  afterEach(() => service.stop());

  it('runs each container with its own module state, reuses it warm, and throttles beyond the reserved concurrency', async () => {
    service = new LocalLambdaService([counter(2)]);
    // Two at once: two containers (two cold starts), each counting from its own module state.
    const [a, b] = (await Promise.all([
      service.invoke('counter', { waitMs: 200 }),
      service.invoke('counter', { waitMs: 200 }),
    ])) as Answer[];
    expect(a?.container).not.toBe(b?.container);
    expect([a?.invocations, b?.invocations]).toEqual([1, 1]);
    expect(a?.value).toBe('from the template');
    // Then one at a time: a warm container, whose state carried over.
    const c = (await service.invoke('counter', {})) as Answer;
    expect([a?.container, b?.container]).toContain(c.container);
    expect(c.invocations).toBe(2);
    // A third at once, beyond the reservation of 2: throttled before it runs.
    const slow = [service.invoke('counter', { waitMs: 300 }), service.invoke('counter', { waitMs: 300 })];
    await expect(service.invoke('counter', {})).rejects.toBeInstanceOf(TooManyRequestsError);
    await Promise.all(slow);
    expect(service.stats('counter')).toMatchObject({ coldStarts: 2, throttles: 1, peakConcurrency: 2 });
  });

  it("gives a container the heap Lambda's Node.js runtime gives the function's memory, and counts its CPU", async () => {
    service = new LocalLambdaService([counter(1)]);
    const answer = (await service.invoke('counter', {})) as Answer;
    // Lambda's bootstrap for 128 MB: --max-semi-space-size=6 --max-old-space-size=116 (a tenth of the memory is new
    // space, half of it a semi-space; the rest old space). The same flags on this node give the same limit.
    const lambda = execFileSync(process.execPath, [
      '--max-semi-space-size=6',
      '--max-old-space-size=116',
      '-p',
      "require('node:v8').getHeapStatistics().heap_size_limit / 2 ** 20",
    ]);
    expect(answer.heapLimitMb).toBe(Number(String(lambda).trim()));
    const cpu = (await service.cpu()).counter;
    expect(cpu?.containers).toBe(1);
    expect(cpu?.initMs).toBeGreaterThan(0);
    expect(cpu?.perInvocationMs).toBeGreaterThanOrEqual(0);
  });

  it('a timeout ends the invocation and its container: the next one starts cold', async () => {
    service = new LocalLambdaService([counter(1, 300)]);
    await service.invoke('counter', {});
    await expect(service.invoke('counter', { waitMs: 2_000 })).rejects.toMatchObject({
      name: 'Lambda.Unknown',
      message: 'Task timed out after 0.30 seconds',
    });
    const after = (await service.invoke('counter', {})) as Answer;
    expect(after.invocations).toBe(1);
    expect(service.stats('counter').coldStarts).toBe(2);
  });

  it('deploy() builds every function before its first invocation, in one esbuild run, and the bundles run', async () => {
    service = new LocalLambdaService([
      { ...counter(1), name: 'first', env: { FIXTURE_VALUE: 'first' } },
      { ...counter(1), name: 'second', env: { FIXTURE_VALUE: 'second' } },
    ]);
    await service.deploy();
    const answers = (await Promise.all([service.invoke('first', {}), service.invoke('second', {})])) as Answer[];
    expect(answers.map((a) => [a.value, a.invocations])).toEqual([
      ['first', 1],
      ['second', 1],
    ]);
    expect(answers[0]?.container).not.toBe(answers[1]?.container);
  });

  it('cold starts beyond the cores take turns: each starts when one before it is ready, and none is throttled', async () => {
    service = new LocalLambdaService([{ ...counter(3), env: { FIXTURE_INIT_MS: '100' } }], { coldStartsAtOnce: 1 });
    const answers = (await Promise.all([1, 2, 3].map(() => service.invoke('counter', {})))) as Answer[];
    const inits = answers.map((a) => [a.initStartedAt, a.initEndedAt] as const).sort((a, b) => a[0] - b[0]);
    expect(new Set(answers.map((a) => a.container)).size).toBe(3);
    // One at a time: each import began after the one before it ended.
    expect(inits[1]?.[0]).toBeGreaterThanOrEqual(inits[0]?.[1] ?? Number.POSITIVE_INFINITY);
    expect(inits[2]?.[0]).toBeGreaterThanOrEqual(inits[1]?.[1] ?? Number.POSITIVE_INFINITY);
    expect(service.stats('counter')).toMatchObject({ coldStarts: 3, throttles: 0 });
  });

  it("a handler error is the invocation's error; the container stays warm", async () => {
    service = new LocalLambdaService([counter(1)]);
    await expect(service.invoke('counter', { crash: true })).rejects.toMatchObject({
      name: 'TypeError',
      message: 'a bug in the handler',
    });
    expect(((await service.invoke('counter', {})) as Answer).invocations).toBe(2);
  });
});

describe('the state machine retries a throttled task as its definition says', () => {
  let system: TestSystem;
  beforeAll(async () => {
    system = await startTestSystem({
      // 40 throttle retries 200 ms apart: 8 s, longer than a cold start on a busy machine.
      retryIntervalMs: 200,
      // One container for the GoCardless function, so a second execution's task is throttled while the first runs;
      // one for the lookup, so a guard holds it.
      reserved: { 'cancel-billing-request': 1, 'get-credit-application': 1 },
      env: { GOCARDLESS_RATE_PER_SECOND: '1000' },
    });
    // Every bundle built now, as a deployment does: a cold start does not wait for esbuild, so the API deployments'
    // first answers come well inside the time a batch holds its container below.
    await system.cloud.lambda.deploy();
  });
  afterAll(() => system.stop());

  it('two executions at once on one container: a throttle, retried, and both items cancelled once', async () => {
    system.gocardless.add('BRQ000THROTTLE1', 'pending');
    system.gocardless.add('BRQ000THROTTLE2', 'pending');
    // The first cancel takes a while at the provider, holding the only container.
    system.gocardless.inject({ fault: { kind: 'delay', ms: 150 }, times: 1, method: 'POST' });
    const start = (id: string, name: string) =>
      system.cloud.stepFunctions.start(
        JSON.stringify({ reason: 'declined', items: [{ provider: 'gocardless', billingRequestId: id }] }),
        name,
      );
    const executions = [start('BRQ000THROTTLE1', 'throttle-1'), start('BRQ000THROTTLE2', 'throttle-2')];
    await Promise.all(executions.map((e) => e.done));
    for (const e of executions) {
      expect(e.status).toBe('SUCCEEDED');
      expect(JSON.parse(e.output ?? '{}').results[0].outcome).toBe('canceled');
    }
    const stats = system.cloud.lambda.stats('cancel-billing-request');
    expect(stats.throttles).toBeGreaterThan(0);
    expect(stats.peakConcurrency).toBe(1);
    expect(Object.fromEntries(system.gocardless.effectiveCancels)).toEqual({ BRQ000THROTTLE1: 1, BRQ000THROTTLE2: 1 });
  });

  /**
   * Starts a batch (`input`) whose first task holds `fn`'s only batch container at a provider made slow for one
   * request (`sim`, `method`: a delay fault), waits until that request has reached the provider (so the API call
   * below cannot take the delay instead), checks that another invocation of `fn` is throttled, and runs `whileHeld`
   * against the local API meanwhile: it must be answered while the batch still holds the container. Returns the
   * finished execution.
   */
  const whileBatchHolds = async (
    fn: string,
    held: { sim: { received(method: string, path: RegExp): { served?: string }[] }; method: string },
    input: unknown,
    name: string,
    whileHeld: (apiUrl: string) => Promise<void>,
  ) => {
    const api = new LocalApi({ functions: system.cloud.functions, openapi: () => ({}) });
    await api.listen(0);
    try {
      const delayed = () => held.sim.received(held.method, /./).filter((r) => r.served === 'fault:delay').length;
      const before = delayed();
      const execution = system.cloud.stepFunctions.start(JSON.stringify(input), name);
      let batchDone = false;
      void execution.done.then(() => {
        batchDone = true;
      });
      while (delayed() === before) await new Promise((r) => setTimeout(r, 5));
      // Every container of the batch deployment is taken: another invocation of it is throttled.
      await expect(system.cloud.lambda.invoke(fn, {})).rejects.toBeInstanceOf(TooManyRequestsError);
      // The API caller gets its answer meanwhile, from the API deployment's own containers.
      await whileHeld(api.url);
      expect(batchDone, 'the batch still held the container when the API answered').toBe(false);
      await execution.done;
      return execution;
    } finally {
      await api.close();
    }
  };

  it("an API cancel is not throttled behind a batch that holds every container: the operation's API deployment serves it", async () => {
    system.gocardless.add('BRQ000HELDBATCH', 'pending');
    system.gocardless.add('BRQ000APICALLER', 'pending');
    // The batch's cancel holds the batch deployment's only container for 6 s at the provider.
    system.gocardless.inject({ fault: { kind: 'delay', ms: 6_000 }, times: 1, method: 'POST' });
    const execution = await whileBatchHolds(
      'cancel-billing-request',
      { sim: system.gocardless, method: 'POST' },
      { reason: 'declined', items: [{ provider: 'gocardless', billingRequestId: 'BRQ000HELDBATCH' }] },
      'held-by-batch',
      async (apiUrl) => {
        const answer = await fetch(`${apiUrl}/v1/gocardless/billing-requests/BRQ000APICALLER/cancel`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{}',
        });
        expect(answer.status).toBe(200);
        expect(((await answer.json()) as { outcome: string }).outcome).toBe('canceled');
      },
    );
    expect(JSON.parse(execution.output ?? '{}').results[0].outcome).toBe('canceled');
    expect(system.cloud.lambda.stats('cancel-billing-request-api')).toMatchObject({ invocations: 1, throttles: 0 });
  });

  it("an API read is not throttled behind a batch's guard that holds every lookup container", async () => {
    system.gocardless.add('BRQ000GUARDED01', 'pending');
    // The guard's read of its credit application holds the lookup's only batch container for 6 s.
    system.mycreditapp.inject({ fault: { kind: 'delay', ms: 6_000 }, times: 1, method: 'GET' });
    const execution = await whileBatchHolds(
      'get-credit-application',
      { sim: system.mycreditapp, method: 'GET' },
      {
        reason: 'declined',
        guard: { creditApplicationId: MYCREDITAPP_DEMO.declinedApplication },
        items: [{ provider: 'gocardless', billingRequestId: 'BRQ000GUARDED01' }],
      },
      'guard-holds-lookup',
      async (apiUrl) => {
        const answer = await fetch(
          `${apiUrl}/v1/mycreditapp/credit-applications/${MYCREDITAPP_DEMO.pendingApplication}`,
        );
        expect(answer.status).toBe(200);
        expect(((await answer.json()) as { status: string }).status).toBe('pending');
      },
    );
    expect(execution.status).toBe('SUCCEEDED');
    expect(system.cloud.lambda.stats('get-credit-application-api')).toMatchObject({ invocations: 1, throttles: 0 });
  });
});
