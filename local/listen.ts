/** Starts a server on loopback: its URL, and a close that also ends kept-alive connections (so it returns at once). */
import type http from 'node:http';
import type { AddressInfo } from 'node:net';

export async function listenOnLoopback(
  server: http.Server,
  port = 0,
  host = '127.0.0.1',
): Promise<{ url: string; close: () => Promise<void> }> {
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return {
    url: `http://${host}:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
