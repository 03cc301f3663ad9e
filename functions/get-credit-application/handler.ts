/** Lambda: read a mycreditapp credit application (GET /v1/mycreditapp/credit-applications/{creditApplicationId}).
 * As a Step Functions task it is the batch guard: given `skipIfStatusIn`, it answers whether to skip. */
import * as z from 'zod/mini';
import { needs } from '#shared/config.ts';
import { defaultDeps } from '#shared/core/cancel.ts';
import { unreachable } from '#shared/core/circuit.ts';
import { Uuid } from '#shared/core/items.ts';
import { operationContext, outcomeReply, taskResult, throughCircuit } from '#shared/handler/cancel-handler.ts';
import { defineHandler } from '#shared/handler/middleware.ts';
import {
  type GetCreditApplicationInput,
  getCreditApplication,
  type LookupResult,
} from '#shared/providers/mycreditapp/get-credit-application.ts';

needs('RATE_BUDGET_TABLE');

type Input = { lookup: GetCreditApplicationInput; skipIfStatusIn?: string[] };

export const Api = z.object({
  path: z.object({ creditApplicationId: Uuid }),
  headers: z.looseObject({
    'requester-organization-id': z.optional(z.guid('must be a uuid (your organization)')),
    'target-organization-id': z.optional(z.guid('must be a uuid (the organization the request targets)')),
  }),
});
const Task = z.strictObject({
  creditApplicationId: Uuid,
  requesterOrganizationId: z.optional(Uuid),
  targetOrganizationId: z.optional(Uuid),
  skipIfStatusIn: z.optional(z.array(z.string().check(z.minLength(1)))),
  executionId: z.optional(z.string()),
});

/** What the batch guard decides from the lookup. */
export interface GuardResult {
  found: boolean;
  skip: boolean;
  status?: string;
  terminal?: boolean;
  expired?: boolean;
  expiresAt?: string | null;
  message: string;
}

/** A lookup the guard cannot use: the execution stops rather than cancel work for an application it cannot read. */
class GuardError extends Error {
  override readonly name = 'Guard.Unreadable';
}

export const handler = defineHandler<Input, LookupResult & { skipIfStatusIn?: string[] }>({
  name: 'get-credit-application',
  api: {
    schema: Api,
    toInput: (p: z.infer<typeof Api>) => ({
      lookup: {
        creditApplicationId: p.path.creditApplicationId,
        ...(p.headers['requester-organization-id']
          ? { requesterOrganizationId: p.headers['requester-organization-id'] }
          : {}),
        ...(p.headers['target-organization-id'] ? { targetOrganizationId: p.headers['target-organization-id'] } : {}),
      },
    }),
  },
  task: {
    schema: Task,
    toInput: ({ skipIfStatusIn, executionId: _, ...lookup }: z.infer<typeof Task>) => ({
      lookup,
      ...(skipIfStatusIn ? { skipIfStatusIn } : {}),
    }),
  },
  run: async (input, invocation) => {
    // A batch's guard (a task given skipIfStatusIn) goes through mycreditapp's circuit, as batch cancels do: while it
    // is open only a probe is sent, and what the guard finds opens or closes it (shared/core/circuit.ts).
    const deps = defaultDeps();
    const ctx = operationContext(invocation, {});
    const call = () => getCreditApplication(input.lookup, ctx, deps);
    const result =
      invocation.source === 'task' && input.skipIfStatusIn !== undefined
        ? await throughCircuit(deps, 'mycreditapp', ctx, call, (r) =>
            !r.found && unreachable(r.outcome) ? r.outcome : undefined,
          )
        : await call();
    return { ...result, ...(input.skipIfStatusIn ? { skipIfStatusIn: input.skipIfStatusIn } : {}) };
  },
  reply: (result) => (result.found ? { statusCode: 200, body: result.application } : outcomeReply(result.outcome)),
  taskResult: (result): GuardResult => {
    if (!result.found) {
      if (result.outcome.outcome === 'not_found')
        return { found: false, skip: false, message: 'Credit application not found: nothing to protect, cancelling' };
      if (result.outcome.outcome === 'failed') taskResult(result.outcome);
      throw new GuardError(
        `Cannot read the credit application, so nothing is cancelled: ${result.outcome.message ?? result.outcome.outcome}`,
      );
    }
    const { application } = result;
    const skip = result.skipIfStatusIn?.includes(application.status) ?? false;
    return {
      found: true,
      skip,
      status: application.status,
      terminal: application.terminal,
      expired: application.expired,
      expiresAt: application.expires_at ?? null,
      message: skip
        ? `Skipped: the credit application is ${application.status}, one of ${result.skipIfStatusIn?.join(', ')}`
        : `Proceeding: the credit application is ${application.status}`,
    };
  },
});
