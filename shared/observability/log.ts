/**
 * Structured JSON logs, one line per event, with the correlation ids of the invocation they belong to
 * (API request id, Step Functions execution id, batch item id) and every secret redacted.
 *
 * Two layers of redaction, because either alone leaks sooner or later:
 * - by key: any field named like a credential (authorization, token, secret, password, api key) is replaced;
 * - by value: every secret value loaded by `shared/aws/secrets.ts` is registered here and scrubbed from every
 *   string that is logged, returned in an error or written to an outcome, wherever it appears.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { config } from '#shared/config.ts';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Correlation extends LambdaContextKeys {
  requestId?: string;
  executionId?: string;
  itemId?: string;
  operation?: string;
}

/** The keys Powertools for AWS Lambda's Logger adds with `injectLambdaContext`, under its names, so the queries
 * operators keep for Powertools (cold starts, one request, one trace) work on these logs too. */
export interface LambdaContextKeys {
  cold_start?: boolean;
  function_name?: string;
  function_arn?: string;
  function_memory_size?: number;
  function_request_id?: string;
  xray_trace_id?: string;
}

/** True until the first invocation of this module instance (a container) takes it; never for provisioned
 * concurrency, whose initialization happens before any request (Powertools' rule). */
let coldStart = !config().provisioned;

/** Powertools' Lambda context keys for one invocation (call once per invocation: it takes the cold start). The
 * trace id is the `Root` of the `_X_AMZN_TRACE_ID` the Lambda runtime sets per invocation. */
export function lambdaContextKeys(context: {
  functionName?: string;
  invokedFunctionArn?: string;
  memoryLimitInMB?: string;
  awsRequestId?: string;
}): LambdaContextKeys {
  const cold = coldStart;
  coldStart = false;
  const trace = /(?:^|;)Root=([^;]+)/.exec(process.env._X_AMZN_TRACE_ID ?? '')?.[1];
  const memory = Number(context.memoryLimitInMB);
  return {
    cold_start: cold,
    ...(context.functionName ? { function_name: context.functionName } : {}),
    ...(context.invokedFunctionArn ? { function_arn: context.invokedFunctionArn } : {}),
    ...(memory > 0 ? { function_memory_size: memory } : {}),
    ...(context.awsRequestId ? { function_request_id: context.awsRequestId } : {}),
    ...(trace ? { xray_trace_id: trace } : {}),
  };
}

const correlation = new AsyncLocalStorage<Correlation>();

/** Runs `fn` with these correlation ids attached to every log line it writes, however deep. */
export function withCorrelation<T>(ids: Correlation, fn: () => T): T {
  return correlation.run({ ...correlation.getStore(), ...ids }, fn);
}

/** Adds ids to the scope `withCorrelation` opened (what a middleware that cannot wrap the rest of the invocation
 * does: shared/handler/middleware.ts opens an empty scope around middy, and its `correlatedLogs` fills it). */
export function addCorrelation(ids: Correlation): void {
  const store = correlation.getStore();
  if (store) Object.assign(store, ids);
}

export function currentCorrelation(): Correlation {
  return correlation.getStore() ?? {};
}

export const REDACTED = '[REDACTED]';
const SENSITIVE_KEY =
  /authorization|secret|token|password|passwd|api[-_]?key|private[-_]?key|public[-_]?key|cookie|credential/i;
const secretValues = new Set<string>();
let secretPattern: RegExp | undefined;
/** The same values as they appear inside JSON text (quotes, backslashes and control characters escaped). */
let jsonSecretPattern: RegExp | undefined;
const escapeRegExp = (v: string) => v.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const longestFirst = (values: Iterable<string>) =>
  new RegExp(
    [...new Set(values)]
      .sort((a, b) => b.length - a.length)
      .map(escapeRegExp)
      .join('|'),
    'g',
  );

/** Registers secret values so they are scrubbed from every log line, error and outcome from now on. */
export function registerSecretValues(values: Iterable<string>): void {
  let changed = false;
  for (const value of values) {
    // Very short values would scrub innocent text; no real credential is this short.
    if (value.length >= 6 && !secretValues.has(value)) {
      secretValues.add(value);
      changed = true;
    }
  }
  if (changed) {
    secretPattern = longestFirst(secretValues);
    jsonSecretPattern = longestFirst([...secretValues].flatMap((v) => [v, JSON.stringify(v).slice(1, -1)]));
  }
}

/** Replaces every registered secret value in `text`. */
export function redact(text: string): string {
  return secretPattern ? text.replace(secretPattern, REDACTED) : text;
}

/**
 * Everything that leaves a function (an outcome, a ledger entry, an idempotency record, an API answer, a task
 * result): a deep copy with every registered secret value replaced in every string and every key. Unlike
 * `redactValue` it keeps fields named like credentials (an answer's shape is a contract); it works on the JSON
 * text, so no depth or field is missed. Values that are not JSON (undefined, functions) come back as they are.
 */
export function scrub<T>(value: T): T {
  if (!jsonSecretPattern || value === undefined) return value;
  const text = JSON.stringify(value);
  if (text === undefined) return value;
  const scrubbed = text.replace(jsonSecretPattern, REDACTED);
  if (scrubbed === text) return value;
  try {
    return JSON.parse(scrubbed) as T;
  } catch {
    // A match that began inside an escape sequence (a secret starting with "n" after a newline): walk instead.
    return scrubWalk(JSON.parse(text)) as T;
  }
}

function scrubWalk(value: unknown): unknown {
  if (typeof value === 'string') return redact(value);
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map(scrubWalk);
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [redact(k), scrubWalk(v)]));
}

/** A deep copy safe to log: sensitive keys replaced, secret values scrubbed from every string. */
export function redactValue(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redact(value);
  if (value === null || typeof value !== 'object' || depth > 8) return value;
  if (value instanceof Error) {
    return { name: value.name, message: redact(value.message), ...(value.stack ? { stack: redact(value.stack) } : {}) };
  }
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    out[key] =
      SENSITIVE_KEY.test(key) && v !== undefined && v !== null && v !== '' ? REDACTED : redactValue(v, depth + 1);
  }
  return out;
}

type Sink = (line: string) => void;
let sink: Sink = (line) => process.stdout.write(`${line}\n`);
let threshold = LEVELS[config().logLevel];

/** Sends log lines elsewhere (tests capture them; `npm start` may silence them). Returns the previous sink. */
export function setLogSink(next: Sink): Sink {
  const previous = sink;
  sink = next;
  return previous;
}

export function setLogLevel(level: LogLevel): void {
  threshold = LEVELS[level];
}

function write(level: LogLevel, message: string, fields?: Record<string, unknown>): void {
  if (LEVELS[level] < threshold) return;
  const line = {
    level,
    time: new Date().toISOString(),
    message: redact(message),
    ...currentCorrelation(),
    ...(fields ? (redactValue(fields) as Record<string, unknown>) : {}),
  };
  sink(JSON.stringify(line));
}

export const log = {
  debug: (message: string, fields?: Record<string, unknown>) => write('debug', message, fields),
  info: (message: string, fields?: Record<string, unknown>) => write('info', message, fields),
  warn: (message: string, fields?: Record<string, unknown>) => write('warn', message, fields),
  error: (message: string, fields?: Record<string, unknown>) => write('error', message, fields),
};
