/**
 * A loopback server speaking the EventBridge Scheduler REST API the way the service answers it, recording every
 * request: what the AWS path of the expirations function sends is asserted on the wire.
 */
import http from 'node:http';
import { listenOnLoopback, withBody } from '#local/listen.ts';

export interface RecordedCall {
  method: string;
  path: string;
  query: Record<string, string>;
  body: Record<string, unknown>;
}

export async function startSchedulerApi() {
  const schedules = new Map<string, Record<string, unknown>>();
  const calls: RecordedCall[] = [];
  const server = http.createServer(
    withBody((req, res, text) => {
      const url = new URL(req.url ?? '/', 'http://scheduler');
      const body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
      calls.push({ method: req.method ?? '', path: url.pathname, query: Object.fromEntries(url.searchParams), body });
      const name = decodeURIComponent(url.pathname.replace(/^\/schedules\//, ''));
      const group = url.searchParams.get('groupName') ?? String(body.GroupName ?? 'default');
      const key = `${group}/${name}`;
      const send = (status: number, payload: unknown, type?: string) => {
        res.writeHead(status, { 'content-type': 'application/json', ...(type ? { 'x-amzn-errortype': type } : {}) });
        res.end(JSON.stringify(payload));
      };
      const arn = `arn:aws:scheduler:eu-west-1:111111111111:schedule/${group}/${name}`;
      if (req.method === 'POST') {
        if (schedules.has(key)) return send(409, { Message: `Schedule ${name} already exists.` }, 'ConflictException');
        schedules.set(key, { ...body, Name: name, Arn: arn });
        return send(200, { ScheduleArn: arn });
      }
      if (req.method === 'PUT') {
        if (!schedules.has(key))
          return send(404, { Message: `Schedule ${name} does not exist.` }, 'ResourceNotFoundException');
        schedules.set(key, { ...body, Name: name, Arn: arn });
        return send(200, { ScheduleArn: arn });
      }
      const found = schedules.get(key);
      if (!found) return send(404, { Message: `Schedule ${name} does not exist.` }, 'ResourceNotFoundException');
      if (req.method === 'DELETE') {
        schedules.delete(key);
        return send(200, {});
      }
      send(200, found);
    }),
  );
  const { url, close } = await listenOnLoopback(server);
  return {
    url,
    schedules,
    calls,
    close,
  };
}
