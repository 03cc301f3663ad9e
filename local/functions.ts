/**
 * Every Lambda function of the stack as the local Lambda service runs it: its handler (`functions/<operation>/`),
 * and, from the synthesized template, its reserved concurrency, timeout, memory and plain environment values; the
 * variables that refer to other resources (table names, the secret) the local cloud fills in, for exactly the
 * functions the template gives them to.
 */
import { fileURLToPath } from 'node:url';
import type { FunctionSpec } from '#local/lambda/service.ts';
import type { Template } from './asl.ts';

const FUNCTIONS_DIR = fileURLToPath(new URL('../functions/', import.meta.url));

/** A function's local name: its operation, and `<operation>-api` for an operation's API deployment (tagged
 * `deployment: api` in the template; shared/providers/provider.ts, `api`). */
export function localFunctionName(properties: Record<string, unknown> | undefined): string | undefined {
  const variables = (properties?.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables;
  const operation = variables?.OPERATION;
  if (typeof operation !== 'string') return undefined;
  const tags = (properties?.Tags ?? []) as { Key?: string; Value?: string }[];
  return tags.some((t) => t.Key === 'deployment' && t.Value === 'api') ? apiDeploymentName(operation) : operation;
}

/** The local name of an operation's API deployment. */
export function apiDeploymentName(operation: string): string {
  return `${operation}-api`;
}

export function functionSpecs(template: Template): FunctionSpec[] {
  return Object.values(template.Resources)
    .filter((r) => r.Type === 'AWS::Lambda::Function')
    .map((r) => {
      const p = r.Properties ?? {};
      const variables = ((p.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables ??
        {}) as Record<string, unknown>;
      const env = Object.fromEntries(
        Object.entries(variables).filter((e): e is [string, string] => typeof e[1] === 'string'),
      );
      const references = Object.keys(variables).filter((k) => typeof variables[k] !== 'string');
      const name = localFunctionName(p);
      if (!name || !env.OPERATION) throw new Error('a function in the template has no OPERATION variable');
      return {
        name,
        handler: `${FUNCTIONS_DIR}${env.OPERATION}/handler.ts`,
        ...(typeof p.ReservedConcurrentExecutions === 'number' ? { reserved: p.ReservedConcurrentExecutions } : {}),
        timeoutMs: (typeof p.Timeout === 'number' ? p.Timeout : 3) * 1000,
        memoryMb: typeof p.MemorySize === 'number' ? p.MemorySize : 128,
        env,
        references,
      };
    });
}
