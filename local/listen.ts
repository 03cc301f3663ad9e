/** Loopback servers for `npm start` and the tests: listening and closing, and reading a request's body. */
import type http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Starts `server` on loopback: its URL, and a close that also ends kept-alive connections (so it returns at once).
 * A port in use rejects (EADDRINUSE) rather than crashing the process. */
export async function listenOnLoopback(
  server: http.Server,
  port = 0,
  host = '127.0.0.1',
): Promise<{ url: string; close: () => Promise<void> }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    url: `http://${host}:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A request listener that reads the whole body (as UTF-8 text) before handing the request on. */
export function withBody(
  handle: (req: http.IncomingMessage, res: http.ServerResponse, body: string) => unknown,
): http.RequestListener {
  return (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => void handle(req, res, Buffer.concat(chunks).toString('utf8')));
  };
}
