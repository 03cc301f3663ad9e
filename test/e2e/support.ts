/** Spawns `npm start` as a user would, and checks answers against the OpenAPI document it serves. */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

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

export interface Exchange {
  status: number;
  body: Record<string, unknown> & { outcome?: string; outcomes?: { outcome: string }[] };
  headers: Headers;
}

/** Checks requests and responses against the OpenAPI document the running system serves. */
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
  readonly checked: string[] = [];

  constructor(doc: unknown) {
    addFormats.default(this.ajv);
    this.doc = doc as typeof this.doc;
    this.ajv.addSchema({ $id: 'openapi.json', ...(doc as object) });
  }

  private template(path: string): string {
    for (const template of Object.keys(this.doc.paths)) {
      const pattern = new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`);
      if (pattern.test(path)) return template;
    }
    throw new Error(`${path} is not in the OpenAPI document`);
  }

  private validate(pointer: string, value: unknown, what: string): void {
    const validate = this.ajv.getSchema(`openapi.json#${pointer}`);
    if (!validate) throw new Error(`${what}: no schema at ${pointer}`);
    if (!validate(value))
      throw new Error(
        `${what} does not match the OpenAPI document: ${this.ajv.errorsText(validate.errors)}\n${JSON.stringify(value).slice(0, 500)}`,
      );
  }

  /** Sends a request, checking its body against the document first (unless it is meant to be invalid) and the
   * answer after. */
  async send(
    base: string,
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
    options: { invalidRequest?: boolean } = {},
  ): Promise<Exchange> {
    const template = this.template(path.split('?')[0] ?? path);
    const escaped = template.replace(/~/g, '~0').replace(/\//g, '~1');
    const op = this.doc.paths[template]?.[method.toLowerCase()];
    if (!op) throw new Error(`${method} ${template} is not in the OpenAPI document`);
    if (body !== undefined && op.requestBody && !options.invalidRequest)
      this.validate(
        `/paths/${escaped}/${method.toLowerCase()}/requestBody/content/application~1json/schema`,
        body,
        `request ${method} ${path}`,
      );
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...headers },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    const parsed = text ? (JSON.parse(text) as Exchange['body']) : {};
    const response = op.responses[String(res.status)];
    if (!response)
      throw new Error(
        `${method} ${template} answered ${res.status}, a status the OpenAPI document does not list: ${text.slice(0, 300)}`,
      );
    if (response.content)
      this.validate(
        `/paths/${escaped}/${method.toLowerCase()}/responses/${res.status}/content/application~1json/schema`,
        parsed,
        `response ${res.status} of ${method} ${path}`,
      );
    this.checked.push(`${method} ${template} ${res.status}`);
    return { status: res.status, body: parsed, headers: res.headers };
  }
}
