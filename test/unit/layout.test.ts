/**
 * One place per provider (issue 12): outside its own module (shared/providers/<provider>/), its function folders
 * and its simulator (local/simulators/<provider>.ts), a provider's name appears in the code (comments aside) of at
 * most 2 production files: the registry (shared/providers/index.ts) and PROVIDERS (shared/core/outcome.ts). Reads
 * functions/, shared/, infra/ and local/.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '#infra/provider-function.ts';
import { PROVIDERS } from '#shared/core/outcome.ts';
import { REGISTRY } from '#shared/providers/index.ts';

const ROOTS = ['functions', 'shared', 'infra', 'local'];
const MOST_FILES = 2;
function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

/** The code without its comments: block comments, and line comments that do not start inside a string or URL. */
function stripComments(text: string): string {
  let out = '';
  let i = 0;
  let quote: string | undefined;
  while (i < text.length) {
    const c = text[i] as string;
    if (quote) {
      out += c;
      if (c === '\\') {
        out += text[i + 1] ?? '';
        i += 2;
        continue;
      }
      if (c === quote) quote = undefined;
      i++;
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? text.length : end + 2;
    } else if (c === '/' && text[i + 1] === '/') {
      const end = text.indexOf('\n', i);
      i = end < 0 ? text.length : end;
    } else {
      if (c === "'" || c === '"' || c === '`') quote = c;
      out += c;
      i++;
    }
  }
  return out;
}

const files = ROOTS.flatMap((root) => sources(join(PROJECT_ROOT, root))).map((path) => ({
  path: relative(PROJECT_ROOT, path),
  code: stripComments(readFileSync(path, 'utf8')),
}));

/** Production files outside a provider's own places whose code names it. */
function namingFilesOutside(provider: (typeof REGISTRY)[number]): string[] {
  const own = [
    `shared/providers/${provider.name}/`,
    `local/simulators/${provider.name}.ts`,
    ...provider.functions.map((f) => `functions/${f.fn}/`),
  ];
  const name = new RegExp(provider.name, 'i');
  return files.filter((f) => !own.some((o) => f.path.startsWith(o)) && name.test(f.code)).map((f) => f.path);
}

describe('layout: one place per provider', () => {
  it('strips comments, not strings or URLs', () => {
    expect(stripComments("a /* b */ c // d\n'e // f' `g /* h */` http://x")).toBe("a  c \n'e // f' `g /* h */` http:");
  });

  it("lists the registry's providers in PROVIDERS, in the same order (code that needs only names reads PROVIDERS)", () => {
    expect(REGISTRY.map((p) => p.name)).toEqual([...PROVIDERS]);
  });

  for (const provider of REGISTRY) {
    it(`${provider.name} is named in the code of at most ${MOST_FILES} production files outside its own places`, () => {
      const naming = namingFilesOutside(provider);
      expect(naming.length, `files naming ${provider.name}:\n${naming.join('\n')}`).toBeLessThanOrEqual(MOST_FILES);
    });
  }
});
