import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FileSecretSource, parseSecretsFile, SecretStore, SecretsManagerSource } from '#shared/aws/secrets.ts';
import { ConfigurationError } from '#shared/core/errors.ts';
import { AucoSecret } from '#shared/providers/auco/secret.ts';
import { GoCardlessSecret } from '#shared/providers/gocardless/secret.ts';
import { SECRET_SCHEMAS } from '#shared/providers/index.ts';
import { type FakeSecretsManager, startFakeSecretsManager } from '#test/support/secrets-manager.ts';

const GOOD = {
  privateKey: 'prk_live_0123456789abcdef',
  publicKey: 'puk_live_0123456789abcdef',
  baseUrl: 'http://127.0.0.1:9/v1.5/ext',
};
let sm: FakeSecretsManager;

beforeAll(async () => {
  sm = await startFakeSecretsManager();
  // The SDK's own service-specific endpoint variable: production code builds a plain SecretsManagerClient.
  process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = sm.url;
});
afterAll(async () => {
  delete process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER;
  await sm.close();
});
beforeEach(() => {
  sm.secrets.clear();
  sm.calls.length = 0;
});

const storeFor = (secretId: string, ttlMs = 60_000) => new SecretStore(new SecretsManagerSource(() => secretId), ttlMs);

describe('secrets from Secrets Manager (real wire protocol on loopback)', () => {
  it('reads, validates and caches: one wire call for repeated reads', async () => {
    sm.secrets.set('auco-secret', JSON.stringify(GOOD));
    const store = storeFor('auco-secret');
    const [a, b] = await Promise.all([store.get('auco', AucoSecret), store.get('auco', AucoSecret)]);
    const c = await store.get('auco', AucoSecret);
    expect(a).toEqual(GOOD);
    expect(b).toBe(a);
    expect(c).toBe(a);
    expect(sm.calls).toEqual(['auco-secret']);
  });

  it('refetches after the TTL', async () => {
    sm.secrets.set('auco-secret', JSON.stringify(GOOD));
    const store = storeFor('auco-secret', 50);
    await store.get('auco', AucoSecret);
    await new Promise((r) => setTimeout(r, 80));
    await store.get('auco', AucoSecret);
    expect(sm.calls).toHaveLength(2);
  });

  it('refreshes once after a provider 401 and calls again with the rotated secret', async () => {
    sm.secrets.set('auco-secret', JSON.stringify(GOOD));
    const store = storeFor('auco-secret');
    await store.get('auco', AucoSecret);
    const rotated = { ...GOOD, privateKey: 'prk_live_rotated_999999' };
    sm.secrets.set('auco-secret', JSON.stringify(rotated));
    const seen: string[] = [];
    const result = await store.withSecret(
      'auco',
      AucoSecret,
      async (secret) => {
        seen.push(secret.privateKey);
        return secret.privateKey === rotated.privateKey ? 200 : 401;
      },
      (status) => status === 401,
    );
    expect(result).toBe(200);
    expect(seen).toEqual([GOOD.privateKey, rotated.privateKey]);
    expect(sm.calls).toHaveLength(2);
  });

  it('refreshes at most once: a second 401 is returned, not looped on', async () => {
    sm.secrets.set('auco-secret', JSON.stringify(GOOD));
    const store = storeFor('auco-secret');
    let calls = 0;
    const result = await store.withSecret(
      'auco',
      AucoSecret,
      async () => ++calls && 401,
      (s) => s === 401,
    );
    expect(result).toBe(401);
    expect(calls).toBe(2);
  });

  const expectConfigError = async (store: SecretStore, pattern: RegExp) => {
    const error = await store.get('auco', AucoSecret).catch((e) => e);
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toMatch(pattern);
    for (const value of Object.values(GOOD)) expect(error.message).not.toContain(value);
    return error;
  };

  it('a missing secret names the secret', async () => {
    await expectConfigError(storeFor('nope'), /Secret "nope" for auco was not found/);
  });

  it('access denied names the secret and the permission needed', async () => {
    sm.secrets.set('locked', { error: 'AccessDeniedException' });
    await expectConfigError(storeFor('locked'), /Access denied reading secret "locked".*secretsmanager:GetSecretValue/);
  });

  it('malformed JSON is named without quoting the secret', async () => {
    sm.secrets.set('broken', `{"privateKey": "${GOOD.privateKey}", oops}`);
    await expectConfigError(storeFor('broken'), /Secret "broken" for auco is not valid JSON$/);
  });

  it('a missing or wrong field names the field, never the value', async () => {
    sm.secrets.set('partial', JSON.stringify({ privateKey: GOOD.publicKey, extra: GOOD.privateKey }));
    const error = await expectConfigError(storeFor('partial'), /Secret "partial" for auco is invalid/);
    expect(error.message).toMatch(/unknown field\(s\) "extra"/);
    expect(error.message).toMatch(/field "privateKey" must be an Auco private key/);
    expect(error.message).toMatch(/field "publicKey" is required/);
  });

  it('a failed read is not cached: the next read tries again', async () => {
    const store = storeFor('late');
    await store.get('auco', AucoSecret).catch(() => undefined);
    sm.secrets.set('late', JSON.stringify(GOOD));
    await expect(store.get('auco', AucoSecret)).resolves.toEqual(GOOD);
  });
});

describe('secrets from a local JSON file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'secrets-'));

  it('reads the entry of a provider', async () => {
    const file = join(dir, 'ok.json');
    writeFileSync(file, JSON.stringify({ auco: GOOD }));
    await expect(new FileSecretSource(file).read('auco', AucoSecret)).resolves.toEqual(GOOD);
    await expect(new FileSecretSource(file).read('gocardless', GoCardlessSecret)).rejects.toThrow(
      /has no entry for gocardless/,
    );
  });

  it('validates a whole file, listing unknown providers and missing fields', () => {
    const attempt = () =>
      parseSecretsFile(
        {
          auco: { privateKey: GOOD.privateKey },
          stripe: {},
          gocardless: { accessToken: 'tok_1234567', colour: 'red' },
        },
        's.json',
        SECRET_SCHEMAS,
      );
    expect(attempt).toThrow(ConfigurationError);
    expect(attempt).toThrow(/unknown provider\(s\) "stripe"/);
    expect(attempt).toThrow(/auco: field "publicKey" is required/);
    expect(attempt).toThrow(/gocardless: unknown field\(s\) "colour"/);
    expect(attempt).not.toThrow(new RegExp(GOOD.privateKey));
  });
});

describe('provider baseUrl', () => {
  const secret = (baseUrl: string) => ({ gocardless: { accessToken: 'live_never_in_an_error_1', baseUrl } });

  it('is https, or http on a loopback address only: a credential never goes out in plaintext', () => {
    for (const ok of [
      'https://api.gocardless.com',
      'https://10.0.0.5:8443/v1',
      'http://127.0.0.1:4001',
      'http://127.8.9.10/x',
      'http://localhost:3000',
      'http://[::1]:4001/v1-beta',
    ])
      expect(() => parseSecretsFile(secret(ok), 's.json', SECRET_SCHEMAS), ok).not.toThrow();
    for (const bad of [
      'http://api.gocardless.com',
      'http://10.0.0.5:4001',
      'http://127.0.0.1.example.com',
      'http://localhost.example.com',
      'http://[::2]:80',
      'http://0.0.0.0:4001',
    ]) {
      const attempt = () => parseSecretsFile(secret(bad), 's.json', SECRET_SCHEMAS);
      expect(attempt, bad).toThrow(
        /gocardless: field "baseUrl" must be an https URL: http:\/\/ would send the credential in plaintext/,
      );
      // Names the field, never the value (a URL may carry a token in its query).
      expect(attempt, bad).not.toThrow(bad);
      expect(attempt, bad).not.toThrow(/live_never_in_an_error_1/);
    }
    expect(() => parseSecretsFile(secret('ftp://example.com'), 's.json', SECRET_SCHEMAS)).toThrow(
      /field "baseUrl" must be an http\(s\) URL$/,
    );
  });

  it('is checked where Secrets Manager secrets are read too', async () => {
    sm.secrets.set('plain', JSON.stringify({ ...GOOD, baseUrl: 'http://dev.auco.ai/v1.5/ext' }));
    await expect(storeFor('plain').get('auco', AucoSecret)).rejects.toThrow(
      /Secret "plain" for auco is invalid: field "baseUrl" must be an https URL/,
    );
  });
});
