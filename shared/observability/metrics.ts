/**
 * Cancellations by provider and outcome as CloudWatch metrics, written as Embedded Metric Format log lines: no
 * SDK call and no extra dependency; CloudWatch turns the lines into metrics. On only where METRICS_NAMESPACE is set
 * (the stack sets it), so local runs and tests stay quiet.
 */
import { config } from '#shared/config.ts';
import type { CircuitState } from '#shared/core/circuit.ts';
import type { Outcome } from '#shared/core/outcome.ts';

/** One EMF line: the metrics (`values`, named in `metrics`) under `dimensions`, whose values `values` also holds. */
function emf(
  namespace: string,
  dimensions: string[],
  metrics: { Name: string; Unit: string }[],
  values: Record<string, string | number>,
  timestamp = Date.now(),
): string {
  return JSON.stringify({
    _aws: {
      Timestamp: timestamp,
      CloudWatchMetrics: [{ Namespace: namespace, Dimensions: [dimensions], Metrics: metrics }],
    },
    ...values,
  });
}

export function emitOutcomeMetrics(
  outcomes: readonly Outcome[],
  write: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
): void {
  const namespace = config().metricsNamespace;
  if (!namespace || outcomes.length === 0) return;
  const counts = new Map<string, { provider: string; outcome: string; count: number }>();
  for (const o of outcomes) {
    const key = `${o.provider}/${o.outcome}`;
    const entry = counts.get(key) ?? { provider: o.provider, outcome: o.outcome, count: 0 };
    entry.count++;
    counts.set(key, entry);
  }
  for (const { provider, outcome, count } of counts.values()) {
    write(
      emf(namespace, ['Provider', 'Outcome'], [{ Name: 'Cancellations', Unit: 'Count' }], {
        Provider: provider,
        Outcome: outcome,
        Cancellations: count,
      }),
    );
  }
}

/**
 * A provider's circuit (shared/core/circuit.ts): `CircuitOpen` (1 open, 0 closed) and `UnreachableSeconds` (how long it
 * has been open), per provider. The alarm on a provider unreachable for 15 minutes reads the second.
 */
export function emitCircuitMetrics(
  provider: string,
  circuit: Pick<CircuitState, 'state' | 'openedAt'>,
  write: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
  now = Date.now(),
): void {
  const namespace = config().metricsNamespace;
  if (!namespace) return;
  const open = circuit.state === 'open';
  write(
    emf(
      namespace,
      ['Provider'],
      [
        { Name: 'CircuitOpen', Unit: 'Count' },
        { Name: 'UnreachableSeconds', Unit: 'Seconds' },
      ],
      {
        Provider: provider,
        CircuitOpen: open ? 1 : 0,
        UnreachableSeconds: open && circuit.openedAt ? Math.max(0, Math.round((now - circuit.openedAt) / 1000)) : 0,
      },
      now,
    ),
  );
}

/**
 * Items a batch gave up at its deadline (or when its history was full), still `failed`: `GivenUp` per provider,
 * written by Summarize. Nobody waits on a scheduled expiration's result, so its alarm tells a person.
 */
export function emitGivenUpMetrics(
  outcomes: readonly Pick<Outcome, 'provider'>[],
  write: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
): void {
  const namespace = config().metricsNamespace;
  if (!namespace || outcomes.length === 0) return;
  const counts = new Map<string, number>();
  for (const o of outcomes) counts.set(o.provider, (counts.get(o.provider) ?? 0) + 1);
  for (const [provider, count] of counts) {
    write(emf(namespace, ['Provider'], [{ Name: 'GivenUp', Unit: 'Count' }], { Provider: provider, GivenUp: count }));
  }
}
