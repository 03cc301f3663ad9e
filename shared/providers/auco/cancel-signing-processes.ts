/** Cancel Auco signing processes, several codes per call: the I/O around `shared/providers/auco/adapter.ts`. */

import {
  base,
  catchTransient,
  type Deps,
  defaultDeps,
  type OperationContext,
  type Settled,
  sendOptions,
  settle,
} from '#shared/core/cancel.ts';
import type { Outcome } from '#shared/core/outcome.ts';
import { answerFields } from '#shared/providers/common.ts';
import {
  type CodeState,
  cancelRequest,
  chunk,
  classifyCancel,
  classifyStatus,
  malformedCounts,
  malformedStatus,
  RATE,
  statusRequest,
} from './adapter.ts';
import { maxCodesPerCall } from './index.ts';
import { AucoSecret } from './secret.ts';

export interface CancelSigningProcessesInput {
  codes: string[];
  /** Sent by Auco to the signers. */
  message: string;
  /** Who cancels (Auco's audit); most likely a user of the Auco company. */
  email: string;
}

/** One outcome per distinct code, in the order given; codes go to Auco in calls of at most `maxCodesPerCall()`. */
export async function cancelSigningProcesses(
  input: CancelSigningProcessesInput,
  ctx: OperationContext,
  deps: Deps = defaultDeps(),
): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  for (const codes of chunk([...new Set(input.codes)], maxCodesPerCall())) {
    outcomes.push(...(await cancelChunk({ ...input, codes }, ctx, deps)));
  }
  return outcomes;
}

async function cancelChunk(input: CancelSigningProcessesInput, ctx: OperationContext, deps: Deps): Promise<Outcome[]> {
  const started = Date.now();
  const options = sendOptions(RATE, ctx, deps, { isTransient: malformedCounts });
  const statusOptions = sendOptions(RATE, ctx, deps, { isTransient: malformedStatus });
  const result = await catchTransient(() =>
    deps.secrets.withSecret(
      'auco',
      AucoSecret,
      async (secret) => {
        const response = await deps.http.send(cancelRequest(secret, input), options);
        const answer = classifyCancel(response, input.codes);
        if (answer.kind === 'unauthorized') return { response, unauthorized: answer.message };
        const states = new Map<string, CodeState | Settled>();
        if (answer.kind === 'misrouted') {
          for (const code of input.codes) states.set(code, { outcome: 'rejected', message: answer.message });
          return { response, canceled: new Set<string>(), states };
        }
        for (const code of answer.check) {
          // A read-back that fails transiently fails only its own code: the codes Auco confirmed stay `canceled`.
          const read = await catchTransient(() => deps.http.send(statusRequest(secret, code), statusOptions));
          if (!('body' in read)) {
            states.set(code, read);
            continue;
          }
          const state = classifyStatus(read, answer.kind === 'refused' ? answer.message : undefined);
          if ('unauthorized' in state) return { response, unauthorized: state.unauthorized };
          states.set(code, state);
        }
        return { response, canceled: new Set(answer.kind === 'counted' ? answer.canceled : []), states };
      },
      (r) => 'unauthorized' in r,
    ),
  );
  return Promise.all(
    input.codes.map((code) =>
      settle(
        base('auco', 'cancel-signing-processes', { code }),
        async (): Promise<Settled> => {
          if (!('response' in result)) return result;
          const { response } = result;
          const common = answerFields(response);
          if ('unauthorized' in result) return { ...common, outcome: 'rejected', message: result.unauthorized };
          if (result.canceled.has(code))
            return { ...common, outcome: 'canceled', message: 'Signing process cancelled' };
          const state = result.states.get(code);
          if (state && 'attempts' in state) return { ...state, ambiguous: common.ambiguous || state.ambiguous };
          return state
            ? { ...common, ...state, ...(state.outcome === 'failed' ? { failure: 'transient' as const } : {}) }
            : { ...common, outcome: 'rejected', message: 'Auco gave no answer for this code' };
        },
        // A code a round sends again (in a chunk of its own) may have been cancelled by our earlier attempt.
        { started, repeat: { ledger: deps.ledger, idempotencyKey: ctx.idempotencyKey, executionId: ctx.executionId } },
      ),
    ),
  );
}
