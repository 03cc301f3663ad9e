/** The four provider simulators, secrets pointing at them, and the local cloud: the system on loopback. */
import { type LocalCloud, type LocalCloudOptions, startLocalCloud } from '#local/cloud.ts';
import { AucoSimulator } from '#local/simulators/auco.ts';
import { GoCardlessSimulator } from '#local/simulators/gocardless.ts';
import { MyCreditAppSimulator } from '#local/simulators/mycreditapp.ts';
import { TrueworkSimulator } from '#local/simulators/truework.ts';
import { DynamoDb } from '#shared/aws/dynamodb.ts';
import { setDefaultDeps } from '#shared/core/cancel.ts';
import { DynamoCircuitStore } from '#shared/core/circuit.ts';
import { PROVIDERS } from '#shared/core/outcome.ts';
import { HttpClient } from '#shared/http/client.ts';
import { useSecrets } from './providers.ts';

export interface TestSystem {
  gocardless: GoCardlessSimulator;
  truework: TrueworkSimulator;
  auco: AucoSimulator;
  mycreditapp: MyCreditAppSimulator;
  cloud: LocalCloud;
  secrets: Record<string, unknown>;
  /** Clears the simulators, the in-memory ledger and idempotency records, and the circuits. */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `waitScale` defaults to 1/1000: a round's 30 s wait takes 30 ms. `circuits`: batch tasks go through the providers'
 * circuits in the local DynamoDB table (shared/core/circuit.ts), as in AWS; without it, no circuit.
 */
export async function startTestSystem(
  options: LocalCloudOptions & { rateLimited?: boolean; circuits?: boolean } = {},
): Promise<TestSystem> {
  const sims = {
    gocardless: new GoCardlessSimulator(),
    truework: new TrueworkSimulator(options.rateLimited ? {} : { ratePerSecond: 10_000, burst: 10_000 }),
    auco: new AucoSimulator(),
    mycreditapp: new MyCreditAppSimulator(),
  };
  await Promise.all(Object.values(sims).map((s) => s.start()));
  const secrets = Object.fromEntries(Object.entries(sims).map(([p, sim]) => [p, sim.demoSecret()]));
  // The containers read the same secrets from a file; their logs stay at the tests' level, metrics off.
  const cloud = await startLocalCloud({
    waitScale: 0.001,
    ...options,
    secrets,
    env: { LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn', METRICS_NAMESPACE: '', ...options.env },
  });
  const circuits = options.circuits ? new DynamoCircuitStore(cloud.dynamo.tables.circuits) : undefined;
  const wire = () => {
    const deps = useSecrets(secrets, new HttpClient({ retry: { baseDelayMs: 5, maxDelayMs: 50 } }));
    if (circuits) setDefaultDeps({ ...deps, secrets: deps.store, circuits });
  };
  wire();
  return {
    ...sims,
    cloud,
    secrets,
    async reset() {
      for (const s of Object.values(sims)) s.reset();
      wire();
      // Every test starts with cold containers: no token, pacer hold or retry budget carried over from the last.
      await cloud.lambda.reset();
      // The circuits live in the local DynamoDB, where the containers keep them: every test starts closed.
      const db = new DynamoDb({ endpoint: cloud.dynamo.url });
      for (const provider of PROVIDERS) {
        await db.call('DeleteItem', { TableName: cloud.dynamo.tables.circuits, Key: { provider: { S: provider } } });
      }
    },
    async stop() {
      await cloud.stop();
      await Promise.all(Object.values(sims).map((s) => s.stop()));
    },
  };
}
