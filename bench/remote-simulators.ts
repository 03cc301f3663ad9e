/** Provider simulators in processes of their own (bench/simulator-process.ts), driven over IPC. */
import { type ChildProcess, fork } from 'node:child_process';

export class RemoteSimulator {
  readonly url: string;
  readonly origin: string;
  private readonly secret: Record<string, unknown>;
  private readonly child: ChildProcess;
  private pending: [string, unknown[]][] = [];
  private next = 0;
  private readonly waiting = new Map<number, (result: unknown) => void>();

  private constructor(
    child: ChildProcess,
    ready: { url: string; origin: string; demoSecret: Record<string, unknown> },
  ) {
    this.child = child;
    this.url = ready.url;
    this.origin = ready.origin;
    this.secret = ready.demoSecret;
    child.on('message', (m: { id?: number; result?: unknown }) => {
      if (m.id === undefined) return;
      this.waiting.get(m.id)?.(m.result);
      this.waiting.delete(m.id);
    });
  }

  static async start(provider: string, options: Record<string, unknown>): Promise<RemoteSimulator> {
    const child = fork(new URL('./simulator-process.ts', import.meta.url), [provider, JSON.stringify(options)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // Room in the old generation for everything a storm records (about 15 MB), so no full collection pauses the
      // simulator mid-run: a provider's edge does not stop for ours. Traced (--trace-gc, the Truework simulator, 10x
      // storm): by default a Mark-Compact of 13.3 ms and one of 5.8 ms in three runs, each past the 5.3 ms of pacing
      // slack, so the arrivals it held back were stamped together; with this, none in three runs, and no pause over
      // 3.1 ms while requests arrive.
      execArgv: [...process.execArgv, '--initial-old-space-size=64'],
    });
    const ready = await new Promise<{ url: string; origin: string; demoSecret: Record<string, unknown> }>(
      (resolve, reject) => {
        child.once('message', (m: { ready: { url: string; origin: string; demoSecret: Record<string, unknown> } }) =>
          resolve(m.ready),
        );
        child.once('exit', (code) => reject(new Error(`the ${provider} simulator exited (${code})`)));
      },
    );
    return new RemoteSimulator(child, ready);
  }

  demoSecret(): Record<string, unknown> {
    return this.secret;
  }

  /** Queues a call of the simulator's own method (sent with the next flush, in order). */
  call(method: string, ...args: unknown[]): void {
    this.pending.push([method, args]);
  }
  add(...args: unknown[]): void {
    this.call('add', ...args);
  }
  addDocumentRequest(...args: unknown[]): void {
    this.call('addDocumentRequest', ...args);
  }
  addCreditApplication(...args: unknown[]): void {
    this.call('addCreditApplication', ...args);
  }

  private ask(op: string, extra: Record<string, unknown> = {}): Promise<unknown> {
    const id = ++this.next;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.child.send({ id, op, ...extra });
    });
  }

  async flush(): Promise<void> {
    const calls = this.pending;
    this.pending = [];
    if (calls.length) await this.ask('calls', { calls });
  }
  async requests(): Promise<{ at: number; status?: number; method: string; path: string }[]> {
    await this.flush();
    return (await this.ask('requests')) as { at: number; status?: number; method: string; path: string }[];
  }
  async clearRequests(): Promise<void> {
    await this.ask('clear');
  }
  async effectiveCancels(): Promise<Record<string, number>> {
    return (await this.ask('cancels')) as Record<string, number>;
  }
  async stop(): Promise<void> {
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill();
    await exited;
  }
}
