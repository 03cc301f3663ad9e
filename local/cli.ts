/**
 * `npm run cli -- ...`: the local API from a terminal.
 *
 *   cancel <provider> ...        each provider's own arguments (its module's `cli`, shared/providers/<provider>/index.ts)
 *   lookup <creditApplicationId>
 *   batch <file.json>            start a batch and follow it: a progress bar per provider, then a summary table
 *   status <batchId>
 *   ledger (--credit-application <id> | --provider <p> --target-id <id> [--org <uuid>])
 *
 * Options: --api URL (default http://127.0.0.1:3000, or API_URL; a deployed stack's ApiUrl output works too),
 * --sign (SigV4 with the AWS default credential chain; always on for an https API), --json (machine-readable
 * output), --idempotency-key KEY (else one of its own per command), --retries N (an answer that says the API is
 * busy is retried N times, default 5, with the same key). Exit codes: 0 done (cancelled, already cancelled, completed), 1 any other
 * outcome, 2 usage (and no credentials to sign with), 3 the API is not reachable.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import type { SignatureV4 } from '@smithy/signature-v4';
import { identity } from '#shared/batch/keys.ts';
import { causeMessage } from '#shared/batch/summarize.ts';
import { isCanceled, OUTCOMES, type Outcome, PROVIDERS, type Provider } from '#shared/core/outcome.ts';
import { ROUTES } from '#shared/handler/routes.ts';
import { type BatchItem, REGISTRY } from '#shared/providers/index.ts';
import type { ProviderModule } from '#shared/providers/provider.ts';

import { busy, busyWaitMs } from './busy.ts';
import { executeApiSigner, regionFor, signedHeaders } from './sigv4.ts';

const USAGE = `Usage: npm run cli -- <command> [options]

${[...REGISTRY]
  .reverse()
  .map((p) => `  cancel ${p.cli.usage}`)
  .join('\n')}
  lookup <creditApplicationId>
  batch <file.json>              start a batch and follow it to the end
  status <batchId>
  ledger --credit-application <id> | --provider <provider> --target-id <id> [--org <uuid>]

  --api URL            the API (default http://127.0.0.1:3000, or API_URL); a deployed stack's ApiUrl too
  --sign               sign requests (SigV4, service execute-api) with the AWS default credential chain
                       (environment, profile, SSO); always on for an https API. Region: the URL's, or AWS_REGION
  --json               print the API's JSON answers only
  --idempotency-key K  make a retried command return the first answer (each command sends one: this one, or its own)
  --retries N          times to retry an answer that says the API is busy (default 5; 0 for none)`;

class Usage extends Error {}
class Unreachable extends Error {}

const { values: opts, positionals } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      strict: true,
      options: {
        api: { type: 'string' },
        json: { type: 'boolean' },
        sign: { type: 'boolean' },
        'idempotency-key': { type: 'string' },
        retries: { type: 'string' },
        metadata: { type: 'string', multiple: true },
        reason: { type: 'string' },
        details: { type: 'string' },
        message: { type: 'string' },
        email: { type: 'string' },
        requester: { type: 'string' },
        target: { type: 'string' },
        'credit-application': { type: 'string' },
        provider: { type: 'string' },
        'target-id': { type: 'string' },
        org: { type: 'string' },
        help: { type: 'boolean' },
      },
    });
  } catch (error) {
    console.error(`cli: ${(error as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
})();

const API = (opts.api ?? process.env.API_URL ?? 'http://127.0.0.1:3000').replace(/\/+$/, '');
const json = opts.json ?? false;
const SIGN = opts.sign === true || API.startsWith('https:');
let signer: SignatureV4 | undefined;

/** The signer for the API's region, with the default chain's credentials (resolved, and refreshed, by the chain). */
function apiSigner(url: URL): SignatureV4 {
  if (signer) return signer;
  const region = regionFor(url);
  if (!region) throw new Usage(`cannot tell the API's region from ${url.host}: set AWS_REGION`);
  const credentials = defaultProvider();
  signer = executeApiSigner(region, async () => {
    try {
      return await credentials();
    } catch (error) {
      throw new Usage(`no AWS credentials to sign with (${(error as Error).message.split('\n')[0]})`);
    }
  });
  return signer;
}
const say = (text: string) => {
  if (!json) console.log(text);
};

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/** One key per command run: its retries (below) return the first answer rather than act twice. */
const IDEMPOTENCY_KEY = opts['idempotency-key'] ?? randomUUID();
function retries(): number {
  const n = Number(opts.retries ?? 5);
  if (!Number.isInteger(n) || n < 0) throw new Usage('--retries must be a whole number, 0 or more');
  return n;
}

async function call(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const most = retries();
  for (let attempt = 0; ; attempt++) {
    const answer = await callOnce(method, path, body, headers);
    if (!busy(answer) || attempt >= most) return answer;
    // The same Idempotency-Key, so a request that did run answers as it did the first time.
    const wait = busyWaitMs(attempt);
    console.error(
      `cli: HTTP ${answer.status} from ${method} ${path}: the API is busy (a function at its reserved concurrency, or not answering); retry ${attempt + 1} of ${most} in ${(wait / 1000).toFixed(1)} s with the same Idempotency-Key`,
    );
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

async function callOnce(method: string, path: string, body: unknown, headers: Record<string, string>): Promise<Answer> {
  const url = new URL(`${API}${path}`);
  const text = body !== undefined ? JSON.stringify(body) : undefined;
  let sent: Record<string, string> = {
    'content-type': 'application/json',
    ...(method === 'GET' ? {} : { 'idempotency-key': IDEMPOTENCY_KEY }),
    ...headers,
  };
  if (SIGN) sent = await signedHeaders(apiSigner(url), method, url, sent, text);
  let res: Response;
  try {
    res = await fetch(url, { method, headers: sent, ...(text !== undefined ? { body: text } : {}) });
  } catch (error) {
    throw new Unreachable(
      `cannot reach the local API at ${API} (${(error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message}). Is it running? Start it with: npm start`,
    );
  }
  const answer = await res.text();
  let parsed: Record<string, unknown>;
  try {
    parsed = answer ? (JSON.parse(answer) as Record<string, unknown>) : {};
  } catch {
    parsed = { message: answer.slice(0, 200) };
  }
  return { status: res.status, body: parsed };
}

function printOutcome(answer: Answer): number {
  if (json) console.log(JSON.stringify(answer.body));
  const outcomes =
    (answer.body.outcomes as Record<string, unknown>[] | undefined) ?? (answer.body.outcome ? [answer.body] : []);
  if (!outcomes.length) {
    say(`HTTP ${answer.status}: ${String(answer.body.message ?? answer.body.error ?? JSON.stringify(answer.body))}`);
    for (const issue of (answer.body.issues as { path: string; message: string }[] | undefined) ?? [])
      say(`  ${issue.path} ${issue.message}`);
    return answer.status < 300 ? 0 : 1;
  }
  for (const o of outcomes) {
    const target = Object.values((o.target as Record<string, string>) ?? {}).join('/');
    say(
      `${String(o.provider)} ${target}: ${String(o.outcome)}${o.providerStatus ? ` (${String(o.providerStatus)})` : ''}${o.message ? ` - ${String(o.message)}` : ''}`,
    );
  }
  return outcomes.every((o) => isCanceled(o as Pick<Outcome, 'outcome'>)) ? 0 : 1;
}

function need(value: string | undefined, what: string): string {
  if (!value) throw new Usage(`${what} is required`);
  return value;
}

async function cancel(args: string[]): Promise<number> {
  const [provider, ...ids] = args;
  const module: ProviderModule | undefined = REGISTRY.find((p) => p.name === provider);
  if (!module) throw new Usage(`cancel takes a provider: ${PROVIDERS.join(', ')}`);
  const request = module.cli.request(ids, opts, need, (message) => new Usage(message));
  return printOutcome(await call('POST', request.path, request.body, request.headers));
}

function bar(done: number, total: number, width = 30): string {
  const filled = total ? Math.round((Math.min(done, total) / total) * width) : width;
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(done).padStart(String(total).length)}/${total}`;
}

function summaryTable(summary: {
  byProvider?: Record<string, Record<string, number>>;
  byOutcome?: Record<string, number>;
}): string {
  const columns = OUTCOMES as readonly string[];
  const head = ['provider'.padEnd(12), ...columns.map((c) => c.padStart(Math.max(c.length, 6)))].join(' ');
  const row = (name: string, counts: Record<string, number> | undefined) =>
    [name.padEnd(12), ...columns.map((c) => String(counts?.[c] ?? 0).padStart(Math.max(c.length, 6)))].join(' ');
  const rows = Object.entries(summary.byProvider ?? {}).map(([p, counts]) => row(p, counts));
  return [head, ...rows, row('total', summary.byOutcome)].join('\n');
}

/** What a batch between rounds waits for, in one line (GET /v1/batches/{id} answers `waiting`). */
function waitingLine(body: Record<string, unknown>): string | undefined {
  const w = body.waiting as
    | {
        round?: number;
        nextAttemptAt?: string;
        deadline?: string;
        waitingFor?: { provider: string; items: number; circuit?: string; since?: string; guard?: string }[];
      }
    | undefined;
  if (body.status !== 'waiting' || !w) return undefined;
  const time = (iso: string | undefined) => (iso ? new Date(iso).toISOString().slice(11, 19) : '?');
  const what = (w.waitingFor ?? [])
    .map((f) =>
      f.guard
        ? `${f.provider} to read credit application ${f.guard} for the guard (${f.items} items, none cancelled yet)`
        : f.circuit === 'open'
          ? `${f.provider} unreachable since ${time(f.since)} (${f.items} items)`
          : `${f.provider} (${f.items} items)`,
    )
    .join(', ');
  return `waiting after round ${w.round ?? '?'} for ${what}; next attempt at ${time(w.nextAttemptAt)} UTC, gives up at ${w.deadline ?? '?'}`;
}

async function batch(file: string): Promise<number> {
  let input: { items?: BatchItem[] };
  try {
    input = JSON.parse(readFileSync(file, 'utf8')) as { items?: BatchItem[] };
  } catch (error) {
    throw new Usage(`cannot read the batch file ${file}: ${(error as Error).message}`);
  }
  const started = await call('POST', '/v1/batches', input);
  if (started.status !== 202) return printOutcome(started);
  const id = String(started.body.batchId);
  say(`Batch ${id} started (${String(started.body.items)} items)`);
  // Totals per provider, from the file (duplicates counted once, as the batch does).
  const totals = new Map<Provider, Set<string>>();
  for (const item of input.items ?? []) {
    const set = totals.get(item.provider) ?? new Set<string>();
    set.add(identity(item));
    totals.set(item.provider, set);
  }
  const tty = process.stdout.isTTY && !json;
  let drawn = 0;
  let lastPrint = 0;
  for (;;) {
    const status = await call('GET', `/v1/batches/${id}`);
    const running = status.body.status === 'running' || status.body.status === 'waiting';
    const progress = (status.body.progress ?? {}) as Record<string, number>;
    const settled = (p: Provider) => (running ? (progress[p] ?? 0) : (totals.get(p)?.size ?? 0));
    const lines = [...totals.keys()].map((p) => `${p.padEnd(12)} ${bar(settled(p), totals.get(p)?.size ?? 0)}`);
    // Between rounds, what the batch waits for (a line, blank otherwise, so the bars keep their place).
    if (running) lines.push(waitingLine(status.body) ?? '');
    if (tty) {
      if (drawn) process.stdout.write(`\x1b[${drawn}A`);
      process.stdout.write(`${lines.map((l) => `\x1b[2K${l}`).join('\n')}\n`);
      drawn = lines.length;
    } else if (!json && (Date.now() - lastPrint > 2_000 || !running)) {
      console.log(lines.join('\n'));
      lastPrint = Date.now();
    }
    if (!running) {
      if (json) console.log(JSON.stringify(status.body));
      const summary = status.body.summary as Parameters<typeof summaryTable>[0] | undefined;
      say(
        `\nBatch ${id}: ${String(status.body.status)}${status.body.error ? ` (${String(status.body.error)}: ${String(status.body.cause)})` : ''}`,
      );
      if (summary) say(summaryTable(summary));
      const rounds = status.body.rounds as { message?: string } | undefined;
      if (rounds?.message) say(rounds.message);
      return status.body.status === 'completed' || status.body.status === 'skipped' ? 0 : 1;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function main(): Promise<number> {
  const [command, ...args] = positionals;
  if (opts.help || !command) {
    console.log(USAGE);
    return command || opts.help ? 0 : 2;
  }
  switch (command) {
    case 'cancel':
      return cancel(args);
    case 'lookup': {
      const answer = await call(
        'GET',
        // The lookup's own route (shared/handler/routes.ts).
        (ROUTES.find((r) => r.function === 'get-credit-application')?.path ?? '').replace(
          '{creditApplicationId}',
          encodeURIComponent(need(args[0], 'a credit application id')),
        ),
      );
      if (json) console.log(JSON.stringify(answer.body));
      else if (answer.status === 200)
        say(
          `${String(answer.body.id)}: ${String(answer.body.status)} (terminal: ${String(answer.body.terminal)}, expired: ${String(answer.body.expired)}, expires_at: ${String(answer.body.expires_at)})`,
        );
      else return printOutcome(answer);
      return answer.status === 200 ? 0 : 1;
    }
    case 'batch':
      return batch(need(args[0], 'a batch file'));
    case 'status': {
      const answer = await call('GET', `/v1/batches/${encodeURIComponent(need(args[0], 'a batch id'))}`);
      if (json) console.log(JSON.stringify(answer.body));
      else {
        say(`Batch ${String(answer.body.batchId ?? args[0])}: ${String(answer.body.status ?? answer.body.message)}`);
        const waiting = waitingLine(answer.body);
        if (waiting) say(waiting);
        // An execution that failed (an unreadable guard, invalid input): its error, and why.
        if (typeof answer.body.error === 'string')
          say(`${answer.body.error}: ${causeMessage(String(answer.body.cause ?? ''))}`);
        const rounds = answer.body.rounds as { message?: string } | undefined;
        if (rounds?.message) say(rounds.message);
        if (answer.body.summary) say(summaryTable(answer.body.summary as Parameters<typeof summaryTable>[0]));
      }
      return answer.status === 200 && answer.body.status === 'completed' ? 0 : 1;
    }
    case 'ledger': {
      const query = opts['credit-application']
        ? `creditApplicationId=${encodeURIComponent(opts['credit-application'])}`
        : ledgerTarget(
            need(opts.provider, '--provider (or --credit-application)'),
            need(opts['target-id'], '--target-id'),
          );
      const answer = await call('GET', `/v1/cancellations?${query}`);
      if (json) console.log(JSON.stringify(answer.body));
      else if (answer.status !== 200) return printOutcome(answer);
      else
        for (const e of (answer.body.cancellations as Record<string, unknown>[]) ?? [])
          say(
            `${String(e.at)} ${String(e.provider)} ${Object.values(e.target as Record<string, string>).join('/')}: ${String(e.outcome)} (${String(e.source)}${e.requestedBy ? `, by ${String(e.requestedBy)}` : ''})`,
          );
      return answer.status === 200 ? 0 : 1;
    }
    default:
      throw new Usage(`unknown command "${command}"`);
  }
}

/** A ledger query's target: `--target-id` is the provider's last target field, `--org` the one before (if any). */
function ledgerTarget(provider: string, id: string): string {
  const fields = REGISTRY.find((p) => p.name === provider)?.targetFields;
  const name = fields?.at(-1);
  if (!fields || !name) throw new Usage(`--provider must be one of ${PROVIDERS.join(', ')}`);
  const org = fields.length > 1 ? fields[0] : undefined;
  return `provider=${provider}&${name}=${encodeURIComponent(id)}${org ? `&${org}=${encodeURIComponent(need(opts.org, `--org (${provider} targets are org and request)`))}` : ''}`;
}

try {
  process.exitCode = await main();
} catch (error) {
  if (error instanceof Usage) {
    console.error(`cli: ${error.message}\n\n${USAGE}`);
    process.exitCode = 2;
  } else if (error instanceof Unreachable) {
    console.error(`cli: ${error.message}`);
    process.exitCode = 3;
  } else {
    throw error;
  }
}
