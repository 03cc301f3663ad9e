/**
 * A provider simulator in a process of its own, for the benchmarks: a provider is a service of its own, and what it
 * sees (when each request arrives) must not be delayed by the local twin's main thread (the state-machine runner,
 * the API) as a simulator in that thread would be. Driven over IPC by bench/remote-simulators.ts.
 */
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
