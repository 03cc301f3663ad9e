import { beforeEach } from 'vitest';
import { reloadConfig, useMemoryStandIns } from '#shared/config.ts';

// Fake AWS credentials and region: the SDK never looks for real ones, and never probes the
// instance-metadata address (169.254.169.254), which tests must not reach.
process.env.AWS_ACCESS_KEY_ID = 'AKIATESTTESTTESTTEST';
process.env.AWS_SECRET_ACCESS_KEY = 'test-secret-access-key';
process.env.AWS_SESSION_TOKEN = '';
process.env.AWS_REGION = 'eu-west-1';
process.env.AWS_EC2_METADATA_DISABLED = 'true';
process.env.AWS_MAX_ATTEMPTS = '1';
process.env.LOG_LEVEL ??= 'warn';
delete process.env.SECRET_ID;
delete process.env.SECRETS_FILE;
// Test files may share a worker process: nothing one file pointed at (local endpoints, tables) leaks into the next.
for (const name of Object.keys(process.env)) {
  if (name.startsWith('AWS_ENDPOINT_URL') || name.endsWith('_RATE_PER_SECOND')) delete process.env[name];
}
for (const name of [
  'LEDGER_TABLE',
  'IDEMPOTENCY_TABLE',
  'BATCH_BUCKET',
  'STATE_MACHINE_ARN',
  'METRICS_NAMESPACE',
  'AUCO_MAX_CODES_PER_CALL',
  'SCHEDULE_GROUP',
  'SCHEDULER_ROLE_ARN',
  'SCHEDULER_DLQ_ARN',
  'LOOKUP_FUNCTION_NAME',
]) {
  delete process.env[name];
}

// The tests choose memory stand-ins for the tables explicitly (production code never falls back to them): a handler
// called in this process without a table configured keeps its ledger and idempotency records in memory.
useMemoryStandIns();

// A container reads its environment once (shared/config.ts); the tests change it between files and in their beforeAll
// hooks, so every test reads it again (one that changes it later calls reloadConfig() itself).
beforeEach(() => {
  reloadConfig();
});
