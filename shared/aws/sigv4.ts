/**
 * AWS Signature Version 4 for one kind of request: the JSON POSTs of shared/aws/dynamodb.ts (no query string, a few
 * headers), by the steps of AWS's "Create a signed AWS API request": canonical request, string to sign, a signing
 * key derived once a day, signature. It signs exactly as the AWS SDK's signer (@smithy/signature-v4) does with its
 * defaults, x-amz-content-sha256 included (test/unit/sigv4.test.ts compares the two on the same requests), at a
 * third of the CPU: the SDK's signer takes every request shape through a chain of promises, and derives a cache key
 * for the signing key with an HMAC on every request. Measured on 2026-12-02 (20,000 signatures in a loop, five runs):
 * about 21 µs a signature against 7; a whole DynamoDB call against dynalite, 236 µs of the client's CPU against 196.
 * The SDK's signer stays in the bundle for Secrets Manager; this adds no dependency.
 */
import { createHash, createHmac, createSecretKey, type KeyObject } from 'node:crypto';

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
}

const sha256Hex = (data: string) => createHash('sha256').update(data).digest('hex');

/** RFC 3986 percent-encoding, as SigV4 wants it (encodeURIComponent leaves !'()* alone). */
const escapeUri = (value: string) =>
  encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/** The canonical URI of a path as URL gives it (percent-encoded, dot segments already resolved), for every service
 * but S3, as the SDK's signer makes it: empty segments dropped, then encoded once more (AWS's double encoding),
 * slashes kept. */
function canonicalPath(path: string): string {
  const segments = path.split('/').filter((segment) => segment !== '');
  const trailing = segments.length > 0 && path.endsWith('/') ? '/' : '';
  return escapeUri(`/${segments.join('/')}${trailing}`).replace(/%2F/g, '/');
}

/** Signs the JSON POSTs to one endpoint (its host and path fixed) for one service and region. */
export class JsonPostSigner {
  private readonly service: string;
  private readonly region: string;
  private readonly host: string;
  private readonly path: string;
  /** The signing key of one day and secret: four HMACs, derived once and kept as a key object (node:crypto checks a
   * key object in a fraction of the time it spends on raw bytes). */
  private cached: { day: string; secret: string; key: KeyObject } | undefined;

  constructor(service: string, region: string, endpoint: URL) {
    this.service = service;
    this.region = region;
    this.host = endpoint.host;
    this.path = canonicalPath(endpoint.pathname);
  }

  /**
   * The headers to send with `body`: `headers` (lower-case names) with host, x-amz-date, x-amz-content-sha256, the
   * session token if any, and authorization added.
   */
  sign(
    credentials: Credentials,
    headers: Record<string, string>,
    body: string,
    now = new Date(),
  ): Record<string, string> {
    if (typeof credentials?.accessKeyId !== 'string' || typeof credentials.secretAccessKey !== 'string')
      throw new Error('Resolved credential object is not valid');
    const iso = now.toISOString();
    const longDate = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}T${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
    const day = longDate.slice(0, 8);
    const payloadHash = sha256Hex(body);
    const signed: Record<string, string> = {
      ...headers,
      host: this.host,
      'x-amz-content-sha256': payloadHash,
      'x-amz-date': longDate,
    };
    if (credentials.sessionToken) signed['x-amz-security-token'] = credentials.sessionToken;
    const names = Object.keys(signed).sort();
    const signedHeaders = names.join(';');
    let canonicalHeaders = '';
    for (const name of names) canonicalHeaders += `${name}:${String(signed[name]).trim().replace(/\s+/g, ' ')}\n`;
    const scope = `${day}/${this.region}/${this.service}/aws4_request`;
    const canonicalRequest = `POST\n${this.path}\n\n${canonicalHeaders}\n${signedHeaders}\n${payloadHash}`;
    const signature = createHmac('sha256', this.signingKey(credentials.secretAccessKey, day))
      .update(`AWS4-HMAC-SHA256\n${longDate}\n${scope}\n${sha256Hex(canonicalRequest)}`)
      .digest('hex');
    signed.authorization = `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
    return signed;
  }

  private signingKey(secret: string, day: string): KeyObject {
    if (this.cached?.day !== day || this.cached.secret !== secret) {
      const mac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();
      const key = mac(mac(mac(mac(`AWS4${secret}`, day), this.region), this.service), 'aws4_request');
      this.cached = { day, secret, key: createSecretKey(key) };
    }
    return this.cached.key;
  }
}
