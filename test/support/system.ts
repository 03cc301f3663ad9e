/** The four provider simulators, secrets pointing at them, and the local cloud: the system on loopback. */
import { type LocalCloud, type LocalCloudOptions, startLocalCloud } from '../../local/cloud.ts';
import { AucoSimulator } from '../../local/simulators/auco.ts';
import { GoCardlessSimulator } from '../../local/simulators/gocardless.ts';
import { MyCreditAppSimulator } from '../../local/simulators/mycreditapp.ts';
import { TrueworkSimulator } from '../../local/simulators/truework.ts';
import { HttpClient } from '../../shared/http.ts';
import { useSecrets } from './providers.ts';

export interface TestSystem {
  gocardless: GoCardlessSimulator;
  truework: TrueworkSimulator;
  auco: AucoSimulator;
  mycreditapp: MyCreditAppSimulator;
  cloud: LocalCloud;
  secrets: Record<string, unknown>;
  reset(): Promise<void>;
  stop(): Promise<void>;
}

export async function startTestSystem(
  options: LocalCloudOptions & { rateLimited?: boolean } = {},
): Promise<TestSystem> {
  const sims = {
    gocardless: new GoCardlessSimulator(),
    truework: new TrueworkSimulator(options.rateLimited ? {} : { ratePerSecond: 10_000, burst: 10_000 }),
    auco: new AucoSimulator(),
    mycreditapp: new MyCreditAppSimulator(),
  };
  await Promise.all(Object.values(sims).map((s) => s.start()));
  const secrets = Object.fromEntries(Object.entries(sims).map(([p, sim]) => [p, sim.demoSecret()]));
  const wire = () => useSecrets(secrets, new HttpClient({ retry: { baseDelayMs: 5, maxDelayMs: 50 } }));
  wire();
  // The containers read the same secrets from a file; their logs stay at the tests' level, metrics off.
  const cloud = await startLocalCloud({
    ...options,
    secrets,
    env: { LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn', METRICS_NAMESPACE: '', ...options.env },
  });
  return {
    ...sims,
    cloud,
    secrets,
    async reset() {
      for (const s of Object.values(sims)) s.reset();
      wire();
      // Every test starts with cold containers: no token, pacer hold or retry budget carried over from the last.
      await cloud.lambda.reset();
    },
    async stop() {
      await cloud.stop();
      await Promise.all(Object.values(sims).map((s) => s.stop()));
    },
  };
}
