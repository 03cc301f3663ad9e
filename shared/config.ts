/**
 * The functions' configuration: every environment variable the shared code and the functions read, read once per
 * container (the first `config()`), validated (zod), and typed. Nothing else in shared/ or functions/ reads
 * process.env.
 *
 * A function says at module scope what it cannot run without (`needs('LEDGER_TABLE', ...)`), so a function deployed
 * without one fails its cold start with a ConfigurationError naming the variable, before any request reaches a
 * provider; the local twin's containers get exactly the template's variables, so a stack that forgot one fails
 * there too. A malformed value (a rate that is not a positive number, say) fails the same way, naming its variable.
 *
 * Outside a Lambda function (a tool that imports a handler for its schemas, the tests), `needs` leaves the check to
 * the first use. Memory stand-ins for the tables (tests, a script that runs the handlers in one process) are an
 * explicit choice, `useMemoryStandIns()`, never a fallback: in such a process the handlers are imported before the
 * test sets its variables, so `needs` leaves the check to the first use (`resource(...)`, `table(...)`), where an unset table is its
 * memory stand-in and any other unset resource fails naming its variable.
 */
import * as z from 'zod/mini';
import { ConfigurationError } from '#shared/core/errors.ts';

/** What each resource variable names, for the message when it is missing. */
export const RESOURCES = {
  LEDGER_TABLE: 'audit ledger table',
  IDEMPOTENCY_TABLE: 'idempotency table',
  RATE_BUDGET_TABLE: "table to meter a provider's budget across containers",
  CIRCUIT_TABLE: 'circuits table',
  BATCH_BUCKET: 'batch bucket',
  STATE_MACHINE_ARN: 'batch state machine',
  SCHEDULE_GROUP: 'schedule group for expirations',
  SCHEDULER_ROLE_ARN: 'role for schedules to start the state machine with',
  SCHEDULER_DLQ_ARN: 'dead-letter queue for schedules',
  LOOKUP_FUNCTION_NAME: 'credit application lookup function',
} as const;
export type Resource = keyof typeof RESOURCES;
type Table = 'LEDGER_TABLE' | 'IDEMPOTENCY_TABLE' | 'RATE_BUDGET_TABLE' | 'CIRCUIT_TABLE';

const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type ConfigLogLevel = (typeof LOG_LEVELS)[number];
/** The other names Lambda's log levels (TRACE, FATAL) and Powertools' (TRACE, CRITICAL) use, read as the nearest
 * level the logger has: a log level copied from either never stops a function at its cold start. */
const LOG_LEVEL_ALIASES: Readonly<Record<string, ConfigLogLevel>> = {
  trace: 'debug',
  critical: 'error',
  fatal: 'error',
};
const LOG_LEVEL_NAMES = [...LOG_LEVELS, ...Object.keys(LOG_LEVEL_ALIASES)];

// Numbers are checked as text and read with Number() afterwards: the checks zod/mini already brings into every bundle
// (string, refine, enum), no pipes or number schemas added to the functions' bytes.
const positiveNumber = (v: string) => Number.isFinite(Number(v)) && Number(v) > 0;
const positive = z.optional(z.string().check(z.refine(positiveNumber, 'must be a positive number')));
const count = z.optional(
  z.string().check(z.refine((v) => positiveNumber(v) && Number.isInteger(Number(v)), 'must be a positive integer')),
);
const text = z.optional(z.string());

/** Every variable read, as the environment gives it (blank is unset). */
const Environment = z.object({
  AWS_REGION: text,
  AWS_DEFAULT_REGION: text,
  AWS_ENDPOINT_URL: text,
  AWS_ENDPOINT_URL_DYNAMODB: text,
  AWS_ENDPOINT_URL_S3: text,
  AWS_LAMBDA_FUNCTION_NAME: text,
  AWS_LAMBDA_INITIALIZATION_TYPE: text,
  SECRET_ID: text,
  SECRETS_FILE: text,
  SECRETS_TTL_SECONDS: positive,
  LEDGER_TABLE: text,
  IDEMPOTENCY_TABLE: text,
  IDEMPOTENCY_TTL_SECONDS: positive,
  RATE_BUDGET_TABLE: text,
  CIRCUIT_TABLE: text,
  CIRCUIT_FAILURES_TO_OPEN: positive,
  CIRCUIT_PROBE_SECONDS: positive,
  BATCH_BUCKET: text,
  STATE_MACHINE_ARN: text,
  SCHEDULE_GROUP: text,
  SCHEDULER_ROLE_ARN: text,
  SCHEDULER_DLQ_ARN: text,
  LOOKUP_FUNCTION_NAME: text,
  METRICS_NAMESPACE: text,
  /** Any case: read lower-cased; trace, critical and fatal as their nearest level. */
  LOG_LEVEL: z.optional(
    z.enum(LOG_LEVELS, {
      error: `must be one of ${LOG_LEVEL_NAMES.join(', ')} (any case; trace logs as debug, critical and fatal as error)`,
    }),
  ),
});

/** `<PROVIDER>_RATE_PER_SECOND`: one per provider function (infra/stack.ts), so read by pattern. */
const RATE_VARIABLE = /^([A-Z][A-Z0-9]*)_RATE_PER_SECOND$/;

export interface Config {
  /** AWS_LAMBDA_FUNCTION_NAME: set where the code runs as a Lambda function (in AWS, and in the twin's containers). */
  functionName: string | undefined;
  /** AWS_LAMBDA_INITIALIZATION_TYPE: `provisioned-concurrency` where the container was initialized before any request. */
  provisioned: boolean;
  /** AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1. */
  region: string;
  /** AWS_ENDPOINT_URL_DYNAMODB, else AWS_ENDPOINT_URL: a local endpoint (`npm start`); else the regional one. */
  dynamoDbEndpoint: string | undefined;
  /** AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL: a local endpoint serves buckets by path. */
  s3Endpoint: string | undefined;
  secretId: string | undefined;
  secretsFile: string | undefined;
  /** SECRETS_TTL_SECONDS (300). */
  secretsTtlMs: number;
  /** IDEMPOTENCY_TTL_SECONDS (86400). */
  idempotencyTtlSeconds: number;
  /** `<PROVIDER>_RATE_PER_SECOND`, by provider (lower case). */
  ratePerSecond: Readonly<Record<string, number>>;
  /** CIRCUIT_FAILURES_TO_OPEN (3) and CIRCUIT_PROBE_SECONDS (15). */
  circuit: { failuresToOpen: number; probeIntervalMs: number };
  /** Every variable set (not blank), for the settings a provider module owns (`countSetting`). */
  settings: Readonly<Record<string, string>>;
  /** METRICS_NAMESPACE; undefined: no metrics. */
  metricsNamespace: string | undefined;
  /** LOG_LEVEL (info). */
  logLevel: ConfigLogLevel;
  /** The resource variables as set (use `resource` or `table` to read one). */
  resources: Readonly<Partial<Record<Resource, string>>>;
}

const issueText = (issues: readonly { path: readonly PropertyKey[]; message: string }[]) =>
  issues.map((i) => `${i.path.map(String).join('.')} ${i.message}`).join('; ');

/** The configuration `env` gives: a ConfigurationError naming every malformed variable (never its value). */
export function readConfig(env: Readonly<Record<string, string | undefined>>): Config {
  const set: Record<string, string | undefined> = Object.fromEntries(
    Object.entries(env).filter(([, v]) => v !== undefined && v.trim() !== ''),
  );
  if (set.LOG_LEVEL) {
    const level = set.LOG_LEVEL.toLowerCase();
    set.LOG_LEVEL = LOG_LEVEL_ALIASES[level] ?? level;
  }
  const parsed = Environment.safeParse(set);
  const rates: Record<string, number> = {};
  const problems: string[] = parsed.success ? [] : [issueText(parsed.error.issues)];
  for (const [name, value] of Object.entries(set)) {
    const match = RATE_VARIABLE.exec(name);
    if (!match?.[1]) continue;
    if (value !== undefined && positiveNumber(value)) rates[match[1].toLowerCase()] = Number(value);
    else problems.push(`${name} must be a positive number`);
  }
  if (!parsed.success || problems.length > 0) {
    throw new ConfigurationError(
      `The function's environment is invalid: ${problems.join('; ')} (the stack sets these; locally \`npm start\` does)`,
    );
  }
  const e = parsed.data;
  const number = (value: string | undefined) => (value === undefined ? undefined : Number(value));
  const resources: Partial<Record<Resource, string>> = {};
  for (const name of Object.keys(RESOURCES) as Resource[]) {
    const value = e[name];
    if (value) resources[name] = value;
  }
  return {
    functionName: e.AWS_LAMBDA_FUNCTION_NAME,
    provisioned: e.AWS_LAMBDA_INITIALIZATION_TYPE === 'provisioned-concurrency',
    region: e.AWS_REGION ?? e.AWS_DEFAULT_REGION ?? 'us-east-1',
    dynamoDbEndpoint: e.AWS_ENDPOINT_URL_DYNAMODB ?? e.AWS_ENDPOINT_URL,
    s3Endpoint: e.AWS_ENDPOINT_URL_S3 ?? e.AWS_ENDPOINT_URL,
    secretId: e.SECRET_ID,
    secretsFile: e.SECRETS_FILE,
    secretsTtlMs: (number(e.SECRETS_TTL_SECONDS) ?? 300) * 1000,
    idempotencyTtlSeconds: number(e.IDEMPOTENCY_TTL_SECONDS) ?? 86_400,
    ratePerSecond: rates,
    circuit: {
      failuresToOpen: Math.round(number(e.CIRCUIT_FAILURES_TO_OPEN) ?? 3),
      probeIntervalMs: (number(e.CIRCUIT_PROBE_SECONDS) ?? 15) * 1000,
    },
    settings: set as Record<string, string>,
    metricsNamespace: e.METRICS_NAMESPACE,
    logLevel: e.LOG_LEVEL ?? 'info',
    resources,
  };
}

let current: Config | undefined;

/** The process's configuration, read from its environment on first use and kept (a container's never changes). */
export function config(): Config {
  current ??= readConfig(process.env);
  return current;
}

/** Reads the environment again: for the processes that change it (tests between cases, the local cloud as it
 * starts its endpoints), never for a Lambda container. */
export function reloadConfig(): Config {
  current = undefined;
  return config();
}

let standIns = false;

/** Chooses (or, with false, gives up) memory stand-ins for the tables whose variables are not set, and leaves the
 * check of what a function needs to its first use (tests and one-process scripts import handlers before they set
 * their variables). Never chosen in a Lambda container or the local twin's containers. */
export function useMemoryStandIns(choose = true): void {
  standIns = choose;
}

function missing(name: Resource): ConfigurationError {
  return new ConfigurationError(
    `${name} is not set, so ${config().functionName ?? 'the function'} has no ${RESOURCES[name]}: the stack sets it on every function that uses it (npm start's containers get it from the template)`,
  );
}

/**
 * What a function cannot run without, declared at its module scope: running as a Lambda function
 * (AWS_LAMBDA_FUNCTION_NAME, in AWS and in the twin's containers), a missing one fails the cold start naming it, and
 * every other missing one (a malformed variable too, as reading the configuration validates it). Elsewhere (a tool
 * that imports a handler for its schemas, such as the OpenAPI document; the tests) the check waits for the first use.
 */
export function needs(...names: Resource[]): void {
  if (standIns || !config().functionName) return;
  const { resources } = config();
  const unset = names.filter((name) => !resources[name]);
  if (unset.length === 1) throw missing(unset[0] as Resource);
  if (unset.length > 1) throw new ConfigurationError(unset.map((name) => missing(name).message).join('; '));
}

/** A resource the function uses now: its value, else a ConfigurationError naming the variable. */
export function resource(name: Resource): string {
  const value = config().resources[name];
  if (!value) throw missing(name);
  return value;
}

/** A table the function uses now: its name; undefined when it is unset and stand-ins were chosen (its memory
 * stand-in serves); else a ConfigurationError naming the variable. */
export function table(name: Table): string | undefined {
  const value = config().resources[name];
  if (value || standIns) return value;
  throw missing(name);
}

/** An optional table (RATE_BUDGET_TABLE, CIRCUIT_TABLE): its name, or undefined where the function goes without. */
export function optionalTable(name: Table): string | undefined {
  return config().resources[name];
}

/** A positive integer a provider module owns (its descriptor's `environment` names it), or undefined where unset;
 * a malformed one is a ConfigurationError naming the variable, never its value. */
export function countSetting(variable: string): number | undefined {
  const value = config().settings[variable];
  if (value === undefined) return undefined;
  const parsed = count.safeParse(value);
  if (parsed.success) return Number(value);
  throw new ConfigurationError(
    `The function's environment is invalid: ${variable} must be a positive integer (the stack sets it; locally \`npm start\` does)`,
  );
}
