/**
 * The local API with IAM auth, in process: requests signed by the AWS SDK's own signer (as the CLI signs) pass,
 * with the principal in `requestContext.authorizer.iam` as API Gateway passes it; anything else gets API
 * Gateway's 403 and never reaches the function.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalApi } from '#local/api.ts';
import { IamVerifier, regionFor, Sha256, signedHeaders } from '#local/sigv4.ts';
import type { LocalLambda } from '#local/state-machine.ts';
import { JsonPostSigner } from '#shared/aws/sigv4.ts';

const USER = {
  accessKeyId: 'AKIAUNITUNITUNIT0001',
  secretAccessKey: 'unit-secret-one',
  userArn: 'arn:aws:iam::123456789012:user/ops',
};
const ROLE = {
  accessKeyId: 'ASIAUNITUNITUNIT0002',
  secretAccessKey: 'unit-secret-two',
  sessionToken: 'unit-session-token',
  userArn: 'arn:aws:sts::123456789012:assumed-role/Operators/alice',
};

describe('local API with --auth iam', () => {
  const events: APIGatewayProxyEventV2[] = [];
  const record: LocalLambda = async (event) => {
    events.push(event as unknown as APIGatewayProxyEventV2);
    return { statusCode: 200, body: JSON.stringify({ ok: true }) };
  };
  const api = new LocalApi({
    functions: { 'cancel-billing-request': record, cancellations: record },
    openapi: () => ({}),
    auth: new IamVerifier([USER, ROLE], 'eu-west-1'),
  });
  beforeAll(async () => {
    await api.listen(0);
  });
  afterAll(async () => {
    await api.close();
  });

  async function send(
    path: string,
    options: {
      method?: string;
      body?: string;
      signAs?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
      region?: string;
      service?: string;
      date?: Date;
      after?: (headers: Record<string, string>) => Record<string, string>;
      sentBody?: string;
      sendPath?: string;
    } = {},
  ) {
    const url = new URL(`${api.url}${path}`);
    const method = options.method ?? 'POST';
    let headers: Record<string, string> = { 'content-type': 'application/json' };
    if (options.signAs) {
      const signer = new SignatureV4({
        service: options.service ?? 'execute-api',
        region: options.region ?? 'eu-west-1',
        credentials: options.signAs,
        sha256: Sha256,
      });
      headers = await signedHeaders(signer, method, url, headers, options.body, options.date);
      if (options.after) headers = options.after(headers);
    }
    const body = options.sentBody ?? options.body;
    const target = options.sendPath ? new URL(`${api.url}${options.sendPath}`) : url;
    const res = await fetch(target, { method, headers, ...(body !== undefined ? { body } : {}) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
  }

  const cancel = '/v1/gocardless/billing-requests/BRQ000UNIT01/cancel';

  it('passes a signed request on with the principal as API Gateway does (an IAM user)', async () => {
    events.length = 0;
    const answer = await send(cancel, { body: '{"metadata":{"a":"b"}}', signAs: USER });
    expect(answer).toMatchObject({ status: 200, body: { ok: true } });
    expect(events).toHaveLength(1);
    expect(events[0]?.requestContext).toMatchObject({
      authorizer: {
        iam: {
          accessKey: USER.accessKeyId,
          accountId: '123456789012',
          callerId: expect.stringMatching(/^AIDA[0-9A-F]{17}$/),
          cognitoIdentity: null,
          principalOrgId: null,
          userArn: USER.userArn,
          userId: expect.stringMatching(/^AIDA[0-9A-F]{17}$/),
        },
      },
    });
    expect(events[0]?.body).toBe('{"metadata":{"a":"b"}}');
  });

  it('accepts temporary credentials with their session token (an assumed role), and a query string in any order', async () => {
    events.length = 0;
    const answer = await send('/v1/cancellations?provider=gocardless&billingRequestId=BRQ000UNIT01&a=1&a=2', {
      method: 'GET',
      signAs: ROLE,
    });
    expect(answer.status).toBe(200);
    expect(events[0]).toMatchObject({
      rawQueryString: 'provider=gocardless&billingRequestId=BRQ000UNIT01&a=1&a=2',
      requestContext: {
        authorizer: {
          iam: {
            accessKey: ROLE.accessKeyId,
            userArn: ROLE.userArn,
            userId: expect.stringMatching(/^AROA[0-9A-F]{17}:alice$/),
          },
        },
      },
    });
  });

  it('answers 403 as API Gateway does, and never calls the function', async () => {
    events.length = 0;
    const mismatch =
      'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.';
    expect(await send(cancel, { body: '{}' })).toMatchObject({ status: 403, body: { message: 'Forbidden' } });
    const wrongSecret = await send(cancel, { body: '{}', signAs: { ...USER, secretAccessKey: 'wrong' } });
    expect(wrongSecret).toMatchObject({ status: 403, body: { message: mismatch } });
    expect(wrongSecret.headers.get('x-amzn-errortype')).toBe('InvalidSignatureException');
    expect(
      await send(cancel, { body: '{}', signAs: { accessKeyId: 'AKIANOBODY', secretAccessKey: 'x' } }),
    ).toMatchObject({ status: 403, body: { message: 'The security token included in the request is invalid.' } });
    // The body is covered: another body under the same signature.
    expect(await send(cancel, { body: '{}', sentBody: '{"metadata":{"x":"y"}}', signAs: USER })).toMatchObject({
      status: 403,
      body: { message: mismatch },
    });
    // Another path, or one more query parameter, under the same signature.
    expect(
      await send(cancel, { body: '{}', signAs: USER, sendPath: '/v1/gocardless/billing-requests/BRQ000UNIT02/cancel' }),
    ).toMatchObject({ status: 403, body: { message: mismatch } });
    expect(
      await send('/v1/cancellations?provider=gocardless', {
        method: 'GET',
        signAs: USER,
        sendPath: '/v1/cancellations?provider=gocardless&x=1',
      }),
    ).toMatchObject({ status: 403, body: { message: mismatch } });
    // A session token that is not the one issued, or none.
    expect(await send(cancel, { body: '{}', signAs: { ...ROLE, sessionToken: 'another-token' } })).toMatchObject({
      status: 403,
      body: { message: 'The security token included in the request is invalid.' },
    });
    expect(
      await send(cancel, {
        body: '{}',
        signAs: { accessKeyId: ROLE.accessKeyId, secretAccessKey: ROLE.secretAccessKey },
      }),
    ).toMatchObject({ status: 403, body: { message: 'The security token included in the request is invalid.' } });
    // Another region, another service, a signature ten minutes old.
    expect((await send(cancel, { body: '{}', signAs: USER, region: 'us-east-1' })).body.message).toBe(
      "Credential should be scoped to a valid region, not 'us-east-1'. ",
    );
    expect((await send(cancel, { body: '{}', signAs: USER, service: 's3' })).body.message).toBe(
      "Credential should be scoped to correct service: 'execute-api'. ",
    );
    const expired = await send(cancel, { body: '{}', signAs: USER, date: new Date(Date.now() - 10 * 60_000) });
    expect(expired.status).toBe(403);
    expect(String(expired.body.message)).toMatch(/^Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z/);
    // Not SigV4 at all.
    expect(
      await send(cancel, { body: '{}', signAs: USER, after: (h) => ({ ...h, authorization: 'Bearer abc' }) }),
    ).toMatchObject({ status: 403, body: { message: 'Forbidden' } });
    expect(events).toHaveLength(0);
  });
});

describe('regionFor', () => {
  it("takes an execute-api URL's region, else AWS_REGION, else the local region for loopback", () => {
    expect(regionFor(new URL('https://abc123.execute-api.ap-southeast-2.amazonaws.com/'))).toBe('ap-southeast-2');
    const saved = { AWS_REGION: process.env.AWS_REGION, AWS_DEFAULT_REGION: process.env.AWS_DEFAULT_REGION };
    try {
      process.env.AWS_REGION = 'us-west-2';
      expect(regionFor(new URL('https://api.example.com/'))).toBe('us-west-2');
      expect(regionFor(new URL('http://127.0.0.1:3000'))).toBe('us-west-2');
      delete process.env.AWS_REGION;
      delete process.env.AWS_DEFAULT_REGION;
      expect(regionFor(new URL('https://api.example.com/'))).toBeUndefined();
      expect(regionFor(new URL('http://127.0.0.1:3000'))).toBe('eu-west-1');
    } finally {
      for (const [name, value] of Object.entries(saved))
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
    }
  });
});

describe('the signer hash (local/sigv4.ts Sha256)', () => {
  it('MACs with a key given as bytes exactly as node:crypto does, each time the same bytes come back', async () => {
    const key = randomBytes(32);
    const mac = async (data: string) => {
      const hash = new Sha256(key);
      hash.update(data);
      return Buffer.from(await hash.digest()).toString('hex');
    };
    for (const data of ['AWS4-HMAC-SHA256\n20150830T123600Z', 'another string to sign', '']) {
      // The second time the same key object is kept: the answer must not change.
      for (let i = 0; i < 2; i++) expect(await mac(data)).toBe(createHmac('sha256', key).update(data).digest('hex'));
    }
    // A key of other bytes gives another MAC, not the kept one's.
    const other = new Sha256(randomBytes(32));
    other.update('another string to sign');
    expect(Buffer.from(await other.digest()).toString('hex')).not.toBe(await mac('another string to sign'));
  });
});

describe('JsonPostSigner (shared/aws/sigv4.ts): the DynamoDB calls signed exactly as the AWS SDK signs them', () => {
  const LONG_TERM = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
  const TEMPORARY = { ...ROLE, sessionToken: 'FwoGZXIvYXdzEJr//////////wEaDOTOKEN+with/slashes==' };
  /** The SDK's signer, as shared/aws/dynamodb.ts used it before it had its own: every default, so x-amz-content-sha256
   * is signed too. */
  async function sdk(
    credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string },
    region: string,
    endpoint: URL,
    headers: Record<string, string>,
    body: string,
    date: Date,
  ) {
    const signer = new SignatureV4({ service: 'dynamodb', region, credentials, sha256: Sha256 });
    const signed = await signer.sign(
      {
        method: 'POST',
        protocol: endpoint.protocol,
        hostname: endpoint.hostname,
        ...(endpoint.port ? { port: Number(endpoint.port) } : {}),
        path: endpoint.pathname,
        headers: { ...headers, host: endpoint.host },
        body,
      },
      { signingDate: date },
    );
    return signed.headers;
  }

  it('gives the same headers and signature for long-term and temporary credentials, any body, region and endpoint', async () => {
    const headers = (operation: string) => ({
      'content-type': 'application/x-amz-json-1.0',
      'x-amz-target': `DynamoDB_20120810.${operation}`,
    });
    const cases = [
      [
        LONG_TERM,
        'us-east-1',
        'https://dynamodb.us-east-1.amazonaws.com/',
        'GetItem',
        '{"TableName":"t","Key":{"id":{"S":"a"}}}',
      ],
      [
        TEMPORARY,
        'eu-west-1',
        'https://dynamodb.eu-west-1.amazonaws.com/',
        'PutItem',
        JSON.stringify({ Item: { r: { S: 'réglé ✓ 取消' } } }),
      ],
      [TEMPORARY, 'ap-southeast-2', 'http://127.0.0.1:4567', 'Query', ''],
      // A proxy with a path: an empty segment dropped, the path encoded twice, as for every service but S3.
      [LONG_TERM, 'eu-central-1', 'https://proxy.example.com/dynamo db//v1(x)/', 'UpdateItem', '{}'],
    ] as const;
    const date = new Date('2026-12-02T03:36:30.123Z');
    for (const [credentials, region, endpoint, operation, body] of cases) {
      const url = new URL(endpoint);
      const ours = new JsonPostSigner('dynamodb', region, url).sign(credentials, headers(operation), body, date);
      expect(ours).toEqual(await sdk(credentials, region, url, headers(operation), body, date));
      expect(ours.authorization).toMatch(
        new RegExp(
          `^AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/20261202/${region}/dynamodb/aws4_request, `,
        ),
      );
    }
    // Header values are signed trimmed, inner runs of spaces as one.
    const spaced = { 'content-type': '  application/x-amz-json-1.0 ', 'x-amz-target': 'DynamoDB_20120810.GetItem' };
    const url = new URL('https://dynamodb.us-east-1.amazonaws.com/');
    expect(new JsonPostSigner('dynamodb', 'us-east-1', url).sign(LONG_TERM, spaced, '{}', date).authorization).toBe(
      (await sdk(LONG_TERM, 'us-east-1', url, spaced, '{}', date)).authorization,
    );
  });

  it('derives a new signing key when the day or the secret changes, and signs as the SDK does after each', async () => {
    const url = new URL('https://dynamodb.eu-west-1.amazonaws.com/');
    const signer = new JsonPostSigner('dynamodb', 'eu-west-1', url);
    const headers = { 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': 'DynamoDB_20120810.GetItem' };
    const rotated = { ...LONG_TERM, secretAccessKey: 'rotated-secret' };
    const steps = [
      [LONG_TERM, '2026-12-01T23:59:59.900Z'],
      [LONG_TERM, '2026-12-02T00:00:00.100Z'],
      [rotated, '2026-12-02T00:00:01.000Z'],
      [LONG_TERM, '2026-12-01T23:59:58.000Z'],
    ] as const;
    const signatures = new Set<string>();
    for (const [credentials, at] of steps) {
      const ours = signer.sign(credentials, headers, '{}', new Date(at));
      expect(ours.authorization).toBe(
        (await sdk(credentials, 'eu-west-1', url, headers, '{}', new Date(at))).authorization,
      );
      signatures.add(ours.authorization as string);
    }
    expect(signatures.size).toBe(steps.length);
  });

  it('refuses credentials without a key id or secret, as the SDK does', () => {
    const signer = new JsonPostSigner('dynamodb', 'eu-west-1', new URL('https://dynamodb.eu-west-1.amazonaws.com/'));
    expect(() => signer.sign({ accessKeyId: 'AKIDEXAMPLE' } as never, {}, '')).toThrow(/credential/);
  });
});
