/**
 * Provider credentials (DESIGN.md 3.2, a contract): one JSON secret per provider, validated at load, cached in
 * the warm Lambda with a TTL, refetched once after a provider 401 (rotation), never logged or echoed.
 *
 * Sources: Secrets Manager in AWS (`SECRET_ID`, set by `ProviderFunction.bindSecret`), or a local JSON file keyed
 * by provider (`SECRETS_FILE`, what `npm start -- --secrets FILE` sets). Every secret value loaded is registered
 * with the logger, which scrubs it from every log line, error and outcome.
 */

import { readFileSync } from 'node:fs';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import * as z from 'zod/mini';
import { config } from '#shared/config.ts';
import { ConfigurationError, TransientError } from '#shared/core/errors.ts';
import { toInputIssues } from '#shared/core/issues.ts';
import { PROVIDERS, type Provider } from '#shared/core/outcome.ts';
import { registerSecretValues } from '#shared/observability/log.ts';

/** A provider's secret schema, from its own module (shared/providers/<provider>/secret.ts): its operations pass it. */
export type SecretSchema = z.ZodMiniType<Record<string, unknown>>;

/** The secret a schema validates. */
export type ProviderSecret<S extends SecretSchema> = z.infer<S>;

function describeIssues(error: z.core.$ZodError, input: unknown): string[] {
  return toInputIssues(error, input).map((i) => (i.path ? `field "${i.path}" ${i.message}` : i.message));
}

/** Validates one provider's secret; the error names the secret and the field, never the value. */
export function parseProviderSecret<S extends SecretSchema>(
  provider: Provider,
  schema: S,
  value: unknown,
  secretName: string,
): ProviderSecret<S> {
  const result = z.safeParse(schema, value);
  if (!result.success) {
    throw new ConfigurationError(
      `Secret "${secretName}" for ${provider} is invalid: ${describeIssues(result.error, value).join('; ')}`,
    );
  }
  const secret = result.data as ProviderSecret<S>;
  registerSecretValues(secretStrings(secret));
  return secret;
}

/** The credential strings in a secret (not its URLs or ids), for redaction. */
function secretStrings(secret: Record<string, unknown>): string[] {
  const fields = ['clientSecret', 'clientId', 'privateKey', 'publicKey', 'apiKey', 'accessToken'];
  return fields.map((f) => secret[f]).filter((v): v is string => typeof v === 'string');
}

/**
 * Validates a whole local secrets file (`npm start -- --secrets FILE`): only known providers, each complete.
 * Returns the providers it configures. Every problem is listed, each naming the provider and field. `schemas`: each
 * provider's secret schema (the registry's SECRET_SCHEMAS).
 */
export function parseSecretsFile(
  value: unknown,
  fileName: string,
  schemas: Readonly<Record<Provider, SecretSchema>>,
): Partial<Record<Provider, Record<string, unknown>>> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigurationError(
      `Secrets file "${fileName}" must hold a JSON object keyed by provider (${PROVIDERS.join(', ')})`,
    );
  }
  const problems: string[] = [];
  const unknown = Object.keys(value).filter((k) => !(PROVIDERS as readonly string[]).includes(k));
  if (unknown.length)
    problems.push(`unknown provider(s) ${unknown.map((k) => `"${k}"`).join(', ')} (expected ${PROVIDERS.join(', ')})`);
  const out: Partial<Record<Provider, unknown>> = {};
  for (const provider of PROVIDERS) {
    const entry = (value as Record<string, unknown>)[provider];
    if (entry === undefined) continue;
    const result = z.safeParse(schemas[provider], entry);
    if (result.success) {
      out[provider] = result.data;
      registerSecretValues(secretStrings(result.data));
    } else {
      problems.push(...describeIssues(result.error, entry).map((p) => `${provider}: ${p}`));
    }
  }
  if (problems.length) throw new ConfigurationError(`Secrets file "${fileName}" is invalid: ${problems.join('; ')}`);
  return out as Partial<Record<Provider, Record<string, unknown>>>;
}

export interface SecretSource {
  /** Reads and validates the secret of a provider, uncached. */
  read<S extends SecretSchema>(provider: Provider, schema: S): Promise<ProviderSecret<S>>;
}

/** Secrets Manager: the secret id comes from `SECRET_ID` (one secret per function, its own provider's). */
export class SecretsManagerSource implements SecretSource {
  private client: SecretsManagerClient | undefined;
  private readonly secretIdFor: (provider: Provider) => string | undefined;
  constructor(secretIdFor: (provider: Provider) => string | undefined) {
    this.secretIdFor = secretIdFor;
  }

  async read<S extends SecretSchema>(provider: Provider, schema: S): Promise<ProviderSecret<S>> {
    const secretId = this.secretIdFor(provider);
    if (!secretId) {
      throw new ConfigurationError(
        `No secret configured for ${provider}: set SECRET_ID (in AWS, ProviderFunction.bindSecret does)`,
      );
    }
    this.client ??= new SecretsManagerClient({});
    let text: string | undefined;
    try {
      const answer = await this.client.send(new GetSecretValueCommand({ SecretId: secretId }));
      text = answer.SecretString;
    } catch (error) {
      const name = (error as { name?: string }).name ?? 'Error';
      if (name === 'ResourceNotFoundException')
        throw new ConfigurationError(`Secret "${secretId}" for ${provider} was not found`);
      if (name === 'AccessDeniedException' || name === 'AccessDenied') {
        throw new ConfigurationError(
          `Access denied reading secret "${secretId}" for ${provider}: the function needs secretsmanager:GetSecretValue on it (and kms:Decrypt for a customer-managed key)`,
        );
      }
      if (name === 'DecryptionFailure' || name === 'InvalidRequestException' || name === 'InvalidParameterException') {
        throw new ConfigurationError(`Secret "${secretId}" for ${provider} cannot be read (${name})`);
      }
      throw new TransientError(`Secrets Manager did not answer for "${secretId}" (${name})`, {
        attempts: 1,
        ambiguous: false,
      });
    }
    if (text === undefined)
      throw new ConfigurationError(
        `Secret "${secretId}" for ${provider} has no SecretString (binary secrets are not supported)`,
      );
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      // JSON.parse's own message quotes the text, which is the secret: never pass it on.
      throw new ConfigurationError(`Secret "${secretId}" for ${provider} is not valid JSON`);
    }
    return parseProviderSecret(provider, schema, value, secretId);
  }
}

/** A local JSON file keyed by provider (DESIGN.md 3.2), re-read on each load so edits apply without a restart. */
export class FileSecretSource implements SecretSource {
  private readonly path: string;
  constructor(path: string) {
    this.path = path;
  }
  async read<S extends SecretSchema>(provider: Provider, schema: S): Promise<ProviderSecret<S>> {
    let value: unknown;
    try {
      value = JSON.parse(readFileSync(this.path, 'utf8'));
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? 'not valid JSON';
      throw new ConfigurationError(`Secrets file "${this.path}" cannot be read (${reason})`);
    }
    const secret = (value as Record<string, unknown> | null)?.[provider];
    if (secret === undefined) throw new ConfigurationError(`Secrets file "${this.path}" has no entry for ${provider}`);
    return parseProviderSecret(provider, schema, secret, `${this.path}#${provider}`);
  }
}

/** Secrets held in memory (what `npm start` builds for its simulators). */
export class StaticSecretSource implements SecretSource {
  private readonly secrets: Partial<{ [P in Provider]: unknown }>;
  constructor(secrets: Partial<{ [P in Provider]: unknown }>) {
    this.secrets = secrets;
  }
  async read<S extends SecretSchema>(provider: Provider, schema: S): Promise<ProviderSecret<S>> {
    const secret = this.secrets[provider];
    if (secret === undefined) throw new ConfigurationError(`No secret configured for ${provider}`);
    return parseProviderSecret(provider, schema, secret, `local:${provider}`);
  }
}

interface CacheEntry {
  value: Promise<unknown>;
  expires: number;
}

/** A TTL cache in front of a source, with concurrent reads of one provider sharing one fetch. */
export class SecretStore {
  private readonly cache = new Map<Provider, CacheEntry>();
  private readonly source: SecretSource;
  private readonly ttlMs: number;
  constructor(source: SecretSource, ttlMs = 300_000) {
    this.source = source;
    this.ttlMs = ttlMs;
  }

  async get<S extends SecretSchema>(
    provider: Provider,
    schema: S,
    options: { forceRefresh?: boolean } = {},
  ): Promise<ProviderSecret<S>> {
    const now = Date.now();
    const cached = this.cache.get(provider);
    if (cached && !options.forceRefresh && cached.expires > now) return cached.value as Promise<ProviderSecret<S>>;
    const value = this.source.read(provider, schema);
    this.cache.set(provider, { value, expires: now + this.ttlMs });
    value.catch(() => this.cache.delete(provider));
    return value;
  }

  /**
   * Runs `call` with the cached secret; if the provider answered 401 (`unauthorized`), refetches the secret once
   * (it may have been rotated) and runs `call` again with it.
   */
  async withSecret<S extends SecretSchema, T>(
    provider: Provider,
    schema: S,
    call: (secret: ProviderSecret<S>) => Promise<T>,
    unauthorized: (result: T) => boolean,
  ): Promise<T> {
    const first = await call(await this.get(provider, schema));
    if (!unauthorized(first)) return first;
    return call(await this.get(provider, schema, { forceRefresh: true }));
  }
}

let defaultStore: SecretStore | undefined;

/** The store every handler uses: a local file when SECRETS_FILE is set, Secrets Manager otherwise. */
export function secretStore(): SecretStore {
  if (!defaultStore) {
    const { secretsFile, secretsTtlMs } = config();
    defaultStore = new SecretStore(
      secretsFile ? new FileSecretSource(secretsFile) : new SecretsManagerSource(() => config().secretId),
      secretsTtlMs,
    );
  }
  return defaultStore;
}
