/**
 * `npm run bench`: measures, never asserts. Prints a table and writes bench/results.json.
 *
 *   1. bundles and cold start, per function, built as deployed (the CDK's own esbuild bundles), against a bundle
 *      that holds only the Secrets Manager client (the floor every function pays);
 *   2. per-call overhead: a warm handler cancelling at a loopback simulator against a raw HTTP request to it, and
 *      against GoCardless's own Node client (gocardless-nodejs) making the same cancel;
 *   3. batch throughput: 10,000 mixed items through the local runner against rate-limited simulators, time
 *      scaled down by the same factor for every provider;
 *   3b. container: one provider function's warm container alone, its CPU per invocation, and the CPU of one
 *      DynamoDB call through the functions' client against a bare node:http request;
 *   4. cost: state transitions per item on both paths, from the definition and from a local run, priced.
 *   5. outage: one provider answers 503 and resets for 30 (scaled) minutes in the middle of a 2,000-item mixed
 *      batch; the batch waits in rounds behind the provider's circuit, and drains when it is back.
 *
 * Every figure is a median of repeated runs; a ratio is taken between medians of the same run. Options:
 * --quick (fewer repetitions), --only=bundles,overhead,throughput,container,cost,outage,storm, --scale=N (time
 * factor, default 10; the outage runs at --outage-scale=N, default 60: a scaled minute is a second; throughput and
 * storm at another scale than 10 go to `<section>Scale<N>`). Sections not run keep their figures in
 * bench/results.json.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { App } from 'aws-cdk-lib';
import { build } from 'esbuild';
import { buildApp } from '#infra/app.ts';
import { LIMIT_WINDOW_SECONDS } from '#infra/budget.ts';
import { bundleBuildOptions, PROJECT_ROOT } from '#infra/provider-function.ts';
import { busy, busyWaitMs } from '#local/busy.ts';
import { RATE_MARGIN } from '#shared/core/cancel.ts';
import { DEFAULT_MAX_CODES_PER_CALL } from '#shared/providers/auco/adapter.ts';

const run = promisify(execFile);
const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string | undefined]));
const QUICK = args.has('quick');
const ONLY = new Set((args.get('only') ?? 'bundles,overhead,throughput,container,cost,outage,storm').split(','));
const SCALE = Number(args.get('scale') ?? 10);
/** Where a time-scaled section's figures go in results.json: `throughput` at the default 10x, `throughputScale4` at
 * --scale=4, so a run at another scale never overwrites the default's figures. */
const scaled = (section: string) => (SCALE === 10 ? section : `${section}Scale${SCALE}`);
/** The nice value of the twin's Lambda containers and DynamoDB in the throughput and storm benches (--nice=0: none).
 * The simulators stand for providers' machines elsewhere: what they count (when each request arrives, in windows of
 * 100 ms at 10x) must not be delayed by the twin's CPU; the state-machine runner and the bench keep normal priority.
 * 5, not more: enough for a waking simulator to run before the twin's threads, while on a machine shared with other
 * work the twin still gets a third of a normal thread's share (at 10, a ninth: one storm run at 10 beside a load of 20
 * lost 250 items to guard lookups throttled past their retries, though how much of that was the load alone is not
 * measured). */
const NICE = Number(args.get('nice') ?? 5);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const percentile = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] as number;
const round = (n: number, digits = 3) => Number(n.toFixed(digits));

// Handlers run in this process for the overhead and the POSTs: their tables' memory stand-ins, chosen explicitly.
const { useMemoryStandIns } = await import('#shared/config.ts');
useMemoryStandIns();

const results: Record<string, unknown> = {
  date: new Date().toISOString(),
  machine: {
    cpus: cpus().length,
    model: cpus()[0]?.model,
    node: process.version,
  },
};

// ---------- 1. bundles and cold start ----------

const FLOOR = '(floor: Secrets Manager client only)';

async function bundles() {
  const outdir = mkdtempSync(join(tmpdir(), 'bench-cdk-'));
  const app = new App({ outdir, context: { stage: 'bench' } });
  const { stack } = buildApp(app, { nag: false });
  const template = app.synth().getStackByName(stack.stackName).template as {
    Resources: Record<
      string,
      {
        Type: string;
        Properties: {
          Code?: { S3Key?: string };
          Environment?: { Variables?: { OPERATION?: string } & Record<string, unknown> };
        };
      }
    >;
  };
  const files: Record<string, string> = {};
  // Each function's environment as the stack gives it (a reference to a table or a bucket as a placeholder name):
  // a function cold-starts only with what it needs (shared/config.ts).
  const envs: Record<string, Record<string, string>> = {};
  for (const r of Object.values(template.Resources)) {
    const variables = r.Properties.Environment?.Variables;
    const op = variables?.OPERATION;
    const hash = r.Properties.Code?.S3Key?.replace(/\.zip$/, '');
    if (r.Type !== 'AWS::Lambda::Function' || !op || !hash) continue;
    files[op] = join(outdir, `asset.${hash}`, 'index.mjs');
    envs[op] = Object.fromEntries(
      Object.entries(variables).map(([k, v]) => [k, typeof v === 'string' ? v : `bench-${k.toLowerCase()}`]),
    );
  }
  // The floor: only the Secrets Manager client, constructed and used, built the same way.
  const floorDir = mkdtempSync(join(tmpdir(), 'bench-floor-'));
  writeFileSync(
    join(floorDir, 'floor.ts'),
    "import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';\nconst client = new SecretsManagerClient({});\nexport const handler = async () => client.send(new GetSecretValueCommand({ SecretId: 'x' }));\n",
  );
  await build({
    ...bundleBuildOptions(),
    entryPoints: [join(floorDir, 'floor.ts')],
    outfile: join(floorDir, 'floor.mjs'),
    nodePaths: [join(PROJECT_ROOT, 'node_modules')],
  });
  files[FLOOR] = join(floorDir, 'floor.mjs');

  // Import time in fresh processes, round-robin across bundles so machine noise falls on all of them alike.
  const runs = QUICK ? 5 : 21;
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(files).map((k) => [k, []]));
  const script = (file: string) =>
    `const t=performance.now();await import(${JSON.stringify(`file://${file}`)});process.stdout.write(String(performance.now()-t));`;
  for (let i = 0; i < runs; i++) {
    for (const [name, file] of Object.entries(files)) {
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script(file)], {
        cwd: tmpdir(),
        env: { ...envs[name], AWS_LAMBDA_FUNCTION_NAME: name, PATH: process.env.PATH ?? '', AWS_REGION: 'eu-west-1' },
      });
      times[name]?.push(Number(stdout));
    }
  }
  const floorBytes = statSync(files[FLOOR] as string).size;
  const floorImport = median(times[FLOOR] as number[]);
  const rows = Object.entries(files).map(([name, file]) => {
    const bytes = statSync(file).size;
    const importMs = median(times[name] as number[]);
    return {
      function: name,
      bytes,
      importMsMedian: round(importMs, 1),
      bytesRatioToSdkFloor: round(bytes / floorBytes),
      importRatioToSdkFloor: round(importMs / floorImport),
    };
  });
  results.bundles = {
    runsPerBundle: runs,
    floor: { bytes: floorBytes, importMsMedian: round(floorImport, 1) },
    functions: rows,
  };
  console.log(`\n1. Bundles and cold start (median import of ${runs} fresh processes each)`);
  console.table(rows);
}

// ---------- 2. per-call overhead ----------

/** Logs as in production (level info, every line built and redacted), sent nowhere instead of to stdout. */
async function quietLogs() {
  const { setLogLevel, setLogSink } = await import('#shared/observability/log.ts');
  setLogLevel('info');
  setLogSink(() => {});
}

async function overhead() {
  const { GoCardlessSimulator, GOCARDLESS_DEMO } = await import('#local/simulators/gocardless.ts');
  const { handler } = await import('#functions/cancel-billing-request/handler.ts');
  const { setDefaultDeps } = await import('#shared/core/cancel.ts');
  const { HttpClient } = await import('#shared/http/client.ts');
  const { MemoryLedger } = await import('#shared/core/ledger.ts');
  const { SecretStore, StaticSecretSource } = await import('#shared/aws/secrets.ts');
  const { lambdaContext } = await import('#local/lambda-events.ts');
  await quietLogs();
  process.env.GOCARDLESS_RATE_PER_SECOND = '1000000';
  (await import('#shared/config.ts')).reloadConfig();
  const sim = new GoCardlessSimulator({ rateLimit: 10_000_000 });
  await sim.start();
  setDefaultDeps({
    http: new HttpClient(),
    ledger: new MemoryLedger(),
    secrets: new SecretStore(new StaticSecretSource({ gocardless: sim.demoSecret() })),
  });
  const agent = new http.Agent({ keepAlive: true });
  const url = new URL(sim.url);
  const raw = (id: string) =>
    new Promise<void>((resolve, reject) => {
      const body = JSON.stringify({ data: {} });
      const req = http.request(
        {
          host: url.hostname,
          port: url.port,
          method: 'POST',
          path: `/billing_requests/${id}/actions/cancel`,
          agent,
          headers: {
            authorization: `Bearer ${GOCARDLESS_DEMO.accessToken}`,
            'gocardless-version': '2015-07-06',
            accept: 'application/json',
            'content-type': 'application/json',
            'idempotency-key': `raw-${id}`,
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          res.resume();
          res.on('end', resolve);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  // GoCardless's own Node client, bare: `billingRequests.cancel` and nothing else. It has no base-URL option; the one
  // private field holding its URL (`_api._baseUrl`, got's prefixUrl) is pointed at the same simulator.
  const { GoCardlessClient, Environments } = await import('gocardless-nodejs');
  const official = new GoCardlessClient(GOCARDLESS_DEMO.accessToken, Environments.Sandbox, {});
  (official as unknown as { _api: { _baseUrl: string } })._api._baseUrl = sim.url;
  const viaOfficialClient = async (id: string) => {
    const br = await official.billingRequests.cancel(id, {});
    if (br.status !== 'cancelled') throw new Error(`unexpected ${br.status}`);
  };
  const viaHandler = async (id: string) => {
    const out = (await handler(
      { item: { provider: 'gocardless', billingRequestId: id }, idempotencyKey: `bench-${id}` } as never,
      lambdaContext('bench'),
    )) as { outcome: string };
    if (out.outcome !== 'canceled') throw new Error(`unexpected ${out.outcome}`);
  };
  const n = QUICK ? 500 : 3000;
  const rounds = QUICK ? 3 : 7;
  const rawTimes: number[] = [];
  const handlerTimes: number[] = [];
  const officialTimes: number[] = [];
  const ratios: number[] = [];
  const officialRatios: number[] = [];
  let seq = 0;
  const measure = async (fn: (id: string) => Promise<void>, into: number[]) => {
    const ids = Array.from({ length: n }, () => `BRQBENCH${++seq}`);
    for (const id of ids) sim.add(id, 'pending');
    const times: number[] = [];
    for (const id of ids) {
      const t = process.hrtime.bigint();
      await fn(id);
      times.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    into.push(...times);
    return median(times);
  };
  await measure(viaHandler, []); // warm up every path
  await measure(raw, []);
  await measure(viaOfficialClient, []);
  // Interleaved rounds: the three paths share the process, the simulator and whatever load the machine has.
  for (let r = 0; r < rounds; r++) {
    const rawMedian = await measure(raw, rawTimes);
    const handlerMedian = await measure(viaHandler, handlerTimes);
    const officialMedian = await measure(viaOfficialClient, officialTimes);
    ratios.push(handlerMedian / rawMedian);
    officialRatios.push(handlerMedian / officialMedian);
  }
  await sim.stop();
  agent.destroy();
  const row = {
    rawMsMedian: round(median(rawTimes)),
    rawMsP99: round(percentile(rawTimes, 99)),
    handlerMsMedian: round(median(handlerTimes)),
    handlerMsP99: round(percentile(handlerTimes, 99)),
    overheadMsMedian: round(median(handlerTimes) - median(rawTimes)),
    overheadRatio: round(median(ratios)),
    // Our whole warm handler (validation, idempotency, ledger, logs) against GoCardless's bare Node client.
    officialClientMsMedian: round(median(officialTimes)),
    ratioToOfficialClient: round(median(officialRatios)),
    calls: rawTimes.length,
  };
  results.overhead = row;
  console.log(
    `\n2. Per-call overhead: a warm handler vs a raw request and vs gocardless-nodejs's billingRequests.cancel, same simulator endpoint (${rounds} interleaved rounds of ${n})`,
  );
  console.table([row]);
}

// ---------- 3. batch throughput ----------

/** The four simulators with each provider's limit (documented for Truework and GoCardless; ours for the others),
 * time sped up SCALE times for every provider alike, and the secrets that reach them. */
async function limitedSimulators() {
  const { RemoteSimulator } = await import('./remote-simulators.ts');
  const { MYCREDITAPP_DEMO } = await import('#local/simulators/mycreditapp.ts');
  const { PROVIDER_LIMITS } = await import('#shared/providers/index.ts');
  // Each in a process of its own: when a request arrives is what the provider sees, not delayed by this process.
  const [gocardless, truework, auco, mycreditapp] = await Promise.all([
    RemoteSimulator.start('gocardless', {
      timeScale: SCALE,
      rateLimit: PROVIDER_LIMITS.gocardless * 60,
      windowMs: 60_000,
    }),
    RemoteSimulator.start('truework', {
      timeScale: SCALE,
      ratePerSecond: PROVIDER_LIMITS.truework,
      burst: PROVIDER_LIMITS.truework,
    }),
    RemoteSimulator.start('auco', { timeScale: SCALE, ratePerSecond: PROVIDER_LIMITS.auco }),
    RemoteSimulator.start('mycreditapp', { timeScale: SCALE, ratePerSecond: PROVIDER_LIMITS.mycreditapp }),
  ]);
  const sims = { gocardless: gocardless!, truework: truework!, auco: auco!, mycreditapp: mycreditapp! };
  const secrets = {
    ...Object.fromEntries(Object.entries(sims).map(([p, sim]) => [p, sim.demoSecret()])),
    // As measured: Truework's answers not signature-checked; the guard's organization from the secret.
    truework: { ...sims.truework.demoSecret(), publicKeys: undefined },
    mycreditapp: { ...sims.mycreditapp.demoSecret(), organizationId: MYCREDITAPP_DEMO.hostOrg },
  };
  return { sims, secrets, limits: PROVIDER_LIMITS, D: MYCREDITAPP_DEMO };
}

let documentRequests = 0;
/** What mixedItems seeds at each simulator (in this process or in a process of its own). */
interface Seedable {
  gocardless: { add(id: string, status: 'pending'): void };
  truework: { add(id: string, states: 'processing'[]): void };
  auco: { add(code: string, status: 'CREATED'): void };
  mycreditapp: { addDocumentRequest(id: string, status: 'pending'): void };
}

/** A mixed item list (round robin over the providers), each item seeded at its simulator. */
function mixedItems(sims: Seedable, D: { hostOrg: string; guestOrg: string }, count: number, prefix: string) {
  const list: Record<string, unknown>[] = [];
  const perProvider = { gocardless: 0, truework: 0, auco: 0, mycreditapp: 0 };
  for (let i = 0; i < count; i++) {
    const id = `${prefix}${String(i).padStart(6, '0')}`;
    const p = (['gocardless', 'truework', 'auco', 'mycreditapp'] as const)[i % 4] as keyof typeof perProvider;
    perProvider[p]++;
    if (p === 'gocardless') {
      sims.gocardless.add(`BRQ${id}`, 'pending');
      list.push({ provider: 'gocardless', billingRequestId: `BRQ${id}` });
    } else if (p === 'truework') {
      sims.truework.add(`ORD${id}`, ['processing']);
      list.push({ provider: 'truework', orderId: `ORD${id}` });
    } else if (p === 'auco') {
      sims.auco.add(`AU${id}`, 'CREATED');
      list.push({ provider: 'auco', code: `AU${id}` });
    } else {
      const rid = `00000000-0000-4000-8000-${String(++documentRequests).padStart(12, '0')}`;
      sims.mycreditapp.addDocumentRequest(rid, 'pending');
      list.push({
        provider: 'mycreditapp',
        orgId: D.hostOrg,
        requestId: rid,
        requesterOrganizationId: D.hostOrg,
        targetOrganizationId: D.guestOrg,
      });
    }
  }
  return { list, perProvider };
}

/** The part of the machine's work a process of this run is: the twin's own process (its containers' threads, the
 * state-machine runner, the API), DynamoDB (dynalite), the provider simulators, esbuild. */
function partOf(pid: number): string {
  if (pid === process.pid) return 'twin';
  let command = '';
  try {
    command = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    // gone since the listing
  }
  if (command.includes('dynamodb-process')) return 'dynamodb';
  if (command.includes('simulator-process')) return 'simulators';
  if (command.includes('esbuild')) return 'bundling';
  return 'other';
}

/** CPU seconds this process (every thread: the twin's containers, its runner) and its descendants (DynamoDB, the
 * simulators) have used, by part (`partOf`), from /proc; this process alone where there is no /proc. */
function treeCpuSeconds(): Record<string, number> {
  const self = process.cpuUsage();
  if (!existsSync('/proc/self/stat')) return { twin: (self.user + self.system) / 1e6 };
  const tick = 100; // USER_HZ: 100 on every Linux the kernel exports to user space
  const parents = new Map<number, number>();
  const ticks = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parents.set(Number(entry), Number(fields[1]));
      ticks.set(Number(entry), Number(fields[11]) + Number(fields[12]));
    } catch {
      // gone since the listing
    }
  }
  const tree = new Set([process.pid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, parent] of parents)
      if (!tree.has(pid) && tree.has(parent)) {
        tree.add(pid);
        grew = true;
      }
  }
  const parts: Record<string, number> = {};
  for (const pid of tree) {
    const part = partOf(pid);
    parts[part] = (parts[part] ?? 0) + (ticks.get(pid) ?? 0) / tick;
  }
  return parts;
}

/**
 * What the run cost this machine: CPU seconds over the clock, and the best boundRatio its cores could reach were every
 * one busy the whole run (`cpuFloorRatio` = CPU seconds / cores / bound). A goal below it cannot be met on this
 * machine at this time scale, however the twin schedules its work. `cpuSecondsBy` splits the seconds by part
 * (`partOf`; the twin's containers alone are `twinCpu`, so the runner and the API are the twin's seconds less them).
 */
function cpuMeter() {
  const start = treeCpuSeconds();
  return (boundSeconds: number) => {
    const end = treeCpuSeconds();
    const by = Object.fromEntries(
      Object.entries(end)
        .map(([part, seconds]) => [part, round(seconds - (start[part] ?? 0), 1)] as const)
        .filter(([, seconds]) => seconds > 0),
    );
    const cpuSeconds = Object.values(end).reduce((a, b) => a + b, 0) - Object.values(start).reduce((a, b) => a + b, 0);
    return {
      cpuSeconds: round(cpuSeconds, 1),
      cpuSecondsBy: by,
      cores: availableParallelism(),
      cpuFloorRatio: round(cpuSeconds / availableParallelism() / boundSeconds),
    };
  };
}

/** Samples this process's RSS (worker-thread containers included) until stopped. `memoryUsage.rss()`, not
 * `memoryUsage()`, which also gathers the heap's statistics: 0.8 CPU seconds in a profiled quick storm. */
function rssSampler() {
  const baseline = process.memoryUsage.rss();
  let peak = baseline;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 50);
  return {
    baselineMb: round(baseline / 1024 / 1024, 0),
    stop: () => {
      clearInterval(timer);
      return round(peak / 1024 / 1024, 0);
    },
  };
}

/** The bench's POST of JSON to the local API: node:http on a keep-alive agent, `{status: 0}` when no answer came.
 * Not fetch: for the storm's API callers it cost this process (the twin's) about 0.17 ms more CPU a request (3,000
 * requests to a local server, four rounds: 231-446 µs a request against 65-128, both ends counted), some 8,000
 * requests a storm, taken from the system the storm measures. */
const callerAgent = new http.Agent({ keepAlive: true });
function postJson(
  url: string,
  body: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve) => {
    const none = () => resolve({ status: 0, body: {} });
    const req = http.request(
      url,
      {
        method: 'POST',
        agent: callerAgent,
        headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', none);
        res.on('end', () => {
          let parsed: Record<string, unknown> = {};
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
          } catch {}
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on('error', none);
    req.end(body);
  });
}

/** POST /v1/batches through the local API of this cloud, as a caller would (the batches function in its own
 * container, with this cloud's endpoints): the batch id. */
async function postBatch(
  cloud: { functions: Record<string, unknown> },
  body: Record<string, unknown>,
): Promise<string> {
  const { LocalApi } = await import('#local/api.ts');
  const api = new LocalApi({ functions: cloud.functions as never, openapi: () => ({}) });
  await api.listen(0);
  try {
    const { status, body: answer } = await postJson(`${api.url}/v1/batches`, JSON.stringify(body), {});
    if (typeof answer.batchId !== 'string')
      throw new Error(`the batch did not start (HTTP ${status}): ${JSON.stringify(answer)}`);
    return answer.batchId;
  } finally {
    await api.close();
  }
}

/**
 * When each provider saw its first and its last request, in seconds from the start: a run's time split into getting
 * going (cold starts, Prepare), each provider's own pace, and the tail (Summarize). And `budgetUse`: its requests in
 * each wall second of the run over its budget for a second (limit × RATE_MARGIN, scaled): 1 is the budget kept full,
 * so the series shows how long the ramp took and how full the budget was kept after it.
 */
function requestSpans(
  received: Record<string, readonly { at: number }[]>,
  started: number,
  budgetPerSecond: Record<string, number>,
): Record<string, { firstS: number; lastS: number; budgetUse: number[] }> {
  return Object.fromEntries(
    Object.entries(received).map(([p, list]) => {
      const at = list.map((r) => r.at - started);
      const bySecond = new Array<number>(Math.floor(Math.max(0, ...at) / 1000) + 1).fill(0);
      for (const t of at) {
        const second = Math.floor(Math.max(0, t) / 1000);
        bySecond[second] = (bySecond[second] ?? 0) + 1;
      }
      const budget = budgetPerSecond[p] ?? 1;
      return [
        p,
        {
          firstS: round(Math.min(...at) / 1000, 2),
          lastS: round(Math.max(...at) / 1000, 2),
          budgetUse: bySecond.map((n) => round(n / budget, 2)),
        },
      ];
    }),
  );
}

/** `budgetUse` of each provider, a line each: how its budget filled, second by second. */
function printSpans(spans: ReturnType<typeof requestSpans>) {
  console.log('Budget use by second (requests ÷ (limit × RATE_MARGIN), time scaled):');
  for (const [p, s] of Object.entries(spans))
    console.log(`  ${p.padEnd(12)} ${s.budgetUse.map((u) => u.toFixed(2).replace(/^0/, '')).join(' ')}`);
}

/** Each provider's budget in requests a (wall) second at this time scale: its limit × RATE_MARGIN × SCALE. */
const budgets = (limits: Record<string, number>) =>
  Object.fromEntries(Object.entries(limits).map(([p, perSecond]) => [p, perSecond * RATE_MARGIN * SCALE]));

/** The twin's own CPU per function that ran (its containers' threads): what a time-scaled run asks of this machine. */
async function twinCpu(lambda: { cpu(): Promise<Record<string, { containers: number; totalMs: number }>> }) {
  return Object.fromEntries(Object.entries(await lambda.cpu()).filter(([, c]) => c.containers > 0));
}

/** Prints a run's table row without its CPU split, then the split as a line: the twin's seconds parted into its
 * containers and the rest of its process (the state-machine runner, the API), then the other processes. */
function printRow(row: { cpuSecondsBy: Record<string, number> }, twin: Record<string, { totalMs: number }>): void {
  const { cpuSecondsBy: by, ...shown } = row;
  const containers = Object.values(twin).reduce((sum, c) => sum + c.totalMs, 0) / 1000;
  const parts = {
    'Lambda containers': containers,
    'runner and API': (by.twin ?? 0) - containers,
    DynamoDB: by.dynamodb ?? 0,
    simulators: by.simulators ?? 0,
    esbuild: by.bundling ?? 0,
    other: by.other ?? 0,
  };
  const line = Object.entries(parts)
    .filter(([, seconds]) => seconds > 0.05)
    .map(([part, seconds]) => `${part} ${seconds.toFixed(1)}`)
    .join(', ');
  console.table([shown]);
  console.log(`CPU seconds by part: ${line}`);
}

async function throughput() {
  const { startLocalCloud } = await import('#local/cloud.ts');
  const { DEFAULT_MAX_CODES_PER_CALL: AUCO_CHUNK } = await import('#shared/providers/auco/adapter.ts');
  await quietLogs();
  const items = QUICK ? 2_000 : 10_000;
  const { sims, secrets, limits, D } = await limitedSimulators();
  const cloud = await startLocalCloud({
    secrets,
    timeScale: SCALE,
    nice: NICE,
    env: { LOG_LEVEL: 'warn', METRICS_NAMESPACE: '' },
  });
  // Deployed before the clock starts, as the stack's bundles are before its first invocation (no container starts).
  await cloud.lambda.deploy();
  const { list, perProvider } = mixedItems(sims, D, items, 'T');
  // Requests each provider needs, and the time its (scaled) limit allows for them: the slowest is the bound.
  const requests = {
    gocardless: perProvider.gocardless,
    truework: perProvider.truework,
    auco: Math.ceil(perProvider.auco / AUCO_CHUNK),
    mycreditapp: perProvider.mycreditapp + 1,
  };
  const bounds = Object.fromEntries(
    Object.entries(requests).map(([p, r]) => [p, r / (limits[p as keyof typeof limits] * SCALE)]),
  );
  const bound = Math.max(...Object.values(bounds));
  await Promise.all(Object.values(sims).map((sim) => sim.flush()));
  const rss = rssSampler();
  const cpu = cpuMeter();
  const started = Date.now();
  const batchId = await postBatch(cloud, { reason: 'bench', requestedBy: 'ops@example.com', items: list });
  const execution = [...cloud.stepFunctions.executions.values()].find((e) => e.name === batchId);
  await execution?.done;
  const seconds = (Date.now() - started) / 1000;
  const peakMb = rss.stop();
  const output = JSON.parse(execution?.output ?? '{}') as {
    summary?: { lost: number; byOutcome: Record<string, number> };
  };
  const byProvider = Object.fromEntries(
    await Promise.all(Object.entries(sims).map(async ([p, sim]) => [p, await sim.requests()] as const)),
  );
  const received = Object.values(byProvider).flat();
  const sent = received.length;
  const limited = received.filter((r) => r.status === 429).length;
  const row = {
    items,
    scale: SCALE,
    seconds: round(seconds, 2),
    boundSeconds: round(bound, 2),
    boundRatio: round(seconds / bound),
    ...cpu(bound),
    requests: sent,
    http429: limited,
    http429Percent: round((100 * limited) / sent, 2),
    lost: output.summary?.lost ?? -1,
    canceled: output.summary?.byOutcome.canceled ?? 0,
    baselineRssMb: rss.baselineMb,
    peakRssMb: peakMb,
    executionStatus: execution?.status,
  };
  const twin = await twinCpu(cloud.lambda);
  const spans = requestSpans(byProvider, started, budgets(limits));
  results[scaled('throughput')] = {
    ...row,
    boundByProvider: Object.fromEntries(Object.entries(bounds).map(([p, b]) => [p, round(b, 2)])),
    requestSpans: spans,
    twinCpu: twin,
    stats: execution?.stats,
  };
  console.log(`\n3. Batch throughput: ${items} mixed items, rate limits on, time scaled ${SCALE}x`);
  printRow(row, twin);
  printSpans(spans);
  await cloud.stop();
  await Promise.all(Object.values(sims).map((s) => s.stop()));
  return execution?.stats;
}

// ---------- 3b. one warm container ----------

/**
 * One provider function's container alone: a batch task at a time, in sequence, through the same twin as the
 * throughput bench (its own worker thread, DynamoDB and the simulator in processes of their own), with the
 * simulator's limit and the pacing out of the way (time scaled 1,000x). Its CPU per invocation, by 250s, is what a
 * warm container costs without 26 others beside it: the throughput bench's `twinCpu` is the same figure in the run.
 */
async function container() {
  const { startLocalCloud } = await import('#local/cloud.ts');
  const { RemoteSimulator } = await import('./remote-simulators.ts');
  await quietLogs();
  const invocations = QUICK ? 500 : 1_000;
  const step = 250;
  const rows = [];
  for (const [provider, fn] of [
    ['gocardless', 'cancel-billing-request'],
    ['truework', 'cancel-verification-order'],
  ] as const) {
    const sim = await RemoteSimulator.start(provider, {
      timeScale: 1000,
      ...(provider === 'gocardless' ? { rateLimit: 1e9, windowMs: 60_000 } : { ratePerSecond: 1e6, burst: 1e6 }),
    });
    const ids = Array.from({ length: invocations + 1 }, (_, i) =>
      provider === 'gocardless' ? `BRQW${String(i).padStart(6, '0')}` : `ORDW${String(i).padStart(6, '0')}`,
    );
    for (const id of ids) provider === 'gocardless' ? sim.add(id, 'pending') : sim.add(id, ['processing']);
    await sim.flush();
    const item = (id: string) =>
      provider === 'gocardless' ? { provider, billingRequestId: id } : { provider, orderId: id };
    // The task event a batch gives the function, taken from a one-item batch (a cold start and its first call).
    let task: { item: unknown; index: number; idempotencyKey: string } | undefined;
    const cloud = await startLocalCloud({
      secrets: {
        [provider]: provider === 'truework' ? { ...sim.demoSecret(), publicKeys: undefined } : sim.demoSecret(),
      },
      timeScale: 1000,
      reserved: { [fn]: 1 },
      env: { LOG_LEVEL: 'warn', METRICS_NAMESPACE: '' },
      intercept: (name, event, call) => {
        if (name === fn) task = event as typeof task;
        return call();
      },
    });
    await cloud.lambda.deploy();
    const batchId = await postBatch(cloud, { reason: 'bench', items: [item(ids[0] as string)] });
    await [...cloud.stepFunctions.executions.values()].find((e) => e.name === batchId)?.done;
    if (!task) throw new Error(`the batch did not invoke ${fn}`);
    const cpuMs = async () => {
      const c = (await cloud.lambda.cpu())[fn];
      if (!c) throw new Error(`no CPU figures for ${fn}`);
      return { init: c.initMs, total: c.totalMs };
    };
    const first = await cpuMs();
    const byStep: number[] = [];
    let before = first.total;
    for (let i = 1; i <= invocations; i++) {
      const out = (await cloud.lambda.invoke(fn, {
        ...task,
        item: item(ids[i] as string),
        index: i,
        idempotencyKey: `${task.idempotencyKey}-${i}`,
      })) as { outcome?: { outcome?: string } };
      if (out.outcome?.outcome !== 'canceled') throw new Error(`${fn}: ${JSON.stringify(out)}`);
      if (i % step === 0) {
        const { total } = await cpuMs();
        byStep.push(round((total - before) / step, 2));
        before = total;
      }
    }
    rows.push({
      function: fn,
      initMs: first.init,
      firstInvocationMs: round(first.total - first.init, 1),
      perInvocationMs: byStep,
    });
    await cloud.stop();
    await sim.stop();
  }
  const dynamoCall = await dynamoCallCpu(QUICK ? 1_000 : 3_000);
  results.container = { invocations, perInvocationMsEvery: step, rows, dynamoCall };
  console.log(`\n3b. One warm container alone: ${invocations} batch tasks in sequence, CPU per invocation by ${step}s`);
  console.table(rows.map((row) => ({ ...row, perInvocationMs: row.perInvocationMs.join(', ') })));
  console.table([dynamoCall]);
}

/** This thread's CPU for one DynamoDB GetItem (a circuit's read) to the local DynamoDB: through the functions' client
 * (signed, through the HTTP client) and as a bare keep-alive node:http request of the same shape, interleaved,
 * medians of 5 rounds. */
async function dynamoCallCpu(calls: number) {
  const { startLocalDynamo } = await import('#local/aws/dynamodb.ts');
  const { DynamoDb } = await import('#shared/aws/dynamodb.ts');
  const { CIRCUIT_TABLE } = await import('#shared/aws/tables.ts');
  process.env.AWS_ACCESS_KEY_ID ??= 'AKIALOCALLOCALLOCAL0';
  process.env.AWS_SECRET_ACCESS_KEY ??= 'local-secret-access-key';
  process.env.AWS_REGION ??= 'us-east-1';
  // The read every batch task makes: its provider's circuit, on the table startLocalDynamo created (and waited for).
  const dynamo = await startLocalDynamo({});
  const db = new DynamoDb({ endpoint: dynamo.url });
  const input = {
    TableName: dynamo.tables.circuits,
    Key: { [CIRCUIT_TABLE.partitionKey]: { S: 'gocardless' } },
    ConsistentRead: true,
  };
  const url = new URL(dynamo.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const body = JSON.stringify(input);
  const headers = {
    'content-type': 'application/x-amz-json-1.0',
    'x-amz-target': 'DynamoDB_20120810.GetItem',
    'content-length': String(body.length),
    // Shaped as the client's (dynalite checks that a request is signed, not the signature): both get the same answer.
    'x-amz-date': '20261201T000000Z',
    authorization: `AWS4-HMAC-SHA256 Credential=${process.env.AWS_ACCESS_KEY_ID}/20261201/us-east-1/dynamodb/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=${'0'.repeat(64)}`,
  };
  const bare = () =>
    new Promise<void>((resolve, reject) => {
      const req = http.request(
        { host: url.hostname, port: url.port, method: 'POST', path: '/', agent, headers },
        (res) => res.resume().on('end', resolve),
      );
      req.on('error', reject);
      req.end(body);
    });
  const threadCpuUs = () => {
    const u = process.threadCpuUsage();
    return u.user + u.system;
  };
  const ours: number[] = [];
  const raw: number[] = [];
  for (let round = 0; round < 5; round++) {
    let c = threadCpuUs();
    for (let i = 0; i < calls; i++) await db.call('GetItem', input);
    ours.push((threadCpuUs() - c) / calls);
    c = threadCpuUs();
    for (let i = 0; i < calls; i++) await bare();
    raw.push((threadCpuUs() - c) / calls);
  }
  agent.destroy();
  await dynamo.stop();
  return { calls, clientCpuUs: round(median(ours), 0), bareHttpCpuUs: round(median(raw), 0) };
}

// ---------- 5. storm ----------

/** The highest count of `times` in any window of `windowMs` (a sliding window over sorted times). */
function peakInWindow(times: number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let peak = 0;
  for (let i = 0, j = 0; j < sorted.length; j++) {
    while ((sorted[j] as number) - (sorted[i] as number) >= windowMs) i++;
    peak = Math.max(peak, j - i + 1);
  }
  return peak;
}

/**
 * How close a provider came to its limit, in real (unscaled) milliseconds: the shortest time any limit + 1
 * consecutive arrivals took, less the window. Negative: limit + 1 arrived within one window (a peak over 1.0).
 * Paced at 95 % of the limit it is at most the window's slack (52.6 ms at 10/s); what is left of it shows how much
 * delay on the way to the provider the pacing could still absorb, a finer figure than the peak, which only says
 * whether it was all spent.
 */
function windowHeadroomMs(times: number[], limit: number, windowMs: number): number | undefined {
  const sorted = [...times].sort((a, b) => a - b);
  let shortest = Number.POSITIVE_INFINITY;
  for (let i = 0; i + limit < sorted.length; i++)
    shortest = Math.min(shortest, (sorted[i + limit] as number) - (sorted[i] as number));
  return Number.isFinite(shortest) ? round((shortest - windowMs / SCALE) * SCALE, 1) : undefined;
}

/** How many times the storm's API callers retry a busy answer: the CLI's default (`--retries`). */
const API_RETRIES = 5;

/**
 * The worst night: expirations due in the same minute (each guarding a 10-item mixed list), 3 batches of 2,000
 * items started together, and API cancels at 5/s throughout, all against rate-limited simulators, every function
 * in its own containers at its reserved concurrency. Measures whether one budget per provider holds.
 */
async function storm() {
  const { startLocalCloud } = await import('#local/cloud.ts');
  const { LocalApi } = await import('#local/api.ts');
  const { DEFAULT_MAX_CODES_PER_CALL: AUCO_CHUNK } = await import('#shared/providers/auco/adapter.ts');
  await quietLogs();
  const expirations = QUICK ? 50 : 200;
  const batchItems = QUICK ? 500 : 2_000;
  const { sims, secrets, limits, D } = await limitedSimulators();
  const cloud = await startLocalCloud({
    secrets,
    timeScale: SCALE,
    nice: NICE,
    env: { LOG_LEVEL: 'error', METRICS_NAMESPACE: '' },
  });
  await cloud.lambda.deploy();
  const api = new LocalApi({ functions: cloud.functions, openapi: () => ({}) });
  await api.listen(0);
  // Through the local API, as a caller would: each POST runs in its function's own container.
  const post = async (path: string, body: unknown) =>
    (await postJson(`${api.url}${path}`, JSON.stringify(body), {})).body;

  // What each provider must receive at least: item cancels (Auco in chunks), one lookup per guard, a token.
  const perProvider = { gocardless: 0, truework: 0, auco: 0, mycreditapp: 0 };
  let aucoCalls = 0;
  const add = (counts: typeof perProvider, aucoGroups: number) => {
    for (const [p, n] of Object.entries(counts)) perProvider[p as keyof typeof perProvider] += n;
    aucoCalls += aucoGroups;
  };
  // Expirations due within the same (scaled) minute, registered ahead as a user would.
  const due = Date.now() + 8_000;
  for (let e = 0; e < expirations; e++) {
    const application = `00000000-0000-4000-9000-${String(e).padStart(12, '0')}`;
    sims.mycreditapp.addCreditApplication(application, 'pending', due + 86_400_000);
    const { list, perProvider: counts } = mixedItems(sims, D, 10, `E${e}x`);
    add(counts, Math.ceil(counts.auco / AUCO_CHUNK));
    const answer = await post('/v1/expirations', {
      creditApplicationId: application,
      reason: 'Credit application expired',
      requestedBy: 'ops@example.com',
      expiresAt: new Date(due + (e % 60) * (1000 / SCALE)).toISOString(),
      items: list,
    });
    if (answer.status !== 'scheduled') throw new Error(`expiration not scheduled: ${JSON.stringify(answer)}`);
  }
  const batchLists = [0, 1, 2].map((b) => mixedItems(sims, D, batchItems, `B${b}x`));
  for (const { perProvider: counts } of batchLists) add(counts, Math.ceil(counts.auco / AUCO_CHUNK));
  const lookups = expirations;
  perProvider.mycreditapp += lookups;

  await Promise.all(
    Object.values(sims).map(async (sim) => {
      await sim.flush();
      await sim.clearRequests();
    }),
  );
  const rss = rssSampler();
  while (Date.now() < due) await new Promise((r) => setTimeout(r, 20));
  const cpu = cpuMeter();
  const started = Date.now();
  const batchIds = await Promise.all(
    batchLists.map(
      async ({ list }, b) =>
        (await post('/v1/batches', { reason: `storm ${b}`, requestedBy: 'ops@example.com', items: list }))
          .batchId as string,
    ),
  );
  // API cancels at 5/s (scaled) until the batches are done: a fresh GoCardless or Truework item each, sent as a
  // caller would, as the CLI does: an answer that says the API is busy (a function at its reserved concurrency) is
  // retried with the same Idempotency-Key, 0.5 s doubling to 8 s (scaled), full jitter, API_RETRIES times.
  let apiStop = false;
  const apiAnswers: { status: number; attempts: number; seconds: number }[] = [];
  const apiCalls: Promise<void>[] = [];
  const apiCancel = async (url: string, body: unknown, key: string) => {
    const began = Date.now();
    for (let attempt = 0; ; attempt++) {
      const answer = await postJson(url, JSON.stringify(body), { 'idempotency-key': key });
      if ((answer.status && !busy(answer)) || attempt >= API_RETRIES) {
        // Real seconds: the wait a caller would see in AWS.
        apiAnswers.push({
          status: answer.status,
          attempts: attempt + 1,
          seconds: ((Date.now() - began) * SCALE) / 1000,
        });
        // Only a cancel that ran sent its provider a request.
        if (answer.status >= 200 && answer.status < 300)
          perProvider[url.includes('/gocardless/') ? 'gocardless' : 'truework']++;
        return;
      }
      await new Promise((r) => setTimeout(r, busyWaitMs(attempt) / SCALE));
    }
  };
  const apiLoop = (async () => {
    for (let n = 0; !apiStop; n++) {
      const next = started + (n * 1000) / (5 * SCALE);
      await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
      const id = `API${String(n).padStart(6, '0')}`;
      const gc = n % 2 === 0;
      if (gc) sims.gocardless.add(`BRQ${id}`, 'pending');
      else sims.truework.add(`ORD${id}`, ['processing']);
      await (gc ? sims.gocardless : sims.truework).flush();
      apiCalls.push(
        apiCancel(
          gc
            ? `${api.url}/v1/gocardless/billing-requests/BRQ${id}/cancel`
            : `${api.url}/v1/truework/orders/ORD${id}/cancel`,
          gc ? {} : { reason: 'other' },
          `storm-${id}`,
        ),
      );
    }
  })();
  // Every execution: the three batches and the expirations the scheduler starts.
  const executionsOf = () => [...cloud.stepFunctions.executions.values()];
  while (
    cloud.scheduler.fired.length < expirations ||
    executionsOf().length < expirations + 3 ||
    executionsOf().some((e) => e.status === 'RUNNING')
  )
    await new Promise((r) => setTimeout(r, 100));
  // The run ends when the batches and every API call, with its retries, are done.
  apiStop = true;
  await apiLoop;
  await Promise.all(apiCalls);
  const seconds = (Date.now() - started) / 1000;
  const peakMb = rss.stop();
  let lost = 0;
  let items = 0;
  const outcomes: Record<string, number> = {};
  for (const e of executionsOf()) {
    const input = JSON.parse(e.input) as { items?: unknown[]; manifest?: unknown };
    const output = JSON.parse(e.output ?? '{}') as {
      status?: string;
      summary?: { total: number; lost: number; byOutcome: Record<string, number> };
    };
    const total = output.summary?.total ?? input.items?.length ?? batchItems;
    items += total;
    if (e.status !== 'SUCCEEDED' || !output.summary) lost += total;
    else lost += output.summary.lost;
    for (const [o, n] of Object.entries(output.summary?.byOutcome ?? {})) outcomes[o] = (outcomes[o] ?? 0) + n;
  }
  const failures = executionsOf().filter((e) => e.status !== 'SUCCEEDED');
  for (const e of failures.slice(0, 3))
    console.error(`execution ${e.name} ${e.status}: ${e.error}: ${e.cause?.slice(0, 400)}`);
  const ran = apiAnswers.filter((a) => a.status >= 200 && a.status < 300);
  const apiSeconds = ran.map((a) => a.seconds).sort((a, b) => a - b);
  const received = Object.fromEntries(
    await Promise.all(Object.entries(sims).map(async ([p, sim]) => [p, await sim.requests()] as const)),
  );
  const requests = Object.values(received).reduce((n, r) => n + r.length, 0);
  const limited = Object.values(received).reduce((n, r) => n + r.filter((x) => x.status === 429).length, 0);
  // Each provider's arrivals against its limit, over the window it counts in (1 s; 60 s for GoCardless).
  const windows = Object.entries(received).map(([p, list]) => {
    const windowS = LIMIT_WINDOW_SECONDS[p as keyof typeof LIMIT_WINDOW_SECONDS];
    const limit = limits[p as keyof typeof limits] * windowS;
    const at = list.map((r) => r.at);
    const peak = round(peakInWindow(at, (windowS * 1000) / SCALE) / limit, 3);
    return [p, { peak, headroom: windowHeadroomMs(at, Math.round(limit), windowS * 1000) }] as const;
  });
  const peakRatio = Object.fromEntries(windows.map(([p, w]) => [p, w.peak]));
  const headroom = Object.fromEntries(windows.map(([p, w]) => [p, w.headroom]));
  const bounds = Object.fromEntries(
    Object.entries(perProvider).map(([p, n]) => {
      const r = p === 'auco' ? aucoCalls : p === 'mycreditapp' ? n + 1 : n;
      return [p, r / (limits[p as keyof typeof limits] * SCALE)];
    }),
  );
  const bound = Math.max(...Object.values(bounds));
  const lambda = Object.fromEntries(cloud.lambda.functionNames.map((name) => [name, cloud.lambda.stats(name)]));
  const row = {
    scale: SCALE,
    executions: executionsOf().length,
    items: items + apiAnswers.length,
    apiCalls: apiAnswers.length,
    apiRetries: apiAnswers.reduce((n, a) => n + a.attempts - 1, 0),
    // Still busy after the caller's retries, or any other answer than a 2xx: the caller was told, nothing was done.
    apiNot2xx: apiAnswers.length - ran.length,
    apiSecondsP50: round(apiSeconds[Math.floor(apiSeconds.length / 2)] ?? 0, 2),
    apiSecondsP99: round(apiSeconds[Math.floor(apiSeconds.length * 0.99)] ?? 0, 2),
    lost,
    seconds: round(seconds, 2),
    boundSeconds: round(bound, 2),
    boundRatio: round(seconds / bound),
    ...cpu(bound),
    requests,
    http429Percent: round((100 * limited) / requests, 2),
    peakRateRatio: round(Math.max(...Object.values(peakRatio)), 3),
    baselineRssMb: rss.baselineMb,
    peakRssMb: peakMb,
  };
  const twin = await twinCpu(cloud.lambda);
  const spans = requestSpans(received, started, budgets(limits));
  results[scaled('storm')] = {
    ...row,
    peakRateRatioByProvider: peakRatio,
    windowHeadroomMsByProvider: headroom,
    // The longest history of any execution (Standard workflows fail at 25,000 events; the twin too).
    historyEventsMax: Math.max(...executionsOf().map((e) => e.stats.historyEvents)),
    // The largest state payload any execution passed (Step Functions fails one over 256 KiB; the twin too).
    payloadBytesMax: Math.max(...executionsOf().map((e) => e.stats.payloadBytesMax)),
    boundByProvider: Object.fromEntries(Object.entries(bounds).map(([p, b]) => [p, round(b, 2)])),
    outcomes,
    lambda,
    requestSpans: spans,
    twinCpu: twin,
    batchIds,
  };
  console.log(
    `\n5. Storm: ${expirations} expirations due in the same minute, 3 batches of ${batchItems}, API cancels at 5/s; time scaled ${SCALE}x`,
  );
  printRow(row, twin);
  printSpans(spans);
  console.table(Object.entries(lambda).map(([fn, s]) => ({ function: fn, ...s })));
  await api.close();
  await cloud.stop();
  await Promise.all(Object.values(sims).map((s) => s.stop()));
}

// ---------- 4. cost ----------

async function cost(manifestStats?: {
  transitions: number;
  childExecutions: number;
  childTransitions: number;
  retries: number;
}) {
  const { batchStateMachine } = await import('#local/asl.ts');
  const { ITEMS_PER_CHILD } = await import('#infra/batch-state-machine.ts');
  const { batchConcurrency } = await import('#infra/budget.ts');
  const { DEFAULT_RATE_PER_SECOND } = await import('#shared/providers/index.ts');
  // From the definition: an inline item enters its Cancel task (1), and its Caught state only when it fails;
  // the execution itself enters Prepare, HasGuard, Mode, FanOutInline, 4 maps, Summarize, Waiting and Done (one
  // round: a batch that waits for a provider enters NextRound, Mode, the fan-out and Summarize again per round).
  const { definition } = batchStateMachine();
  const fixedInline = 1 + 1 + 1 + 1 + 4 + 1 + 2;
  const perItemInline = 1;
  // A Distributed Map child is charged as one transition in the parent; Express children are charged per request
  // and duration instead of per transition.
  const fixedManifest = 1 + 1 + 1 + 1 + 4 * 2 + 1 + 2;
  const PRICE = {
    standardPerTransition: 0.025 / 1000,
    expressPerRequest: 1 / 1_000_000,
    expressPerGbSecond: 0.00001667,
    expressGb: 64 / 1024,
  };
  const items = 10_000;
  const children = Math.ceil(items / ITEMS_PER_CHILD);
  // Express duration: a child takes its items one after another, each at its function's pace (rate / concurrency).
  const childSeconds = (['mycreditapp', 'auco', 'truework', 'gocardless'] as const).reduce((s, p) => {
    const n = p === 'auco' ? items / 4 / DEFAULT_MAX_CODES_PER_CALL : items / 4;
    return s + (n * batchConcurrency(p)) / DEFAULT_RATE_PER_SECOND[p];
  }, 0);
  const inlineTransitions = fixedInline + perItemInline * items;
  const standardChildTransitions = children * (1 + ITEMS_PER_CHILD * perItemInline);
  const rows = [
    {
      path: 'inline (Standard)',
      transitionsPerItem: round(inlineTransitions / items, 4),
      usdPer10kItems: round(inlineTransitions * PRICE.standardPerTransition, 4),
    },
    {
      path: 'Distributed Map, Express children',
      transitionsPerItem: round((fixedManifest + children) / items, 4),
      usdPer10kItems: round(
        (fixedManifest + children) * PRICE.standardPerTransition +
          children * PRICE.expressPerRequest +
          childSeconds * PRICE.expressGb * PRICE.expressPerGbSecond,
        4,
      ),
    },
    {
      path: 'Distributed Map, Standard children (not used)',
      transitionsPerItem: round((fixedManifest + children + standardChildTransitions) / items, 4),
      usdPer10kItems: round((fixedManifest + children + standardChildTransitions) * PRICE.standardPerTransition, 4),
    },
  ];
  const measured = manifestStats
    ? {
        parentTransitions: manifestStats.transitions,
        childExecutions: manifestStats.childExecutions,
        childTransitions: manifestStats.childTransitions,
        retries: manifestStats.retries,
        parentTransitionsPerItem: round(
          (manifestStats.transitions + manifestStats.childExecutions) / (QUICK ? 2_000 : 10_000),
          4,
        ),
      }
    : undefined;
  results.cost = {
    prices: PRICE,
    fromDefinition: rows,
    fromLocalRun: measured,
    states: Object.keys(definition.States).length,
    note: 'Lambda invocations are not included.',
  };
  console.log('\n4. Cost per 10,000 items at list prices (state machine only; Lambda not included)');
  console.table(rows);
  if (measured) console.table([measured]);
}

// ---------- 5. outage ----------

/**
 * One provider (GoCardless) answers 503 or resets the connection on every request for 30 scaled minutes, starting
 * when half of its items are cancelled, in a 2,000-item mixed batch (the manifest path). Everything that waits is
 * scaled alike: the rounds' waits, the circuit's probe interval, Step Functions' retry intervals, the HTTP
 * client's backoff, the simulators' rate limits and the deadline (24 h). Reports the items lost and failed (goal
 * 0), the requests that reached the provider per scaled minute of the outage (goal at most 6), and the scaled
 * seconds from its recovery to the batch's end.
 */
async function outage() {
  const scale = Number(args.get('outage-scale') ?? 60);
  const { startLocalCloud } = await import('#local/cloud.ts');
  const { GoCardlessSimulator } = await import('#local/simulators/gocardless.ts');
  const { TrueworkSimulator } = await import('#local/simulators/truework.ts');
  const { AucoSimulator } = await import('#local/simulators/auco.ts');
  const { MyCreditAppSimulator, MYCREDITAPP_DEMO: D } = await import('#local/simulators/mycreditapp.ts');
  const { PROVIDER_LIMITS } = await import('#shared/providers/index.ts');
  await quietLogs();
  const runs = QUICK ? 1 : 3;
  const items = 2_000;
  const outageMinutes = 30;
  const rows: Record<string, number | string | undefined>[] = [];
  for (let run = 0; run < runs; run++) {
    const sims = {
      gocardless: new GoCardlessSimulator({
        timeScale: scale,
        rateLimit: PROVIDER_LIMITS.gocardless * 60,
        windowMs: 60_000,
      }),
      truework: new TrueworkSimulator({
        timeScale: scale,
        ratePerSecond: PROVIDER_LIMITS.truework,
        burst: PROVIDER_LIMITS.truework,
      }),
      auco: new AucoSimulator({ timeScale: scale, ratePerSecond: PROVIDER_LIMITS.auco }),
      mycreditapp: new MyCreditAppSimulator({ timeScale: scale, ratePerSecond: PROVIDER_LIMITS.mycreditapp }),
    };
    await Promise.all(Object.values(sims).map((s) => s.start()));
    // A fresh local cloud per run (circuits closed, containers cold): the functions in their own containers with the
    // template's settings, time scaled alike for the simulators, the definition's retries and waits, the pacing and
    // the circuit's probe interval.
    const cloud = await startLocalCloud({
      timeScale: scale,
      secrets: {
        ...Object.fromEntries(Object.entries(sims).map(([p, sim]) => [p, sim.demoSecret()])),
        truework: { ...sims.truework.demoSecret(), publicKeys: undefined },
      },
      env: { CIRCUIT_PROBE_SECONDS: String(15 / scale), LOG_LEVEL: 'error', METRICS_NAMESPACE: '' },
    });
    await cloud.lambda.deploy();
    const { list } = mixedItems(sims, D, items, 'O');
    const deadline = new Date(Date.now() + (24 * 3_600_000) / scale).toISOString();
    const started = Date.now();
    const batchId = await postBatch(cloud, { reason: 'bench', requestedBy: 'ops@example.com', deadline, items: list });
    const execution = [...cloud.stepFunctions.executions.values()].find((e) => e.name === batchId);
    // The outage begins when half of GoCardless's items are cancelled, and lasts 30 scaled minutes.
    const gocardlessItems = items / 4;
    while (sims.gocardless.effectiveCancels.size < gocardlessItems / 2 && execution?.status === 'RUNNING')
      await new Promise((r) => setTimeout(r, 5));
    const down = Date.now();
    sims.gocardless.inject({
      fault: { kind: 'status', status: 503 },
      probability: 0.5,
      times: Number.POSITIVE_INFINITY,
    });
    sims.gocardless.inject({ fault: { kind: 'reset' }, times: Number.POSITIVE_INFINITY });
    await new Promise((r) => setTimeout(r, (outageMinutes * 60_000) / scale));
    sims.gocardless.clearFaults();
    const up = Date.now();
    await execution?.done;
    const ended = execution?.stopDate?.getTime() ?? Date.now();
    const output = JSON.parse(execution?.output ?? '{}') as {
      summary?: { lost: number; byOutcome: Record<string, number> };
      rounds?: { count: number };
    };
    const during = sims.gocardless.requests.filter((r) => r.at >= down && r.at < up).length;
    const cancels = [sims.gocardless, sims.truework, sims.auco, sims.mycreditapp].flatMap((s) => [
      ...s.effectiveCancels.values(),
    ]);
    rows.push({
      run: run + 1,
      items,
      scale,
      lost: output.summary?.lost ?? -1,
      itemsFailed: output.summary?.byOutcome.failed ?? -1,
      canceled: output.summary?.byOutcome.canceled ?? 0,
      cancelledTwice: cancels.filter((n) => n > 1).length,
      requestsDuringOutage: during,
      requestsDuringOutagePerMinute: round(during / outageMinutes, 2),
      secondsToDrainAfterRecovery: round(((ended - up) / 1000) * scale, 0),
      rounds: output.rounds?.count,
      // States the execution entered (its history holds about 2 to 5 events per state): the rounds' cost.
      statesEntered: execution?.stats.transitions,
      scaledMinutesTotal: round(((ended - started) / 60_000) * scale, 1),
      executionStatus: execution?.status,
    });
    await cloud.stop();
    await Promise.all(Object.values(sims).map((s) => s.stop()));
  }
  const med = (key: string) => median(rows.map((r) => Number(r[key])));
  results.outage = {
    measured: { date: results.date, machine: results.machine },
    provider: 'gocardless',
    items,
    scale,
    outageScaledMinutes: outageMinutes,
    runs: rows.length,
    medians: {
      lost: med('lost'),
      itemsFailed: med('itemsFailed'),
      cancelledTwice: med('cancelledTwice'),
      requestsDuringOutagePerMinute: med('requestsDuringOutagePerMinute'),
      secondsToDrainAfterRecovery: med('secondsToDrainAfterRecovery'),
      rounds: med('rounds'),
      statesEntered: med('statesEntered'),
    },
    rows,
  };
  console.log(
    `\n5. Outage: GoCardless down for ${outageMinutes} scaled minutes in a ${items}-item batch, time scaled ${scale}x`,
  );
  console.table(rows);
}

if (ONLY.has('bundles')) await bundles();
if (ONLY.has('overhead')) await overhead();
const stats = ONLY.has('throughput') ? await throughput() : undefined;
if (ONLY.has('container')) await container();
if (ONLY.has('cost')) await cost(stats);
if (ONLY.has('outage')) await outage();
if (ONLY.has('storm')) await storm();

// Sections not run this time keep their last figures (`--only` refreshes only what it names).
mkdirSync(new URL('.', import.meta.url), { recursive: true });
const file = new URL('./results.json', import.meta.url);
// Sections not run this time keep their last figures; each section says when it was measured.
const previous = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>) : {};
const { date, machine, ...sections } = results;
const dated = Object.fromEntries(
  Object.entries(sections).map(([name, figures]) => [name, { measuredAt: date, ...(figures as object) }]),
);
writeFileSync(file, `${JSON.stringify({ ...previous, date, machine, ...dated }, null, 2)}\n`);
console.log('\nwrote bench/results.json');
