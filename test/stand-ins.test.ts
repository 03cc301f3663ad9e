/**
 * No silent memory fallback in production code: a function without its table variable fails, naming it, on its first
 * use of the table; memory stand-ins are only what a caller chooses (the tests do, in test/setup-env.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { handler as cancellations } from '#functions/cancellations/handler.ts';
import { DynamoLedger } from '#shared/aws/ledger-table.ts';
import { reloadConfig, useMemoryStandIns } from '#shared/config.ts';
import { defaultDeps, setDefaultDeps } from '#shared/core/cancel.ts';
import { ConfigurationError } from '#shared/core/errors.ts';
import { DynamoIdempotencyStore, idempotencyStore, setIdempotencyStore } from '#shared/handler/idempotency.ts';
import { callApi } from '#test/support/invoke.ts';

afterEach(() => {
  delete process.env.LEDGER_TABLE;
  delete process.env.IDEMPOTENCY_TABLE;
  useMemoryStandIns();
  reloadConfig();
  setDefaultDeps(undefined);
  setIdempotencyStore(undefined);
});

describe('tables are configured, or stand-ins chosen: never a silent fallback', () => {
  it('without LEDGER_TABLE or IDEMPOTENCY_TABLE, the first use fails naming the variable', () => {
    useMemoryStandIns(false);
    setDefaultDeps(undefined);
    setIdempotencyStore(undefined);
    expect(() => defaultDeps().ledger).toThrow(ConfigurationError);
    expect(() => defaultDeps().ledger).toThrow(/LEDGER_TABLE is not set/);
    expect(() => idempotencyStore()).toThrow(/IDEMPOTENCY_TABLE is not set/);
    // A dependency the function does not use is not asked for: the secret store is there without any table.
    expect(defaultDeps().secrets).toBeDefined();
  });

  it('an API call to a function deployed without its table answers 500 naming the variable, nothing quietly kept', async () => {
    useMemoryStandIns(false);
    setDefaultDeps(undefined);
    const res = await callApi(cancellations, {
      method: 'GET',
      route: '/v1/cancellations',
      path: '/v1/cancellations',
      query: { provider: 'gocardless', billingRequestId: 'BRQ000STANDIN' },
    });
    expect(res.status).toBe(500);
    expect(res.body).toMatchObject({ error: 'configuration_error' });
    expect(res.body.message).toMatch(/LEDGER_TABLE is not set/);
  });

  it('with the variables set, the tables are DynamoDB', () => {
    useMemoryStandIns(false);
    process.env.LEDGER_TABLE = 'ledger';
    process.env.IDEMPOTENCY_TABLE = 'idempotency';
    reloadConfig();
    setDefaultDeps(undefined);
    setIdempotencyStore(undefined);
    expect(defaultDeps().ledger).toBeInstanceOf(DynamoLedger);
    expect(idempotencyStore()).toBeInstanceOf(DynamoIdempotencyStore);
  });
});
