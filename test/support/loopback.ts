/** A scripted HTTP server on 127.0.0.1: each request takes the next responder from the script (the last one
 * repeats), and every request is recorded. Enough to prove client behaviour over real sockets. */
import http from 'node:http';
import { listenOnLoopback, withBody } from '#local/listen.ts';

export interface Recorded {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  at: number;
  /** The client's port: equal ports mean one reused connection. */
  remotePort: number | undefined;
}

export type Responder = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void;

export interface Loopback {
  url: string;
  requests: Recorded[];
  script(...responders: Responder[]): void;
  close(): Promise<void>;
}

export async function startLoopback(...initial: Responder[]): Promise<Loopback> {
  let responders = initial;
  let next = 0;
  const requests: Recorded[] = [];
  const server = http.createServer(
    withBody((req, res, body) => {
      requests.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body,
        at: Date.now(),
        remotePort: req.socket.remotePort,
      });
      const responder = responders[Math.min(next++, responders.length - 1)];
      if (responder) responder(req, res, body);
      else res.writeHead(500).end('no responder scripted');
    }),
  );
  const { url, close } = await listenOnLoopback(server);
  return {
    url,
    requests,
    script(...r) {
      responders = r;
      next = 0;
    },
    close,
  };
}

export const reply =
  (status: number, body: unknown = '', headers: Record<string, string> = {}): Responder =>
  (_req, res) => {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json', ...headers });
    res.end(text);
  };

/** Accepts the request and never answers. */
export const hang: Responder = () => {};

/** Destroys the connection without an answer. */
export const reset: Responder = (req) => {
  req.socket.destroy();
};

/** Announces a longer body than it sends, then closes: a truncated response. */
export const truncated =
  (body: string): Responder =>
  (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(body.length + 50) });
    res.write(body);
    res.socket?.destroy();
  };
