/**
 * The few DynamoDB calls the functions make (PutItem, GetItem, UpdateItem, DeleteItem, Query), as signed JSON
 * requests through `shared/http/client.ts`. Why not @aws-sdk/client-dynamodb: it adds 106 KB (+24 %) to every provider
 * function's bundle, while this takes the credential chain the Secrets Manager client already bundles and signs
 * with a signer of its own for this one request shape (./sigv4.ts). The wire protocol is AWS JSON 1.0; dynalite,
 * which implements DynamoDB's validation faithfully, is what the tests and `npm start` run it against.
 */
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { type Config, config } from '#shared/config.ts';
import { HttpClient } from '#shared/http/client.ts';
import { type Credentials, JsonPostSigner } from './sigv4.ts';

export type AttributeValue =
  | { S: string }
  | { N: string }
  | { BOOL: boolean }
  | { NULL: true }
  | { M: Record<string, AttributeValue> }
  | { L: AttributeValue[] };
export type Item = Record<string, AttributeValue>;

export function marshall(value: unknown): AttributeValue {
  if (value === null || value === undefined) return { NULL: true };
  if (typeof value === 'string') return { S: value };
  if (typeof value === 'number') return { N: String(value) };
  if (typeof value === 'boolean') return { BOOL: value };
  if (Array.isArray(value)) return { L: value.map(marshall) };
  return { M: marshallItem(value as Record<string, unknown>) };
}

export function marshallItem(value: Record<string, unknown>): Item {
  return Object.fromEntries(
    Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [k, marshall(v)]),
  );
}

export function unmarshall(value: AttributeValue): unknown {
  if ('S' in value) return value.S;
  if ('N' in value) return Number(value.N);
  if ('BOOL' in value) return value.BOOL;
  if ('NULL' in value) return null;
  if ('L' in value) return value.L.map(unmarshall);
  return unmarshallItem(value.M);
}

export function unmarshallItem(item: Item): Record<string, unknown> {
  return Object.fromEntries(Object.entries(item).map(([k, v]) => [k, unmarshall(v)]));
}

export class DynamoError extends Error {
  readonly type: string;
  readonly status: number;
  constructor(type: string, message: string, status: number) {
    super(`${type}: ${message}`);
    this.name = `DynamoDB.${type}`;
    this.type = type;
    this.status = status;
  }
}

const THROTTLED =
  /Throttling|ProvisionedThroughputExceeded|RequestLimitExceeded|InternalServerError|ServiceUnavailable/;

export class DynamoDb {
  private readonly http: HttpClient;
  private readonly fixedEndpoint: string | undefined;
  /** The endpoint and its signer, resolved from the configuration on first use (again only if a test reloads it). */
  private target: { from: Config; url: string; signer: JsonPostSigner } | undefined;
  /** The SDK's credential chain: memoized, it refreshes expiring credentials itself. */
  private credentials: (() => Promise<Credentials>) | undefined;

  /** `endpoint`: a fixed endpoint (local tooling); by default AWS_ENDPOINT_URL_DYNAMODB, else the regional one. */
  constructor(options: { endpoint?: string; http?: HttpClient } = {}) {
    this.http = options.http ?? new HttpClient({ retry: { maxAttempts: 4, baseDelayMs: 25, maxDelayMs: 500 } });
    this.fixedEndpoint = options.endpoint;
  }

  private resolve() {
    const from = config();
    if (this.target?.from !== from) {
      const url = new URL(
        this.fixedEndpoint ?? from.dynamoDbEndpoint ?? `https://dynamodb.${from.region}.amazonaws.com/`,
      );
      this.target = { from, url: url.toString(), signer: new JsonPostSigner('dynamodb', from.region, url) };
    }
    return this.target;
  }

  async call<T = Record<string, unknown>>(
    operation: string,
    input: Record<string, unknown>,
    signal?: AbortSignal,
  ): Promise<T> {
    const { url, signer } = this.resolve();
    this.credentials ??= defaultProvider();
    const body = JSON.stringify(input);
    const headers = signer.sign(
      await this.credentials(),
      { 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': `DynamoDB_20120810.${operation}` },
      body,
    );
    const response = await this.http.send(
      { method: 'POST', url, headers, body },
      {
        ...(signal ? { signal } : {}),
        isTransient: (r) => (r.status === 400 && THROTTLED.test(r.body) ? 'DynamoDB throttled the request' : undefined),
      },
    );
    const json = response.body ? (JSON.parse(response.body) as Record<string, unknown>) : {};
    if (response.status >= 300) {
      const type =
        String(json.__type ?? 'Error')
          .split('#')
          .at(-1) ?? 'Error';
      throw new DynamoError(type, String(json.message ?? json.Message ?? `HTTP ${response.status}`), response.status);
    }
    return json as T;
  }
}

let shared: DynamoDb | undefined;
export function dynamoDb(): DynamoDb {
  shared ??= new DynamoDb();
  return shared;
}
