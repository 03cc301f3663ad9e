/** Cancel a Truework verification order: the I/O around the pure adapter in `shared/providers/truework/adapter.ts`. */

import type { ProviderSecret } from '#shared/aws/secrets.ts';
import {
  base,
  type Deps,
  defaultDeps,
  fromClassification,
  type OperationContext,
  sendOptions,
  settle,
} from '#shared/core/cancel.ts';
import type { Outcome } from '#shared/core/outcome.ts';
import type { HttpRequest, HttpResponse } from '#shared/http/types.ts';
import { answerFields, type Classification, decided } from '#shared/providers/common.ts';
import {
  cancelRequest,
  classifyCancel,
  classifyReadBack,
  getOrderRequest,
  RATE,
  signatureProblem,
  unreadableOrder,
} from './adapter.ts';
import { TrueworkSecret } from './secret.ts';

export interface CancelVerificationOrderInput {
  orderId: string;
  reason: string;
  details?: string | null;
}

export function cancelVerificationOrder(
  input: CancelVerificationOrderInput,
  ctx: OperationContext,
  deps: Deps = defaultDeps(),
): Promise<Outcome> {
  return settle(
    base('truework', 'cancel-verification-order', { orderId: input.orderId }),
    async () => {
      const options = sendOptions(RATE, ctx, deps, { isTransient: unreadableOrder });
      const { response, classification } = await deps.secrets.withSecret(
        'truework',
        TrueworkSecret,
        async (secret) => {
          const { response, forged } = await sendVerified(deps, cancelRequest(secret, input), options, secret);
          if (forged) return { response, classification: forged };
          const first = classifyCancel(response);
          if (first.kind !== 'check-state') return { response, classification: first };
          // The refusal does not say why: read the order back (PROVIDERS.md 3.3).
          const readBack = await sendVerified(deps, getOrderRequest(secret, input.orderId), options, secret);
          return { response, classification: readBack.forged ?? classifyReadBack(readBack.response, first.message) };
        },
        (r) => r.classification.kind === 'unauthorized',
      );
      return {
        ...fromClassification(answerFields(response), classification),
        // A fully cancelled order echoed with 200 reads exactly like the first cancel (PROVIDERS.md 3.6, item 6).
        uncertainRepeat: response.status < 300,
      };
    },
    { repeat: { ledger: deps.ledger, idempotencyKey: ctx.idempotencyKey } },
  );
}

/** A `rejected` classification when signature keys are configured and the answer fails verification. */
function verified(response: HttpResponse, secret: ProviderSecret<typeof TrueworkSecret>): Classification | undefined {
  if (!secret.publicKeys) return undefined;
  const problem = signatureProblem(response, secret.publicKeys);
  return problem
    ? decided('rejected', { message: `Truework's answer failed signature verification: ${problem}` })
    : undefined;
}

async function sendVerified(
  deps: Deps,
  request: HttpRequest,
  options: Parameters<Deps['http']['send']>[1],
  secret: ProviderSecret<typeof TrueworkSecret>,
) {
  const response = await deps.http.send(request, options);
  return { response, forged: verified(response, secret) };
}
