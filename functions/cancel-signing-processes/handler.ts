/** Lambda: cancel Auco signing processes (POST /v1/auco/documents/cancel, body: codes, message, email).
 * As a Step Functions task it takes a chunk of Auco items (codes) prepared by the batch. */
import * as z from 'zod/mini';
import { needs } from '#shared/config.ts';
import { TaskContext } from '#shared/core/items.ts';
import { defineCancelHandler, IdempotencyHeaders, WhyFields, whyFromTask } from '#shared/handler/cancel-handler.ts';
import { cancelSigningProcesses } from '#shared/providers/auco/cancel-signing-processes.ts';
import { AucoCode } from '#shared/providers/auco/items.ts';

needs('IDEMPOTENCY_TABLE', 'LEDGER_TABLE', 'RATE_BUDGET_TABLE');

/** Codes per API request (each call to Auco takes at most AUCO_MAX_CODES_PER_CALL of them). */
export const MAX_CODES_PER_REQUEST = 500;

const Cancel = {
  codes: z
    .array(AucoCode)
    .check(
      z.minLength(1, 'must hold at least one code'),
      z.maxLength(MAX_CODES_PER_REQUEST, `must hold at most ${MAX_CODES_PER_REQUEST} codes`),
    ),
  message: z
    .string()
    .check(z.trim(), z.minLength(1, 'must not be empty (Auco emails it to the signers)'), z.maxLength(1000)),
  email: z.email('must be an email address (Auco records who cancelled)'),
};
export const Api = z.object({
  headers: IdempotencyHeaders,
  body: z.strictObject({ ...Cancel, requestedBy: WhyFields.requestedBy }),
});
/** A chunk of Auco items from a batch: the codes, and the message and email every code of the chunk shares. */
const Task = z.strictObject({ item: z.strictObject({ provider: z.literal('auco'), ...Cancel }), ...TaskContext });

export const handler = defineCancelHandler({
  name: 'cancel-signing-processes',
  provider: 'auco',
  operation: cancelSigningProcesses,
  // One call cancels several codes, one outcome each: the API answers them together (207 when they differ).
  outcomesPerCall: 'several',
  api: {
    schema: Api,
    toInput: (p) => ({
      cancel: { codes: p.body.codes, message: p.body.message, email: p.body.email },
      why: {
        idempotencyKey: p.headers['idempotency-key'],
        reason: p.body.message,
        requestedBy: p.body.requestedBy ?? p.body.email,
      },
    }),
  },
  task: {
    schema: Task,
    toInput: ({ item, ...p }) => ({
      cancel: { codes: item.codes, message: item.message, email: item.email },
      why: (({ reason, requestedBy, ...why }) => ({
        ...why,
        reason: reason ?? item.message,
        requestedBy: requestedBy ?? item.email,
      }))(whyFromTask(p)),
    }),
  },
});
