/**
 * Runs the synthesized batch definition locally with aws-local-stepfunctions, its Lambda tasks bound to the same
 * handlers the Lambdas run, invoked the way Lambda invokes them (a JSON round trip, a real context with a
 * deadline, and failures shaped as Step Functions reports a Lambda error: `Error` = the error's name, `Cause` =
 * `{"errorType","errorMessage","trace"}`).
 *
 * aws-local-stepfunctions runs a Distributed Map as an inline Map and cannot read from S3 (TOOLING.md 3), so each
 * Distributed Map state is replaced, mechanically, by a task that does what the service does: read the JSONL
 * items from (local) S3, batch them (ItemBatcher), run the state's own ItemProcessor as child executions under
 * its MaxConcurrency, honour ToleratedFailurePercentage, and write the ResultWriter's manifest and result files.
 * The child definition is the synthesized one, unchanged.
 */
import { randomUUID } from 'node:crypto';
import type { Context } from 'aws-lambda';
import { type RunOptions, StateMachine, type StateMachineDefinition } from 'aws-local-stepfunctions';
import type { LocalS3 } from '#local/aws/s3.ts';
import { lambdaContext, lambdaErrorPayload } from './lambda-events.ts';

/** A failed run as Step Functions reports it: aws-local-stepfunctions puts the state's error on `cause`. */
export function executionFailure(error: unknown): { error: string; cause: string } {
  const e = error as Error & { cause?: { name?: string; message?: string } };
  return { error: e.cause?.name ?? e.name, cause: e.cause?.message ?? e.message };
}

export type LocalLambda = (event: never, context: Context) => Promise<unknown>;
type JsonValue = Parameters<StateMachine['run']>[0];
type State = Record<string, unknown> & { Type: string };

export interface LocalRunnerOptions {
  definition: StateMachineDefinition;
  /** Handlers by function name (the last segment of the task's Lambda ARN). */
  functions: Record<string, LocalLambda>;
  s3: LocalS3;
  /** Replaces every Retry interval with this many milliseconds (tests). Omitted: the definition's intervals. */
  retryIntervalMs?: number;
  /** Runs time this many times faster: every Retry interval and maximum delay is divided by it (benchmarks, where the
   * simulators' rate limits are sped up alike; the cloud scales Waits alike through `waitScale`). Backoff and jitter
   * stay as defined. */
  timeScale?: number;
  /** Multiplies every Wait state's duration (`Seconds` or `SecondsPath`): time scaled for tests and the bench.
   * Omitted: the definition's waits, in real time. */
  waitScale?: number;
  /** Lambda timeout per invocation (the functions' 25 s by default). */
  lambdaTimeoutMs?: number;
  /** Wraps every function invocation: fault injection in tests. */
  intercept?: (fn: string, event: unknown, invoke: () => Promise<unknown>) => Promise<unknown>;
}

/** Counts for the cost model: transitions of the execution, and of its Distributed Map children. */
export interface RunStats {
  /** The state the execution entered last, and its input (GetExecutionHistory's latest `...StateEntered`). */
  current?: { name: string; input: unknown };
  transitions: number;
  childExecutions: number;
  childTransitions: number;
  retries: number;
  invocations: number;
  /** The execution's history as Step Functions would log it for a Standard workflow (`historyEvents`, estimated from
   * the runner's events); Express children, which keep none, are not counted. */
  historyEvents: number;
  /** The largest task input or output, or Map or Parallel output, it passed (UTF-8 bytes; the quota is 256 KiB). */
  payloadBytesMax: number;
}

/** Standard workflows' hard quota of history events: the execution fails when it reaches it without ending
 * (https://docs.aws.amazon.com/step-functions/latest/dg/bp-history-limit.html). */
export const HISTORY_LIMIT = 25_000;

/** The most a state's (or a task's) input or output may hold, as UTF-8 JSON: past it, Step Functions fails the
 * execution with States.DataLimitExceeded, which no Catch (not even States.ALL) catches
 * (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html, 256 KiB). */
export const PAYLOAD_LIMIT_BYTES = 256 * 1024;

/** How a state's events count in a Standard workflow's history: a Task logs its entry and exit and, per attempt,
 * TaskScheduled, TaskStarted and TaskSucceeded or TaskFailed; a Map or Parallel its entry, start, end and exit (and
 * each Map iteration its start and end); any other state its entry and exit. */
type HistoryKind = 'task' | 'container' | 'state';
/** The runner's events (its type is not exported). */
type EventLog = ReturnType<StateMachine['run']>['eventLogs'] extends AsyncIterable<infer E> ? E : never;

function historyEvents(event: EventLog, kinds: ReadonlyMap<string, HistoryKind>): number {
  switch (event.type) {
    case 'ExecutionStarted':
    case 'ExecutionSucceeded':
    case 'ExecutionFailed':
    case 'MapIterationStarted':
    case 'MapIterationSucceeded':
    case 'MapIterationFailed':
      return 1;
    case 'StateEntered': {
      const kind = kinds.get(event.state.name);
      return kind === 'task' ? 4 : kind === 'container' ? 2 : 1;
    }
    case 'StateRetried':
      return 3;
    case 'StateExited':
      return kinds.get(event.state.name) === 'container' ? 2 : 1;
    default:
      return 0;
  }
}

const DISTRIBUTED = 'arn:aws:states:::local:distributed-map';
const WAIT = 'arn:aws:states:::local:wait';
/** Step Functions' "no timeout" for a Task, as long as a local timer can wait. */
const NO_TASK_TIMEOUT_SECONDS = 2_000_000;
/** Express workflows stop at five minutes. */
const EXPRESS_LIMIT_MS = 5 * 60_000;

function walk(
  states: Record<string, State>,
  visit: (name: string, state: State) => State | undefined,
): Record<string, State> {
  const out: Record<string, State> = {};
  for (const [name, state] of Object.entries(states)) {
    let next = visit(name, state) ?? state;
    if (next.Type === 'Parallel') {
      next = {
        ...next,
        Branches: (next.Branches as { States: Record<string, State> }[]).map((b) => ({
          ...b,
          States: walk(b.States, visit),
        })),
      };
    }
    const processor = (next.ItemProcessor ?? next.Iterator) as { States: Record<string, State> } | undefined;
    if (next.Type === 'Map' && processor) {
      next = {
        ...next,
        [next.ItemProcessor ? 'ItemProcessor' : 'Iterator']: { ...processor, States: walk(processor.States, visit) },
      };
    }
    out[name] = next;
  }
  return out;
}

/** Evaluates the JSONPath subset the definition uses: `$`, `$.a.b`, `$$.Execution.Id`. */
function jsonPath(path: string, input: unknown, context: Record<string, unknown>): unknown {
  const [root, ...parts] = path.startsWith('$$')
    ? ['$$', ...path.slice(3).split('.').filter(Boolean)]
    : ['$', ...path.slice(2).split('.').filter(Boolean)];
  let value: unknown = root === '$$' ? context : input;
  for (const part of parts) value = (value as Record<string, unknown> | undefined)?.[part];
  if (value === undefined) throw Object.assign(new Error(`path ${path} not found`), { name: 'States.Runtime' });
  return value;
}

function template(value: unknown, input: unknown, context: Record<string, unknown>): unknown {
  if (Array.isArray(value)) return value.map((v) => template(v, input, context));
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) =>
      k.endsWith('.$') ? [k.slice(0, -2), jsonPath(String(v), input, context)] : [k, template(v, input, context)],
    ),
  );
}

async function pool<T, R>(items: T[], limit: number, work: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await work(items[i] as T, i);
    }
  });
  await Promise.all(workers);
  return out;
}

export class LocalStateMachine {
  private readonly machine: StateMachine;
  private readonly distributed = new Map<string, { state: State; child: LocalStateMachine }>();
  /** Lambda task states and the function each invokes. */
  private readonly lambdaTasks = new Map<string, string>();
  /** Every retrying state's interval, when the options replace them (tests). */
  private readonly retryIntervalOverrides: Record<string, number> = {};
  /** The Wait states (run as scaled sleeps with `waitScale`). */
  readonly waitStates = new Set<string>();
  /** How each state, as the definition has it, counts in the history. */
  private readonly historyKinds = new Map<string, HistoryKind>();
  private readonly options: LocalRunnerOptions;

  constructor(options: LocalRunnerOptions) {
    this.options = options;
    const scale = options.timeScale ?? 1;
    const states = walk(options.definition.States as Record<string, State>, (name, original) =>
      withTaskTimeout(this.localState(name, original, scale)),
    );
    const definition = { ...options.definition, States: states as StateMachineDefinition['States'] };
    // Validated once here and reused by every execution: validating per child execution cost ~4 ms each.
    this.machine = new StateMachine(definition, { validationOptions: { checkArn: false, checkPaths: false } });
  }

  /** A state as the local runner runs it (see the constructor). */
  private localState(name: string, original: State, scale: number): State {
    const options = this.options;
    this.historyKinds.set(
      name,
      original.Type === 'Task'
        ? 'task'
        : original.Type === 'Map' || original.Type === 'Parallel'
          ? 'container'
          : 'state',
    );
    let state = original;
    if (state.Retry && options.retryIntervalMs !== undefined)
      this.retryIntervalOverrides[name] = options.retryIntervalMs;
    if (scale !== 1) state = scaled(state, scale);
    const processor = state.ItemProcessor as
      | { ProcessorConfig?: { Mode?: string }; StartAt: string; States: StateMachineDefinition['States'] }
      | undefined;
    if (state.Type === 'Map' && processor?.ProcessorConfig?.Mode === 'DISTRIBUTED') {
      const child = new LocalStateMachine({
        ...options,
        definition: { StartAt: processor.StartAt, States: processor.States },
      });
      this.distributed.set(name, { state, child });
      const {
        ItemProcessor: _p,
        ItemReader: _r,
        ItemBatcher: _b,
        ResultWriter: _w,
        MaxConcurrency: _c,
        ToleratedFailurePercentage: _t,
        ItemSelector: _s,
        ...rest
      } = state;
      return { ...rest, Type: 'Task', Resource: DISTRIBUTED, Parameters: { state: name, 'input.$': '$' } } as State;
    }
    if (state.Type === 'Wait') this.waitStates.add(name);
    if (state.Type === 'Wait' && options.waitScale !== undefined) {
      // The same Wait, as a task that sleeps its seconds times the scale and passes its input on unchanged.
      const { Seconds, SecondsPath, Type: _t, ...rest } = state;
      return {
        ...rest,
        Type: 'Task',
        Resource: WAIT,
        Parameters: SecondsPath !== undefined ? { 'seconds.$': SecondsPath } : { seconds: Seconds ?? 0 },
        ResultPath: null,
      } as State;
    }
    if (state.Type === 'Task' && typeof state.Resource === 'string' && state.Resource.startsWith('arn:aws:lambda:')) {
      this.lambdaTasks.set(name, state.Resource.split(':').at(-1) ?? '');
    }
    return state;
  }

  /** Runs an execution; resolves with its output, rejects with the error that failed it. */
  run(input: unknown, execution: { arn: string; name: string }, stats: RunStats = newStats()): Promise<unknown> {
    return this.execute(input, execution, stats, 'transitions');
  }

  private async execute(
    input: unknown,
    execution: { arn: string; name: string },
    stats: RunStats,
    counter: 'transitions' | 'childTransitions',
    timeoutMs?: number,
  ): Promise<unknown> {
    // Errors that end the execution whatever its Catch says (the history or a payload past its quota), as in AWS:
    // the run is stopped and the execution fails with the first of them.
    let run: ReturnType<StateMachine['run']> | undefined;
    let terminal: Error | undefined;
    const end = (error: Error) => {
      if (!terminal) {
        terminal = error;
        run?.abort();
      }
      return terminal;
    };
    /** Past the payload quota, `text` (the JSON of `what`) ends the execution: the error that ends it. */
    const oversized = (what: string, text: string): Error | undefined => {
      const bytes = Buffer.byteLength(text);
      stats.payloadBytesMax = Math.max(stats.payloadBytesMax, bytes);
      if (bytes <= PAYLOAD_LIMIT_BYTES) return undefined;
      return end(
        Object.assign(
          new Error(`${what} is ${bytes} bytes, over Step Functions' limit of ${PAYLOAD_LIMIT_BYTES} (256 KiB)`),
          { name: 'States.DataLimitExceeded' },
        ),
      );
    };
    /** A task's side of it: the task fails with that error. */
    const sized = (what: string) => (text: string) => {
      const error = oversized(what, text);
      if (error) throw error;
    };
    const handlers: Record<string, (input: JsonValue) => Promise<JsonValue>> = {};
    for (const [state, fn] of this.lambdaTasks) {
      handlers[state] = (payload) => {
        stats.invocations++;
        return this.invoke(fn, payload, {
          input: sized(`The input of task state ${state}`),
          output: sized(`The output of task state ${state}`),
        });
      };
    }
    for (const name of this.distributed.keys())
      handlers[name] = (p) => this.distributedMap(p as unknown as { state: string; input: unknown }, execution, stats);
    for (const name of this.options.waitScale !== undefined ? this.waitStates : []) {
      handlers[name] = async (p) => {
        const seconds = Number((p as { seconds?: unknown }).seconds) || 0;
        await new Promise((resolve) => setTimeout(resolve, seconds * 1000 * (this.options.waitScale ?? 1)));
        return null;
      };
    }
    const options: RunOptions = {
      overrides: {
        taskResourceLocalHandlers: handlers,
        ...(this.options.retryIntervalMs !== undefined ? { retryIntervalOverrides: this.retryIntervalOverrides } : {}),
      },
      context: {
        Execution: {
          Id: execution.arn,
          Name: execution.name,
          Input: input as JsonValue,
          StartTime: new Date().toISOString(),
        },
      },
    };
    const running = this.machine.run(input as JsonValue, options);
    run = running;
    const timer = timeoutMs ? setTimeout(() => running.abort(), timeoutMs) : undefined;
    // A Standard execution (not an Express child) fails when its history reaches the quota, as in AWS.
    const standard = counter === 'transitions';
    let history = 0;
    const counting = (async () => {
      for await (const event of running.eventLogs) {
        if (standard) {
          history += historyEvents(event, this.historyKinds);
          stats.historyEvents = Math.max(stats.historyEvents, history);
          if (history >= HISTORY_LIMIT && event.type !== 'ExecutionSucceeded')
            end(
              Object.assign(
                new Error(
                  `The execution reached Step Functions' hard quota of ${HISTORY_LIMIT} history events (a Standard workflow) and failed`,
                ),
                // AWS logs ExecutionFailed without naming an error for this; the name is the twin's.
                { name: 'States.HistoryLimitExceeded' },
              ),
            );
        }
        // A Map's or Parallel's output (each task's is sized where the task runs).
        if (event.type === 'StateExited' && this.historyKinds.get(event.state.name) === 'container')
          oversized(`The output of state ${event.state.name}`, JSON.stringify(event.state.output ?? null));
        if (event.type === 'StateEntered') {
          stats[counter]++;
          if (counter === 'transitions') stats.current = { name: event.state.name, input: event.state.input };
        } else if (event.type === 'StateRetried') stats.retries++;
      }
    })();
    try {
      const output = await running.result;
      // The events are read as they come: the last may still be on its way.
      await counting.catch(() => undefined);
      if (terminal) throw terminal;
      return output;
    } catch (error) {
      await counting.catch(() => undefined);
      throw terminal ?? error;
    } finally {
      if (timer) clearTimeout(timer);
      await counting.catch(() => undefined);
    }
  }

  /** Invokes a function as a task does: `sized` checks the task's input and output (their JSON) against the quota. */
  private async invoke(
    fn: string,
    input: unknown,
    sized: { input: (json: string) => void; output: (json: string) => void },
  ): Promise<JsonValue> {
    const handler = this.options.functions[fn];
    if (!handler)
      throw Object.assign(new Error(`no local function ${fn}`), { name: 'Lambda.ResourceNotFoundException' });
    const text = JSON.stringify(input ?? null);
    sized.input(text);
    const event = JSON.parse(text) as never;
    const timeoutMs = this.options.lambdaTimeoutMs ?? 25_000;
    const call = () => handler(event, lambdaContext(fn, timeoutMs));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            Object.assign(new Error(`Task timed out after ${(timeoutMs / 1000).toFixed(2)} seconds`), {
              name: 'Lambda.Unknown',
            }),
          ),
        timeoutMs + 200,
      );
    });
    let result: unknown;
    try {
      result = await Promise.race([this.options.intercept ? this.options.intercept(fn, event, call) : call(), timeout]);
    } catch (error) {
      // As Step Functions reports a Lambda error: the name is the Error, the Lambda error payload the Cause.
      const payload = lambdaErrorPayload(error);
      const shaped = new Error(JSON.stringify(payload));
      shaped.name = payload.errorType || 'Error';
      throw shaped;
    } finally {
      clearTimeout(timer);
    }
    const out = JSON.stringify(result ?? null);
    sized.output(out);
    return JSON.parse(out) as JsonValue;
  }

  /** What the Distributed Map state does in the service, for one map run. */
  private async distributedMap(
    { state: name, input }: { state: string; input: unknown },
    execution: { arn: string; name: string },
    stats: RunStats,
  ): Promise<JsonValue> {
    const { state, child } = this.distributed.get(name) as { state: State; child: LocalStateMachine };
    const context = { Execution: { Id: execution.arn, Name: execution.name } };
    const reader = state.ItemReader as
      | { Resource: string; ReaderConfig?: { InputType?: string }; Parameters: Record<string, unknown> }
      | undefined;
    if (reader?.ReaderConfig?.InputType !== 'JSONL')
      throw new Error(`${name}: the local Distributed Map reads JSONL from S3 only`);
    const where = template(reader.Parameters, input, context) as { Bucket: string; Key: string };
    const text = this.options.s3.get(where.Bucket, where.Key);
    if (text === undefined)
      throw Object.assign(new Error(`s3://${where.Bucket}/${where.Key} does not exist`), {
        name: 'States.ItemReaderFailed',
      });
    const items = text
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as unknown);

    const batcher = state.ItemBatcher as { MaxItemsPerBatch?: number; BatchInput?: unknown } | undefined;
    const batchInput = batcher?.BatchInput ? template(batcher.BatchInput, input, context) : undefined;
    const size = batcher?.MaxItemsPerBatch ?? 1;
    const childInputs: unknown[] = [];
    for (let i = 0; i < items.length; i += size) {
      childInputs.push(
        batcher
          ? { Items: items.slice(i, i + size), ...(batchInput !== undefined ? { BatchInput: batchInput } : {}) }
          : items[i],
      );
    }
    const mapRunId = randomUUID();
    stats.childExecutions += childInputs.length;
    const results = await pool(childInputs, (state.MaxConcurrency as number) || 1000, async (childInput, i) => {
      const childArn = `${execution.arn.replace(':execution:', ':express:')}/${name}:${mapRunId}:${i}`;
      const started = new Date();
      try {
        const output = await child.execute(
          childInput,
          { arn: childArn, name: `${mapRunId}-${i}` },
          stats,
          'childTransitions',
          EXPRESS_LIMIT_MS,
        );
        return {
          ExecutionArn: childArn,
          Input: JSON.stringify(childInput),
          Output: JSON.stringify(output),
          Status: 'SUCCEEDED',
          StartDate: started.toISOString(),
          StopDate: new Date().toISOString(),
        };
      } catch (error) {
        const failure = executionFailure(error);
        return {
          ExecutionArn: childArn,
          Input: JSON.stringify(childInput),
          Status: 'FAILED',
          Error: failure.error,
          Cause: failure.cause,
          StartDate: started.toISOString(),
          StopDate: new Date().toISOString(),
        };
      }
    });
    const failed = results.filter((r) => r.Status === 'FAILED');
    const tolerated = (state.ToleratedFailurePercentage as number | undefined) ?? 0;
    if (results.length && (failed.length / results.length) * 100 > tolerated) {
      throw Object.assign(new Error(`${failed.length} of ${results.length} child executions failed`), {
        name: 'States.ExceedToleratedFailureThreshold',
      });
    }
    const writer = state.ResultWriter as { Parameters?: Record<string, unknown> } | undefined;
    const mapRunArn = `${execution.arn.replace(':execution:', ':mapRun:')}/${name}:${mapRunId}`;
    if (!writer?.Parameters) return results.map((r) => (r.Output ? JSON.parse(r.Output) : null)) as JsonValue;
    const { Bucket, Prefix } = template(writer.Parameters, input, context) as { Bucket: string; Prefix?: string };
    const base = `${Prefix ? `${Prefix}/` : ''}${mapRunId}`;
    const files: Record<string, { Key: string; Size: number }[]> = { FAILED: [], PENDING: [], SUCCEEDED: [] };
    for (const status of ['SUCCEEDED', 'FAILED'] as const) {
      const entries = results.filter((r) => r.Status === status);
      if (!entries.length) continue;
      const key = `${base}/${status}_0.json`;
      const body = JSON.stringify(entries);
      this.options.s3.put(Bucket, key, body);
      files[status]?.push({ Key: key, Size: Buffer.byteLength(body) });
    }
    const manifestKey = `${base}/manifest.json`;
    this.options.s3.put(
      Bucket,
      manifestKey,
      JSON.stringify({ DestinationBucket: Bucket, MapRunArn: mapRunArn, ResultFiles: files }),
    );
    return { MapRunArn: mapRunArn, ResultWriterDetails: { Bucket, Key: manifestKey } };
  }
}

/** A Task without TimeoutSeconds has none in Step Functions (99999999 s); aws-local-stepfunctions gives it 60 s, which
 * would fail a long Distributed Map run (run here as a task) that the service lets run. The local stand-in for "none"
 * stays within what a timer can hold (about 24 days). */
function withTaskTimeout(state: State): State {
  return state.Type === 'Task' && state.TimeoutSeconds === undefined && state.TimeoutSecondsPath === undefined
    ? { ...state, TimeoutSeconds: NO_TASK_TIMEOUT_SECONDS }
    : state;
}

/** A state with its Retry intervals and maximum delays divided by `scale`. */
function scaled(state: State, scale: number): State {
  const out: State = { ...state };
  if (Array.isArray(state.Retry)) {
    out.Retry = (state.Retry as Record<string, unknown>[]).map((r) => ({
      ...r,
      IntervalSeconds: ((r.IntervalSeconds as number | undefined) ?? 1) / scale,
      ...(typeof r.MaxDelaySeconds === 'number' ? { MaxDelaySeconds: r.MaxDelaySeconds / scale } : {}),
    }));
  }
  return out;
}

export function newStats(): RunStats {
  return {
    transitions: 0,
    childExecutions: 0,
    childTransitions: 0,
    retries: 0,
    invocations: 0,
    historyEvents: 0,
    payloadBytesMax: 0,
  };
}
