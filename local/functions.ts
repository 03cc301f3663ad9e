/** Every Lambda handler of the project, by function name (its folder under functions/), loaded in-process. */
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { LocalLambda } from './state-machine.ts';

const FUNCTIONS_DIR = fileURLToPath(new URL('../functions/', import.meta.url));

export async function loadFunctions(): Promise<Record<string, LocalLambda>> {
  const names = readdirSync(FUNCTIONS_DIR, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name);
  const entries = await Promise.all(
    names.map(async (name) => {
      const module = (await import(`../functions/${name}/handler.ts`)) as { handler: LocalLambda };
      return [name, module.handler] as const;
    }),
  );
  return Object.fromEntries(entries);
}
