/** A loopback server speaking the Secrets Manager GetSecretValue wire protocol (AWS JSON 1.1, TOOLING.md 5). */
import http from 'node:http';
import { listenOnLoopback, withBody } from '#local/listen.ts';

export interface FakeSecretsManager {
  url: string;
  /** Secret strings by id; a value of `{ error }` answers with that AWS error type. */
  secrets: Map<string, string | { error: string }>;
  calls: string[];
  close(): Promise<void>;
}

export async function startFakeSecretsManager(): Promise<FakeSecretsManager> {
  const secrets = new Map<string, string | { error: string }>();
  const calls: string[] = [];
  const server = http.createServer(
    withBody((req, res, body) => {
      const target = req.headers['x-amz-target'];
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
        res.end(JSON.stringify(body));
      };
      if (
        target !== 'secretsmanager.GetSecretValue' ||
        !String(req.headers.authorization).startsWith('AWS4-HMAC-SHA256')
      ) {
        return send(400, { __type: 'UnknownOperationException', message: `unsupported ${target}` });
      }
      const { SecretId } = JSON.parse(body) as { SecretId: string };
      calls.push(SecretId);
      const value = secrets.get(SecretId);
      if (value === undefined)
        return send(400, {
          __type: 'ResourceNotFoundException',
          message: "Secrets Manager can't find the specified secret.",
        });
      if (typeof value !== 'string')
        return send(400, { __type: value.error, message: `${value.error} for ${SecretId}` });
      send(200, {
        ARN: `arn:aws:secretsmanager:eu-west-1:111111111111:secret:${SecretId}-AbCdEf`,
        Name: SecretId,
        VersionId: 'v1',
        SecretString: value,
        VersionStages: ['AWSCURRENT'],
        CreatedDate: 1.7e9,
      });
    }),
  );
  const { url, close } = await listenOnLoopback(server);
  return {
    url,
    secrets,
    calls,
    close,
  };
}
