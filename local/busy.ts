/**
 * How a caller of the API retries an answer that says "busy, come back", as the CLI does (local/cli.ts) and the
 * storm bench's API callers do (bench/run.ts): the same Idempotency-Key, 0.5 s doubling to 8 s, full jitter.
 */

/** API Gateway's own 500 for an integration it could not run (a function at its reserved concurrency is throttled
 * before it runs; a crashed one answers the same), a 429 or a 503. */
export function busy(answer: { status: number; body: Record<string, unknown> }): boolean {
  if (answer.status === 429 || answer.status === 503) return true;
  return (
    answer.status === 500 && answer.body.message === 'Internal Server Error' && Object.keys(answer.body).length === 1
  );
}

/** The wait before retry `attempt` (0 for the first retry): full jitter on 0.5 s doubling to 8 s, so callers
 * retrying together spread out. */
export function busyWaitMs(attempt: number, random: () => number = Math.random): number {
  return random() * Math.min(8_000, 500 * 2 ** attempt);
}
