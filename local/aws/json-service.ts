/** A loopback server for an AWS JSON-protocol service (`X-Amz-Target: <Prefix>.<Operation>`), as the SDK calls it. */
import http from 'node:http';
import { listenOnLoopback, withBody } from '#local/listen.ts';

export class AwsServiceError extends Error {
  readonly type: string;
  readonly status: number;
  constructor(type: string, message: string, status = 400) {
    super(message);
    this.type = type;
    this.status = status;
  }
}

export type Operations = Record<string, (input: Record<string, unknown>) => unknown>;

export async function startJsonService(
  prefix: string,
  contentType: string,
  operations: Operations,
  port = 0,
): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer(
    withBody(async (req, res, body) => {
      const send = (status: number, payload: unknown) => {
        res.writeHead(status, { 'content-type': contentType });
        res.end(JSON.stringify(payload));
      };
      const target = String(req.headers['x-amz-target'] ?? '');
      const operation = target.startsWith(`${prefix}.`) ? operations[target.slice(prefix.length + 1)] : undefined;
      if (!operation)
        return send(400, { __type: 'UnknownOperationException', message: `unsupported operation ${target}` });
      try {
        const input = body ? (JSON.parse(body) as Record<string, unknown>) : {};
        send(200, (await operation(input)) ?? {});
      } catch (error) {
        if (error instanceof AwsServiceError) return send(error.status, { __type: error.type, message: error.message });
        send(500, { __type: 'InternalServerError', message: (error as Error).message });
      }
    }),
  );
  return listenOnLoopback(server, port);
}
