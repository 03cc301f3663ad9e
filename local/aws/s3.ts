/**
 * A local S3 for `npm start` and the tests: objects in a directory (or in memory), and the REST calls the batch
 * functions make (path-style GetObject, HeadObject and PutObject), so they use the real AWS SDK client against it.
 * The local Distributed Map reads and writes the same objects in process.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { dirname, join, relative } from 'node:path';
import { listenOnLoopback, withBody } from '#local/listen.ts';

export class LocalS3 {
  private readonly memory = new Map<string, string>();
  private closeServer: (() => Promise<void>) | undefined;
  url = '';
  private readonly root: string | undefined;

  /** `root`: a directory to keep objects in (they survive restarts); none keeps them in memory. */
  constructor(root?: string) {
    this.root = root;
  }

  private path(bucket: string, key: string): string {
    if (!this.root) throw new Error('no root');
    const file = join(this.root, bucket, key);
    if (relative(join(this.root, bucket), file).startsWith('..')) throw new Error(`key ${key} escapes the bucket`);
    return file;
  }

  get(bucket: string, key: string): string | undefined {
    if (!this.root) return this.memory.get(`${bucket}/${key}`);
    try {
      return readFileSync(this.path(bucket, key), 'utf8');
    } catch {
      return undefined;
    }
  }

  put(bucket: string, key: string, body: string): void {
    if (!this.root) {
      this.memory.set(`${bucket}/${key}`, body);
      return;
    }
    const file = this.path(bucket, key);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, body);
  }

  async start(port = 0, host = '127.0.0.1'): Promise<string> {
    const server = http.createServer(withBody((req, res, body) => this.serve(req, res, body)));
    const { url, close } = await listenOnLoopback(server, port, host);
    this.closeServer = close;
    this.url = url;
    return url;
  }

  async stop(): Promise<void> {
    const close = this.closeServer;
    this.closeServer = undefined;
    await close?.();
  }

  private serve(req: http.IncomingMessage, res: http.ServerResponse, body: string): void {
    const url = new URL(req.url ?? '/', 'http://s3');
    const [, bucket = '', ...rest] = url.pathname.split('/');
    const key = decodeURIComponent(rest.join('/'));
    const error = (status: number, code: string, message: string) => {
      res.writeHead(status, { 'content-type': 'application/xml' });
      res.end(
        req.method === 'HEAD'
          ? undefined
          : `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message><Key>${key}</Key></Error>`,
      );
    };
    if (!bucket) {
      error(400, 'InvalidRequest', 'path-style requests only: /bucket/key');
      return;
    }
    if (req.method === 'PUT') {
      this.put(bucket, key, body);
      res.writeHead(200, { etag: `"${createHash('md5').update(body).digest('hex')}"` });
      return void res.end();
    }
    const object = this.get(bucket, key);
    if (object === undefined) {
      error(404, 'NoSuchKey', 'The specified key does not exist.');
      return;
    }
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': String(Buffer.byteLength(object)),
      etag: `"${createHash('md5').update(object).digest('hex')}"`,
    });
    res.end(req.method === 'HEAD' ? undefined : object);
  }
}
