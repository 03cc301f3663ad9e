/** Cancel a mycreditapp document request: the I/O around the pure adapter in `shared/providers/mycreditapp/adapter.ts`. */
import {
  base,
  type Deps,
  defaultDeps,
  fromClassification,
  type OperationContext,
  settle,
} from '#shared/core/cancel.ts';
import type { Outcome } from '#shared/core/outcome.ts';
import { answerFields } from '#shared/providers/common.ts';
import { cancelRequest, classifyCancel, type OrganizationHeaders, unprovenCancel } from './adapter.ts';
import { MyCreditAppSecret } from './secret.ts';
import { authorized } from './session.ts';

export interface CancelDocumentRequestInput extends OrganizationHeaders {
  orgId: string;
  requestId: string;
}

export function cancelDocumentRequest(
  input: CancelDocumentRequestInput,
  ctx: OperationContext,
  deps: Deps = defaultDeps(),
): Promise<Outcome> {
  const target = { orgId: input.orgId, requestId: input.requestId };
  return settle(
    base('mycreditapp', 'cancel-document-request', target),
    async () => {
      const startedAt = Date.now();
      const answer = await deps.secrets.withSecret(
        'mycreditapp',
        MyCreditAppSecret,
        (secret) => authorized(secret, deps, ctx, (root, token) => cancelRequest(root, token, input), unprovenCancel),
        (a) => a.kind === 'unauthorized',
      );
      const { response } = answer;
      const common = answerFields(response);
      if (answer.kind === 'unauthorized') return { ...common, outcome: 'rejected', message: answer.message };
      return fromClassification(common, classifyCancel(response, startedAt));
    },
    { repeat: { ledger: deps.ledger, idempotencyKey: ctx.idempotencyKey } },
  );
}
