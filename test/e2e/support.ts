/** Spawns `npm start` as a user would, and drives it with a client generated from the OpenAPI document it serves. */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import createClient, { type Client } from 'openapi-fetch';
import type { paths } from './api.generated.ts';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface Started {
  child: ChildProcess;
  url: string;
  output: () => string;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** With `crashable`: SIGKILL to npm and the system it runs (its process group), as a crash would; resolves once
   * npm is gone. */
  crash(): Promise<void>;
}

const ROOT = new URL('../../', import.meta.url).pathname;

export async function startSystem(
  args: string[] = [],
  env: Record<string, string> = {},
  options: { data?: string; crashable?: boolean } = {},
): Promise<Started> {
  const port = await freePort();
  const data = options.data ?? mkdtempSync(join(tmpdir(), 'npm-start-'));
  let out = '';
  const child = spawn('npm', ['start', '--silent', '--', '--port', String(port), '--data', data, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so a crash can take npm and the node it runs at once.
    detached: options.crashable ?? false,
  });
  child.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 90_000;
  while (!out.includes(`Ready: ${url}`)) {
    if (child.exitCode !== null) throw new Error(`npm start exited (${child.exitCode}):\n${out}`);
    if (Date.now() > deadline) throw new Error(`npm start did not become ready:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    child,
    url,
    output: () => out,
    stop: async (signal = 'SIGTERM') => {
      child.kill(signal);
      return exited;
    },
    crash: async () => {
      if (!options.crashable || child.pid === undefined) throw new Error('startSystem(..., { crashable: true }) only');
      process.kill(-child.pid, 'SIGKILL');
      await exited;
    },
  };
}

/** Runs `npm start` expecting it to refuse to start; resolves with its exit code and output. */
export async function refusedStart(args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn('npm', ['start', '--silent', '--', ...args], {
    cwd: ROOT,
    env: process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => {
    output += c.toString();
  });
  child.stderr.on('data', (c: Buffer) => {
    output += c.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  return { code, output };
}

/** The client the end-to-end tests drive `npm start` with: openapi-fetch over the types openapi-typescript generated
 * from the document (api.generated.ts), so a call the document does not describe fails the typecheck. */
export type ApiClient = Client<paths>;

/** Checks requests and answers against the OpenAPI document the running system serves, as middleware of a
 * generated client: an answer the document does not describe fails the call. */
export class ContractChecker {
  private readonly ajv = new Ajv2020({ strict: false, allErrors: true });
  private readonly doc: {
    paths: Record<
      string,
      Record<
        string,
        {
          requestBody?: { content: Record<string, { schema: unknown }> };
          responses: Record<string, { content?: Record<string, { schema: unknown }> }>;
        }
      >
    >;
  };
  /** Every exchange checked, as `METHOD /template STATUS`. */
  readonly checked: string[] = [];

  constructor(doc: unknown) {
    addFormats.default(this.ajv);
    this.doc = doc as typeof this.doc;
    this.ajv.addSchema({ $id: 'openapi.json', ...(doc as object) });
  }

  /** Every operation of the document, as `METHOD /template`. */
  operations(): string[] {
    return Object.entries(this.doc.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`),
    );
  }

  private validate(pointer: string, value: unknown, what: string): void {
    const validate = this.ajv.getSchema(`openapi.json#${pointer}`);
    if (!validate) throw new Error(`${what}: no schema at ${pointer}`);
    if (!validate(value))
      throw new Error(
        `${what} does not match the OpenAPI document: ${this.ajv.errorsText(validate.errors)}\n${JSON.stringify(value).slice(0, 500)}`,
      );
  }

  /** A generated client for the API at `baseUrl`. Request bodies are checked against the document first, unless
   * `invalidRequests` (to send what the document forbids); every answer after. */
  client(baseUrl: string, options: { invalidRequests?: boolean } = {}): ApiClient {
    const client = createClient<paths>({ baseUrl });
    const operation = (method: string, template: string) => {
      const op = this.doc.paths[template]?.[method.toLowerCase()];
      if (!op) throw new Error(`${method} ${template} is not in the OpenAPI document`);
      return { op, pointer: `/paths/${template.replace(/~/g, '~0').replace(/\//g, '~1')}/${method.toLowerCase()}` };
    };
    client.use({
      onRequest: async ({ request, schemaPath }) => {
        const { op, pointer } = operation(request.method, schemaPath);
        const text = await request.clone().text();
        if (text && op.requestBody && !options.invalidRequests)
          this.validate(
            `${pointer}/requestBody/content/application~1json/schema`,
            JSON.parse(text),
            `request ${request.method} ${request.url}`,
          );
      },
      onResponse: async ({ request, response, schemaPath }) => {
        const { op, pointer } = operation(request.method, schemaPath);
        const text = await response.clone().text();
        const declared = op.responses[String(response.status)];
        if (!declared)
          throw new Error(
            `${request.method} ${schemaPath} answered ${response.status}, a status the OpenAPI document does not list: ${text.slice(0, 300)}`,
          );
        if (declared.content)
          this.validate(
            `${pointer}/responses/${response.status}/content/application~1json/schema`,
            text ? JSON.parse(text) : undefined,
            `response ${response.status} of ${request.method} ${request.url}`,
          );
        else if (text) throw new Error(`${request.method} ${schemaPath} answered ${response.status} with a body`);
        this.checked.push(`${request.method} ${schemaPath} ${response.status}`);
      },
    });
    return client;
  }
}
