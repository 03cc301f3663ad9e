/**
 * IAM (SigV4) authorization for the HTTP API, both sides: the local API verifies a request's signature where API
 * Gateway would (after the route matched, before the integration), answering with API Gateway's own 403s, and
 * hands the verified principal to the handler as `requestContext.authorizer.iam`; the CLI signs its requests for
 * the `execute-api` service, locally and against a deployed stack alike.
 *
 * Verification re-signs the request as received (method, path, query, the headers named in SignedHeaders, the
 * body's SHA-256) with the caller's secret, using the same signer the AWS SDK signs with, and compares signatures.
 * Not supported locally: presigned (query-string) signatures, and `execute-api:Invoke` policies (every known
 * caller may call every route).
 */
import {
  createHash,
  createHmac,
  createSecretKey,
  type Hash,
  type Hmac,
  type KeyObject,
  timingSafeEqual,
} from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import { registerSecretValues } from '#shared/observability/log.ts';
import { LOCAL_ACCOUNT, LOCAL_REGION } from './lambda-events.ts';

type Data = string | ArrayBuffer | ArrayBufferView;
const bytes = (data: Data) =>
  typeof data === 'string'
    ? data
    : data instanceof ArrayBuffer
      ? new Uint8Array(data)
      : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);

/** HMAC keys the signer passes again and again as the same bytes (its cached signing key), as key objects: node:crypto
 * checks a key object in a fraction of the time it spends on raw bytes (measured 1.7 µs against 9.9 µs a MAC). */
const keyObjects = new WeakMap<object, KeyObject>();
function hmacKey(secret: Data): string | KeyObject {
  if (typeof secret === 'string') return secret;
  let key = keyObjects.get(secret);
  if (!key) {
    key = createSecretKey(bytes(secret) as Uint8Array);
    keyObjects.set(secret, key);
  }
  return key;
}

/** SHA-256 (and HMAC-SHA-256) for the SDK's signer (@smithy/signature-v4), from node:crypto. */
export class Sha256 {
  private readonly hash: Hash | Hmac;
  constructor(secret?: Data) {
    this.hash = secret ? createHmac('sha256', hmacKey(secret)) : createHash('sha256');
  }
  update(data: Data): void {
    this.hash.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
}

export const EXECUTE_API = 'execute-api';

/** Credentials the local API accepts, and the principal they stand for. */
export interface Caller {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
  /** Default: `arn:aws:iam::<local account>:user/local-operator`. */
  userArn?: string | undefined;
  /** Default: derived from the ARN (`AIDA...` for a user, `AROA...:<session>` for an assumed role). */
  userId?: string | undefined;
}

/** What API Gateway passes to the integration for an IAM-authorized HTTP API (payload 2.0) request. */
export interface IamPrincipal {
  accessKey: string;
  accountId: string;
  callerId: string;
  cognitoIdentity: null;
  principalOrgId: null;
  userArn: string;
  userId: string;
}

export type Verdict =
  | { ok: true; principal: IamPrincipal }
  | { ok: false; message: string; errorType: string | undefined };

/** API Gateway's answers (403) to a request an IAM route refuses. */
export const FORBIDDEN = 'Forbidden';
export const INVALID_TOKEN = 'The security token included in the request is invalid.';
export const SIGNATURE_MISMATCH =
  'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.';

/** How far a request's X-Amz-Date may be from now. */
const SKEW_MS = 5 * 60_000;
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

const refuse = (message: string, errorType?: string): Verdict => ({ ok: false, message, errorType });

function principalOf(caller: Caller): IamPrincipal {
  const userArn = caller.userArn ?? `arn:aws:iam::${LOCAL_ACCOUNT}:user/local-operator`;
  const accountId = /^arn:aws[a-z-]*:(?:iam|sts)::(\d{12}):/.exec(userArn)?.[1] ?? LOCAL_ACCOUNT;
  const unique = createHash('sha256').update(userArn).digest('hex').toUpperCase().slice(0, 17);
  const session = /:assumed-role\/[^/]+\/(.+)$/.exec(userArn)?.[1];
  const userId = caller.userId ?? (session ? `AROA${unique}:${session}` : `AIDA${unique}`);
  return {
    accessKey: caller.accessKeyId,
    accountId,
    callerId: userId,
    cognitoIdentity: null,
    principalOrgId: null,
    userArn,
    userId,
  };
}

/** `20261201T110000Z` as a Date, or undefined. */
function amzDate(value: string | undefined): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value ?? '');
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as number[];
  return new Date(Date.UTC(y as number, (mo as number) - 1, d, h, mi, s));
}

/** The query string as the signer takes it: decoded names and values, repeated names as lists. */
function queryOf(search: string): Record<string, string | string[]> {
  const query: Record<string, string | string[]> = {};
  for (const [name, value] of new URLSearchParams(search)) {
    const previous = query[name];
    query[name] = previous === undefined ? value : [...(Array.isArray(previous) ? previous : [previous]), value];
  }
  return query;
}

export interface ReceivedRequest {
  method: string;
  /** The request target as received: the path (still percent-encoded) and the query string. */
  target: string;
  /** Header names in lower case. */
  headers: Record<string, string>;
  body: Buffer;
}

export class IamVerifier {
  private readonly callers = new Map<string, Caller>();
  readonly region: string;

  constructor(callers: Caller[], region = LOCAL_REGION) {
    for (const caller of callers) this.callers.set(caller.accessKeyId, caller);
    registerSecretValues(callers.flatMap((c) => [c.secretAccessKey, ...(c.sessionToken ? [c.sessionToken] : [])]));
    this.region = region;
  }

  /** The principals it accepts (for the start-up banner: no secrets). */
  get principals(): IamPrincipal[] {
    return [...this.callers.values()].map(principalOf);
  }

  async verify(request: ReceivedRequest, now = Date.now()): Promise<Verdict> {
    const authorization = request.headers.authorization;
    if (!authorization) return refuse(FORBIDDEN);
    const m = /^AWS4-HMAC-SHA256\s+(.+)$/.exec(authorization);
    if (!m) return refuse(FORBIDDEN, 'IncompleteSignatureException');
    const fields = new Map<string, string>();
    for (const part of (m[1] as string).split(',')) {
      const at = part.indexOf('=');
      if (at > 0) fields.set(part.slice(0, at).trim(), part.slice(at + 1).trim());
    }
    const credential = fields.get('Credential')?.split('/') ?? [];
    const signedHeaders = fields.get('SignedHeaders')?.split(';') ?? [];
    const signature = fields.get('Signature') ?? '';
    if (credential.length !== 5 || credential[4] !== 'aws4_request' || !signedHeaders.length || !signature)
      return refuse(FORBIDDEN, 'IncompleteSignatureException');
    const [accessKeyId, day, region, service] = credential as [string, string, string, string];
    const caller = this.callers.get(accessKeyId);
    if (!caller) return refuse(INVALID_TOKEN, 'UnrecognizedClientException');
    const presented = request.headers['x-amz-security-token'];
    if ((caller.sessionToken || undefined) !== (presented || undefined))
      return refuse(INVALID_TOKEN, 'UnrecognizedClientException');
    const longDate = request.headers['x-amz-date'];
    const signingDate = amzDate(longDate);
    if (!signingDate || !signedHeaders.includes('host')) return refuse(FORBIDDEN, 'IncompleteSignatureException');
    if (day !== longDate?.slice(0, 8))
      return refuse(
        `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${day}' != '${longDate?.slice(0, 8)}', from '${longDate}'.`,
        'InvalidSignatureException',
      );
    if (region !== this.region)
      return refuse(`Credential should be scoped to a valid region, not '${region}'. `, 'InvalidSignatureException');
    if (service !== EXECUTE_API)
      return refuse(`Credential should be scoped to correct service: '${EXECUTE_API}'. `, 'InvalidSignatureException');
    const stamp = (ms: number) => new Date(ms).toISOString().replace(/[-:]|\.\d{3}/g, '');
    if (signingDate.getTime() < now - SKEW_MS)
      return refuse(
        `Signature expired: ${longDate} is now earlier than ${stamp(now - SKEW_MS)} (${stamp(now)} - 5 min.)`,
        'InvalidSignatureException',
      );
    if (signingDate.getTime() > now + SKEW_MS)
      return refuse(
        `Signature not yet current: ${longDate} is still later than ${stamp(now + SKEW_MS)} (${stamp(now)} + 5 min.)`,
        'InvalidSignatureException',
      );
    // The body is always covered: a declared payload hash must be the body's.
    const bodyHash = request.body.length ? createHash('sha256').update(request.body).digest('hex') : EMPTY_SHA256;
    const declared = request.headers['x-amz-content-sha256'];
    if (declared !== undefined && declared !== bodyHash) return refuse(SIGNATURE_MISMATCH, 'InvalidSignatureException');

    const headers: Record<string, string> = {};
    for (const name of signedHeaders) {
      const value = request.headers[name];
      if (value === undefined) return refuse(SIGNATURE_MISMATCH, 'InvalidSignatureException');
      headers[name] = value;
    }
    const queryAt = request.target.indexOf('?');
    const signer = new SignatureV4({
      service: EXECUTE_API,
      region: this.region,
      credentials: {
        accessKeyId,
        secretAccessKey: caller.secretAccessKey,
        ...(caller.sessionToken ? { sessionToken: caller.sessionToken } : {}),
      },
      sha256: Sha256,
      applyChecksum: false,
    });
    const signed = await signer.sign(
      {
        method: request.method,
        protocol: 'http:',
        hostname: (headers.host ?? '').replace(/:\d+$/, ''),
        path: queryAt < 0 ? request.target : request.target.slice(0, queryAt),
        query: queryAt < 0 ? {} : queryOf(request.target.slice(queryAt + 1)),
        headers,
        body: request.body,
      },
      { signingDate, signableHeaders: new Set(signedHeaders) },
    );
    const expected = /Signature=([0-9a-f]{64})$/.exec(String(signed.headers.authorization))?.[1] ?? '';
    const matches =
      expected.length === signature.length && timingSafeEqual(Buffer.from(expected), Buffer.from(signature));
    return matches
      ? { ok: true, principal: principalOf(caller) }
      : refuse(SIGNATURE_MISMATCH, 'InvalidSignatureException');
  }
}

/** The callers of a `--callers` file: `{"callers": [{"accessKeyId", "secretAccessKey", "sessionToken"?, "userArn"?,
 * "userId"?}]}`. Throws an Error naming every problem (never a secret). */
export function parseCallersFile(value: unknown, fileName: string): Caller[] {
  const list = (value as { callers?: unknown } | null)?.callers;
  if (!Array.isArray(list) || !list.length)
    throw new Error(`the callers file ${fileName} must hold {"callers": [{"accessKeyId", "secretAccessKey", ...}]}`);
  const problems: string[] = [];
  const known = new Set(['accessKeyId', 'secretAccessKey', 'sessionToken', 'userArn', 'userId']);
  const callers = list.map((entry: unknown, i) => {
    const c = (entry ?? {}) as Record<string, unknown>;
    for (const field of ['accessKeyId', 'secretAccessKey'])
      if (typeof c[field] !== 'string' || !c[field]) problems.push(`callers[${i}].${field} is required`);
    for (const field of ['sessionToken', 'userArn', 'userId'])
      if (c[field] !== undefined && typeof c[field] !== 'string') problems.push(`callers[${i}].${field} must be text`);
    if (typeof c.userArn === 'string' && !/^arn:aws[a-z-]*:(iam|sts)::\d{12}:.+/.test(c.userArn))
      problems.push(`callers[${i}].userArn must be an IAM or STS ARN`);
    const unknown = Object.keys(c).filter((k) => !known.has(k));
    if (unknown.length) problems.push(`callers[${i}]: unknown field(s) ${unknown.map((k) => `"${k}"`).join(', ')}`);
    return c as unknown as Caller;
  });
  if (problems.length) throw new Error(`the callers file ${fileName} is invalid: ${problems.join('; ')}`);
  return callers;
}

/** The region the local API verifies signatures for, and the CLI signs for it with: AWS_REGION (or
 * AWS_DEFAULT_REGION) when set, else the local region. */
export function localRegion(): string {
  return process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || LOCAL_REGION;
}

/** The region a request to `url` is signed for: the one in an `execute-api` host name, else AWS_REGION (or
 * AWS_DEFAULT_REGION), else, for the local API on loopback, the local region. */
export function regionFor(url: URL): string | undefined {
  const named = /\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/.exec(url.hostname)?.[1];
  if (named) return named;
  if (['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) return localRegion();
  return process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || undefined;
}

/** Signs a request for `execute-api`: the headers to send (the host header left to the HTTP client, which sends
 * the same value). */
export async function signedHeaders(
  signer: SignatureV4,
  method: string,
  url: URL,
  headers: Record<string, string>,
  body: string | undefined,
  signingDate = new Date(),
): Promise<Record<string, string>> {
  const signed = await signer.sign(
    {
      method,
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port ? { port: Number(url.port) } : {}),
      path: url.pathname,
      query: queryOf(url.search.slice(1)),
      headers: { ...headers, host: url.host },
      ...(body !== undefined ? { body } : {}),
    },
    { signingDate },
  );
  const { host: _host, ...rest } = signed.headers as Record<string, string>;
  return rest;
}

export function executeApiSigner(
  region: string,
  credentials: ConstructorParameters<typeof SignatureV4>[0]['credentials'],
): SignatureV4 {
  return new SignatureV4({ service: EXECUTE_API, region, credentials, sha256: Sha256 });
}
