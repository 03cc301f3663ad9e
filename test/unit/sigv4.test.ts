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
import { IamVerifier, regionFor, signedHeaders } from '#local/sigv4.ts';
import type { LocalLambda } from '#local/state-machine.ts';
import { Sha256 } from '#shared/aws/dynamodb.ts';

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

describe('the signer hash (shared/aws/dynamodb.ts Sha256)', () => {
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
