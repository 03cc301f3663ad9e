/**
 * The local Lambda service: every function runs in its own containers (worker threads, local/lambda/container.ts),
 * each with its own module state, created on demand (a cold start) and reused warm, at most one invocation at a
 * time per container, and at most the function's reserved concurrency at once. An invocation beyond it is
 * throttled before it runs, as Lambda throttles it (TooManyRequestsException): the state machine retries it as its
 * definition says, the local Lambda endpoint answers 429, the local API answers as API Gateway does.
 *
 * What each function is comes from the synthesized template (local/functions.ts): its handler, reserved
 * concurrency, timeout, memory (the worker's heap limit) and environment, so a container runs with the settings
 * the stack deploys, not with kinder ones. And a container runs the function's bundle, built as the stack builds it
 * (BUNDLE): the deployed code, and a cold start as long as Lambda's, not the seconds of loading the sources.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { build } from 'esbuild';
import { BUNDLE, bundleBuildOptions } from '#infra/provider-function.ts';

export interface FunctionSpec {
  name: string;
  /** Absolute path of the handler module (`functions/<name>/handler.ts`). */
  handler: string;
  /** Reserved concurrency; undefined draws on the unreserved pool. */
  reserved?: number;
  timeoutMs: number;
  memoryMb: number;
  /** The function's own environment (the template's plain values). */
  env: Record<string, string>;
  /** Variables the template gives it that refer to other resources (LEDGER_TABLE, SECRET_ID...). */
  references?: string[];
}

export interface LocalLambdaOptions {
  /** Concurrent invocations of all unreserved functions together (the account's unreserved pool). */
  unreservedConcurrency?: number;
  /** Set in every container after the function's own environment (test overrides). */
  env?: Record<string, string>;
  /** A nice value each container's thread lowers itself to before its cold start (benchmarks: the provider
   * simulators stand for machines elsewhere, and a container must not delay when a request reaches them). */
  nice?: number;
  /** The local values of resource references (LEDGER_TABLE...): a container gets one only where the template names
   * it, as in AWS, so a function the stack forgot to configure fails here too. */
  resources?: Record<string, string>;
  /** What a function the template gives a secret (SECRET_ID) reads instead: the local secrets file. */
  secretsFile?: string;
  /** Containers that start cold at once (default: half this machine's cores, at least one); more wait their turn. */
  coldStartsAtOnce?: number;
}

/** A throttled invocation: the function is at its reserved concurrency (or the account at its limit). */
export class TooManyRequestsError extends Error {
  override readonly name = 'Lambda.TooManyRequestsException';
  readonly reason: 'ReservedFunctionConcurrentInvocationLimitExceeded' | 'ConcurrentInvocationLimitExceeded';
  constructor(fn: string, reason: TooManyRequestsError['reason']) {
    // Without a stack: Lambda reports none for its own errors, and a storm throws tens of thousands of these.
    // Capturing each one's stack was the runner's costliest function in a profiled storm (1.9 of 51 CPU seconds).
    const depth = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(`Rate Exceeded. (${fn}: ${reason})`);
    Error.stackTraceLimit = depth;
    this.reason = reason;
  }
}

/** What Lambda reports for an invocation that did not end with the handler's answer. */
export class LambdaInvocationError extends Error {
  constructor(name: string, message: string) {
    super(message);
    this.name = name;
  }
}

export interface FunctionStats {
  invocations: number;
  coldStarts: number;
  throttles: number;
  /** The most invocations in flight at once. */
  peakConcurrency: number;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

/**
 * The V8 heap Lambda's Node.js runtime gives a function of `memoryMb`: its bootstrap starts node with
 * `--max-semi-space-size` of a twentieth of the memory and `--max-old-space-size` of the rest after a tenth (the
 * runtime interface emulator's Node.js bootstrap: new space = memory / 10, semi space = new space / 2, old space =
 * memory - new space). V8's young generation is three semi-spaces (two, and the new large-object space).
 */
function lambdaHeap(memoryMb: number): { maxOldGenerationSizeMb: number; maxYoungGenerationSizeMb: number } {
  const newSpace = Math.floor(memoryMb / 10);
  return { maxOldGenerationSizeMb: memoryMb - newSpace, maxYoungGenerationSizeMb: 3 * Math.floor(newSpace / 2) };
}

/** CPU a function's containers spent (every thread of each worker's own), in milliseconds. */
export interface FunctionCpu {
  containers: number;
  /** Cold starts: each container's CPU until its handler module was imported. */
  initMs: number;
  /** Everything since, over the function's invocations. */
  perInvocationMs: number;
  /** All their CPU, cold starts included. */
  totalMs: number;
}

class Container {
  readonly worker: Worker;
  readonly ready: Promise<void>;
  busy = false;
  dead = false;
  /** CPU microseconds the container spent on its cold start. */
  initCpu = 0;
  private readonly pending = new Map<number, Pending>();
  private next = 0;

  constructor(
    spec: FunctionSpec,
    entry: string,
    env: Record<string, string>,
    nice: number | undefined,
    onDeath: (c: Container) => void,
  ) {
    this.worker = new Worker(entry, {
      workerData: { name: spec.name, handler: spec.handler, nice },
      env,
      resourceLimits: lambdaHeap(spec.memoryMb),
    });
    this.worker.unref();
    let markReady: () => void = () => {};
    let failInit: (error: Error) => void = () => {};
    this.ready = new Promise<void>((resolve, reject) => {
      markReady = resolve;
      failInit = reject;
    });
    this.ready.catch(() => {});
    this.worker.on(
      'message',
      (message: { ready?: true; id?: number; result?: string; error?: Record<string, unknown> }) => {
        if (message.ready) {
          this.worker.cpuUsage().then(
            (u) => {
              this.initCpu = u.user + u.system;
            },
            () => {},
          );
          return markReady();
        }
        const pending = message.id === undefined ? undefined : this.pending.get(message.id);
        if (!pending || message.id === undefined) return;
        this.pending.delete(message.id);
        if (message.error) {
          const payload = message.error as { errorType?: string; errorMessage?: string };
          pending.reject(
            Object.assign(new LambdaInvocationError(payload.errorType ?? 'Error', payload.errorMessage ?? ''), {
              payload: message.error,
            }),
          );
        } else pending.resolve(JSON.parse(message.result ?? 'null'));
      },
    );
    const die = (error: Error) => {
      if (this.dead) return;
      this.dead = true;
      failInit(error);
      for (const p of this.pending.values()) p.reject(error);
      this.pending.clear();
      onDeath(this);
    };
    // An exception at import (INIT), or one that escapes the handler (an unhandled rejection), ends the container.
    this.worker.on('error', (error) =>
      die(new LambdaInvocationError(error.name === 'Error' ? 'Runtime.ExitError' : error.name, error.message)),
    );
    this.worker.on('exit', (code) =>
      die(new LambdaInvocationError('Runtime.ExitError', `the container exited (code ${code}) before answering`)),
    );
  }

  invoke(event: unknown, timeoutMs: number): Promise<unknown> {
    const id = ++this.next;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, event, timeoutMs });
    });
  }

  terminate(): Promise<number> {
    this.dead = true;
    return this.worker.terminate();
  }
}

export class LocalLambdaService {
  private readonly specs: Map<string, FunctionSpec>;
  private readonly containers = new Map<string, Container[]>();
  private readonly inFlight = new Map<string, number>();
  private readonly counters = new Map<string, FunctionStats>();
  private unreservedInFlight = 0;
  private readonly options: LocalLambdaOptions;
  private readonly bundles = new Map<string, Promise<string>>();
  private bundleDir: string | undefined;
  private entry: Promise<string> | undefined;
  private coldStarting = 0;
  private readonly coldStartQueue: (() => void)[] = [];

  constructor(specs: FunctionSpec[], options: LocalLambdaOptions = {}) {
    this.specs = new Map(specs.map((s) => [s.name, s]));
    this.options = options;
  }

  get functionNames(): string[] {
    return [...this.specs.keys()];
  }

  stats(name: string): FunctionStats {
    let s = this.counters.get(name);
    if (!s) {
      s = { invocations: 0, coldStarts: 0, throttles: 0, peakConcurrency: 0 };
      this.counters.set(name, s);
    }
    return s;
  }

  /** Invokes a function synchronously (RequestResponse): its result, or an error named as Lambda names it. */
  async invoke(name: string, event: unknown, timeoutMs?: number): Promise<unknown> {
    const spec = this.specs.get(name);
    if (!spec) throw new LambdaInvocationError('Lambda.ResourceNotFoundException', `Function not found: ${name}`);
    const stats = this.stats(name);
    const running = this.inFlight.get(name) ?? 0;
    const unreservedLimit = this.options.unreservedConcurrency ?? 16;
    if (spec.reserved !== undefined ? running >= spec.reserved : this.unreservedInFlight >= unreservedLimit) {
      stats.throttles++;
      throw new TooManyRequestsError(
        name,
        spec.reserved !== undefined
          ? 'ReservedFunctionConcurrentInvocationLimitExceeded'
          : 'ConcurrentInvocationLimitExceeded',
      );
    }
    this.inFlight.set(name, running + 1);
    if (spec.reserved === undefined) this.unreservedInFlight++;
    stats.invocations++;
    stats.peakConcurrency = Math.max(stats.peakConcurrency, running + 1);
    try {
      const container = await this.take(spec, stats);
      try {
        await container.ready;
        return await this.withTimeout(container, event, Math.min(timeoutMs ?? spec.timeoutMs, spec.timeoutMs));
      } finally {
        container.busy = false;
      }
    } finally {
      this.inFlight.set(name, (this.inFlight.get(name) ?? 1) - 1);
      if (spec.reserved === undefined) this.unreservedInFlight--;
    }
  }

  /**
   * Builds every function's bundle now, as a deployment does before the first invocation (`cdk deploy` uploads
   * them): without it, each is built on its function's first cold start, and that cold start waits for esbuild too.
   * Starts no container: cold starts still come on demand.
   */
  async deploy(): Promise<void> {
    const pending = [...this.specs.values()].filter((spec) => !this.bundles.has(spec.name));
    // One esbuild run for them all: each file is parsed once, and each entry's output is the same as a build of
    // its own (no code splitting). About a third of the time of ten builds.
    const built = pending.length
      ? build({
          ...bundleBuildOptions(),
          logLevel: 'silent',
          entryPoints: Object.fromEntries(pending.map((spec) => [spec.name, spec.handler])),
          outdir: this.directory(),
          outExtension: { '.js': '.mjs' },
        })
      : Promise.resolve();
    for (const spec of pending)
      this.bundles.set(
        spec.name,
        built.then(() => join(this.directory(), `${spec.name}.mjs`)),
      );
    // Awaited as stored, so a failed build rejects here once, not again unhandled from each function's promise.
    await Promise.all([this.containerEntry(), ...pending.map((spec) => this.bundles.get(spec.name))]);
  }

  /** The container's own code (local/lambda/container.ts) as JavaScript, built once: a worker would otherwise strip
   * its types anew at every cold start (tens of milliseconds of CPU each, which Lambda's runtime does not spend). */
  private containerEntry(): Promise<string> {
    this.entry ??= build({
      entryPoints: [fileURLToPath(new URL('./container.ts', import.meta.url))],
      outfile: join(this.directory(), '_container.mjs'),
      bundle: true,
      packages: 'external',
      platform: 'node',
      format: 'esm',
      target: BUNDLE.target,
      logLevel: 'silent',
    }).then(() => join(this.directory(), '_container.mjs'));
    return this.entry;
  }

  private directory(): string {
    this.bundleDir ??= mkdtempSync(join(tmpdir(), 'local-lambda-'));
    return this.bundleDir;
  }

  /** The function's bundle, built once as the stack builds it. */
  private bundle(spec: FunctionSpec): Promise<string> {
    let file = this.bundles.get(spec.name);
    if (!file) {
      this.directory();
      const outfile = join(this.directory(), `${spec.name}.mjs`);
      file = build({ ...bundleBuildOptions(), logLevel: 'silent', entryPoints: [spec.handler], outfile }).then(
        () => outfile,
      );
      this.bundles.set(spec.name, file);
    }
    return file;
  }

  /** An idle warm container of the function, else a new one (a cold start). */
  private async take(spec: FunctionSpec, stats: FunctionStats): Promise<Container> {
    const list = this.containers.get(spec.name) ?? [];
    this.containers.set(spec.name, list);
    const warm = list.find((c) => !c.busy && !c.dead);
    if (warm) {
      warm.busy = true;
      return warm;
    }
    stats.coldStarts++;
    const [handler, entry] = await Promise.all([this.bundle(spec), this.containerEntry()]);
    const env = { ...(process.env as Record<string, string>) };
    const resources = this.options.resources ?? {};
    for (const name of Object.keys(resources)) delete env[name];
    delete env.SECRET_ID;
    delete env.SECRETS_FILE;
    for (const name of spec.references ?? []) {
      const value = resources[name];
      if (value !== undefined) env[name] = value;
    }
    if (spec.references?.includes('SECRET_ID') && this.options.secretsFile) env.SECRETS_FILE = this.options.secretsFile;
    Object.assign(env, spec.env, this.options.env, {
      AWS_LAMBDA_FUNCTION_NAME: spec.name,
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(spec.memoryMb),
    });
    const done = await this.coldStartTurn();
    const container = new Container({ ...spec, handler }, entry, env, this.options.nice, (dead) => {
      const at = list.indexOf(dead);
      if (at >= 0) list.splice(at, 1);
    });
    // Its turn ends when it is ready or failed, or after Lambda's own 10 s limit on INIT: a container stuck in its
    // import holds up no other cold start.
    container.ready.then(done, done);
    setTimeout(done, 10_000).unref();
    container.busy = true;
    list.push(container);
    return container;
  }

  /**
   * A turn to start a container cold. In AWS each cold start has the CPU of its own execution environment, and takes
   * none from the containers already warm; here they share this machine's cores, and 27 at once (a batch's first
   * second) would each take the whole burst's time before any could send. So they start in turn, on at most half the
   * cores (one on two), and the other half stays with the warm containers, the runner and the simulators: every
   * cold start still costs its own CPU, and none is faster than it would be alone. On two cores, one at a time
   * against two (alternating, 2026-12-02): throughput 1.364 and 1.371 against 1.415 and 1.439 at 10x, the storm 1.527
   * and 1.511 against 1.587 and 1.540 (README, Performance). Returns what ends the turn.
   */
  private async coldStartTurn(): Promise<() => void> {
    const atOnce = this.options.coldStartsAtOnce ?? Math.max(1, Math.floor(availableParallelism() / 2));
    if (this.coldStarting < atOnce) this.coldStarting++;
    else await new Promise<void>((resolve) => this.coldStartQueue.push(resolve));
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const next = this.coldStartQueue.shift();
      if (next) next();
      else this.coldStarting--;
    };
  }

  /** Lambda ends an invocation that outlives the function's timeout, and with it the container's state. */
  private async withTimeout(container: Container, event: unknown, timeoutMs: number) {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        void container.terminate();
        reject(
          new LambdaInvocationError('Lambda.Unknown', `Task timed out after ${(timeoutMs / 1000).toFixed(2)} seconds`),
        );
      }, timeoutMs + 100);
    });
    try {
      return await Promise.race([container.invoke(event, timeoutMs), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** What each function's live containers spent on CPU so far (benchmarks: the twin's own cost). */
  async cpu(): Promise<Record<string, FunctionCpu>> {
    const out: Record<string, FunctionCpu> = {};
    for (const [name, list] of this.containers) {
      let init = 0;
      let total = 0;
      for (const c of list) {
        const u = await c.worker.cpuUsage().catch(() => ({ user: 0, system: 0 }));
        total += u.user + u.system;
        init += c.initCpu;
      }
      const invocations = Math.max(1, this.stats(name).invocations);
      out[name] = {
        containers: list.length,
        initMs: Math.round(init / 1000),
        perInvocationMs: Math.round((total - init) / invocations) / 1000,
        totalMs: Math.round(total) / 1000,
      };
    }
    return out;
  }

  /** Ends every container: the next invocation of each function is a cold start. */
  async reset(): Promise<void> {
    const all = [...this.containers.values()].flat();
    this.containers.clear();
    this.counters.clear();
    await Promise.all(all.map((c) => c.terminate()));
  }

  async stop(): Promise<void> {
    await this.reset();
    if (this.bundleDir) rmSync(this.bundleDir, { recursive: true, force: true });
  }
}
