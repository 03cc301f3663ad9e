/**
 * A provider simulator in a process of its own, for the benchmarks: a provider is a service of its own, and what it
 * sees (when each request arrives) must not be delayed by the local twin's main thread (the state-machine runner,
 * the API) as a simulator in that thread would be. Driven over IPC by bench/remote-simulators.ts.
 */
import { setPriority } from 'node:os';
import { AucoSimulator } from '#local/simulators/auco.ts';
import type { Simulator } from '#local/simulators/base.ts';
import { GoCardlessSimulator } from '#local/simulators/gocardless.ts';
import { MyCreditAppSimulator } from '#local/simulators/mycreditapp.ts';
import { TrueworkSimulator } from '#local/simulators/truework.ts';

const [provider = '', optionsJson = '{}'] = process.argv.slice(2);
const options = JSON.parse(optionsJson) as Record<string, unknown>;
const make: Record<string, () => Simulator> = {
  gocardless: () => new GoCardlessSimulator(options),
  truework: () => new TrueworkSimulator(options),
  auco: () => new AucoSimulator(options),
  mycreditapp: () => new MyCreditAppSimulator(options),
};
const sim = make[provider]?.();
if (!sim) throw new Error(`no simulator for "${provider}"`);
// Above normal priority where the user may raise it (root, or CAP_SYS_NICE): a provider's machine does not wait for
// ours, and a simulator waiting for a core stamps late arrivals together (traced in the storm at 10x: event-loop
// stalls of 10-27 ms, 7-15 a run at nice 0 and 0-1 at -10, against 5.3 ms of pacing slack). Elsewhere it stays at 0,
// still above the twin's containers (bench/run.ts, NICE).
try {
  setPriority(-10);
} catch {}
await sim.start();
process.send?.({ ready: { url: sim.url, origin: sim.origin, demoSecret: sim.demoSecret() } });

type Message =
  | { id: number; op: 'calls'; calls: [string, unknown[]][] }
  | { id: number; op: 'requests' | 'clear' | 'cancels' };
process.on('message', (message: Message) => {
  const target = sim as unknown as Record<string, (...args: unknown[]) => unknown>;
  let result: unknown = null;
  if (message.op === 'calls') for (const [method, args] of message.calls) target[method]?.apply(sim, args);
  else if (message.op === 'requests')
    result = sim.requests.map((r) => ({ at: r.at, status: r.status, method: r.method, path: r.path }));
  else if (message.op === 'clear') sim.requests.length = 0;
  else if (message.op === 'cancels') result = Object.fromEntries(sim.effectiveCancels);
  process.send?.({ id: message.id, result });
});
process.on('disconnect', () => process.exit(0));
