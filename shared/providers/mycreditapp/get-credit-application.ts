/** Read a mycreditapp credit application, validated, with `terminal` and `expired` derived. */
import {
  base,
  catchTransient,
  type Deps,
  defaultDeps,
  finish,
  type OperationContext,
  type Settled,
} from '#shared/core/cancel.ts';
import type { Outcome } from '#shared/core/outcome.ts';
import {
  type CreditApplication,
  classifyLookup,
  getCreditApplicationRequest,
  type OrganizationHeaders,
  unreadableApplication,
} from './adapter.ts';
import { MyCreditAppSecret } from './secret.ts';
import { authorized } from './session.ts';

export interface GetCreditApplicationInput extends Partial<OrganizationHeaders> {
  creditApplicationId: string;
}

/** The application, or an outcome saying why there is none (`not_found`, `rejected`, `failed`). */
export type LookupResult =
  | { found: true; application: CreditApplication; httpStatus: number; attempts: number; durationMs: number }
  | { found: false; outcome: Outcome };

export async function getCreditApplication(
  input: GetCreditApplicationInput,
  ctx: OperationContext,
  deps: Deps = defaultDeps(),
): Promise<LookupResult> {
  const started = Date.now();
  type Found = Extract<LookupResult, { found: true }>;
  const settled = await catchTransient(async (): Promise<Settled | Found> => {
    const answer = await deps.secrets.withSecret(
      'mycreditapp',
      MyCreditAppSecret,
      async (secret) => {
        const org = {
          requesterOrganizationId: input.requesterOrganizationId ?? secret.organizationId,
          targetOrganizationId: input.targetOrganizationId ?? secret.organizationId,
        };
        // Both organization headers are required (PROVIDERS.md 1.1): no request leaves without them.
        const missing = Object.entries(org)
          .filter(([, v]) => !v)
          .map(([k]) => k);
        if (missing.length) return { kind: 'missing' as const, missing };
        return authorized(
          secret,
          deps,
          ctx,
          (root, token) =>
            getCreditApplicationRequest(root, token, input.creditApplicationId, {
              requesterOrganizationId: org.requesterOrganizationId as string,
              targetOrganizationId: org.targetOrganizationId as string,
            }),
          unreadableApplication,
        );
      },
      (a) => a.kind === 'unauthorized',
    );
    if (answer.kind === 'missing') {
      return {
        outcome: 'rejected',
        attempts: 0,
        message: `mycreditapp requires both organization headers; give ${answer.missing.join(' and ')}, or organizationId in the mycreditapp secret. Nothing was sent`,
      };
    }
    const common = { httpStatus: answer.response.status, attempts: answer.response.attempts };
    if (answer.kind === 'unauthorized') return { ...common, outcome: 'rejected', message: answer.message };
    const classification = classifyLookup(answer.response);
    if (classification.kind === 'found') {
      return { found: true, application: classification.application, ...common, durationMs: Date.now() - started };
    }
    if (classification.kind === 'unauthorized')
      return { ...common, outcome: 'rejected', message: classification.message };
    const { kind: _, ...fields } = classification;
    return { ...common, ...fields, ...(fields.outcome === 'failed' ? { failure: 'transient' as const } : {}) };
  });
  if ('found' in settled) return settled;
  const { ambiguous: _a, uncertainRepeat: _u, ...rest } = settled;
  return {
    found: false,
    outcome: finish(
      {
        ...base('mycreditapp', 'get-credit-application', { creditApplicationId: input.creditApplicationId }),
        ...rest,
        durationMs: 0,
      },
      started,
    ),
  };
}
