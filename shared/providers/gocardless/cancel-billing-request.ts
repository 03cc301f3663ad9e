/** Cancel a GoCardless billing request: the I/O around the pure adapter in `shared/providers/gocardless/adapter.ts`. */
import { randomUUID } from 'node:crypto';
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
import { answerFields, malformedSuccess } from '#shared/providers/common.ts';
import {
  cancelRequest,
  classifyCancel,
  classifyReadBack,
  getRequest,
  idempotencyKeyFor,
  parseGoCardlessError,
  RATE,
  unreadableBillingRequest,
} from './adapter.ts';
import { GoCardlessSecret } from './secret.ts';

export interface CancelBillingRequestInput {
  billingRequestId: string;
  metadata?: Record<string, string>;
}

export function cancelBillingRequest(
  input: CancelBillingRequestInput,
  ctx: OperationContext,
  deps: Deps = defaultDeps(),
): Promise<Outcome> {
  const { billingRequestId } = input;
  return settle(base('gocardless', 'cancel-billing-request', { billingRequestId }), async () => {
    // One key per logical cancellation: every retry of it, in this Lambda or from Step Functions, reuses it.
    const key = idempotencyKeyFor(billingRequestId, ctx.idempotencyKey ?? randomUUID());
    const options = sendOptions(RATE, ctx, deps, { isTransient: malformedSuccess });
    const readOptions = sendOptions(RATE, ctx, deps, { isTransient: unreadableBillingRequest });
    const { response, classification, readBack } = await deps.secrets.withSecret(
      'gocardless',
      GoCardlessSecret,
      async (secret) => {
        const response = await deps.http.send(cancelRequest(secret, input, key), options);
        const first = classifyCancel(response);
        if (first.kind !== 'check-state') return { response, classification: first, readBack: false };
        // "invalid_state" does not say which state, and a 2xx without `cancelled` proves nothing: read the billing
        // request back (PROVIDERS.md 4.3, 4.5); one whose status cannot be read is retried, then `failed`.
        const state = await deps.http.send(getRequest(secret, billingRequestId), readOptions);
        const accepted = response.status < 300;
        return { response, classification: classifyReadBack(state, first.message, accepted), readBack: true };
      },
      (r) => r.classification.kind === 'unauthorized',
    );
    const error = response.status >= 300 ? parseGoCardlessError(response.body) : undefined;
    const common = answerFields(response, error?.requestId);
    // A refusal that was a conflict on our own key means an earlier request of this cancellation took effect;
    // so does a 2xx to our own cancel that the read-back confirms.
    common.ambiguous ||=
      readBack && (response.status < 300 || (error?.reasons.includes('idempotent_creation_conflict') ?? false));
    return fromClassification(common, classification);
  });
}
