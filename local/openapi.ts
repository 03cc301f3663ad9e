/**
 * The OpenAPI 3.1 document of the HTTP API, generated from the zod schemas the handlers validate with (each
 * handler exports its `Api` schema) and the shared outcome model: never a hand-kept copy. Served by `npm start`
 * at /openapi.json; `npm run openapi` writes docs/openapi.json for publishing.
 */
import * as z from 'zod/mini';
import { Get as batchGetApi, Post as batchPostApi } from '#functions/batches/handler.ts';
import { Api as cancelBillingRequestApi } from '#functions/cancel-billing-request/handler.ts';
import { Api as cancelDocumentRequestApi } from '#functions/cancel-document-request/handler.ts';
import { Api as cancelSigningProcessesApi } from '#functions/cancel-signing-processes/handler.ts';
import { Api as cancelVerificationOrderApi } from '#functions/cancel-verification-order/handler.ts';
import { Query as cancellationsQuery } from '#functions/cancellations/handler.ts';
import { ById as expirationByIdApi } from '#functions/expirations/handler.ts';
import { Api as getCreditApplicationApi } from '#functions/get-credit-application/handler.ts';
import { BatchRequest } from '#shared/batch/input.ts';
import { ExpirationRequest } from '#shared/core/expirations.ts';
import { OPERATIONS, OUTCOMES, OutcomeSchema, PROVIDERS } from '#shared/core/outcome.ts';
import { ROUTES } from '#shared/handler/routes.ts';
import { BatchItem, REGISTRY } from '#shared/providers/index.ts';

type Json = Record<string, unknown>;
/** The schemas named under components.schemas: wherever one of them appears, the document refers to it. */
const COMPONENTS = z.registry<{ id: string }>();
const toJson = { io: 'input', unrepresentable: 'any', target: 'draft-2020-12', metadata: COMPONENTS } as const;
const schema = (s: z.core.$ZodType): Json => {
  // A named schema inside comes out as `$defs` (the same as components.schemas): refer to the component instead.
  const { $schema: _, $defs: __, ...rest } = z.toJSONSchema(s, toJson) as Json;
  return JSON.parse(JSON.stringify(rest).replaceAll('"#/$defs/', '"#/components/schemas/')) as Json;
};
function components(): Record<string, Json> {
  const { schemas } = z.toJSONSchema(COMPONENTS, { ...toJson, uri: (id) => `#/components/schemas/${id}` }) as {
    schemas: Record<string, Json>;
  };
  return Object.fromEntries(Object.entries(schemas).map(([id, { $schema: _, $id: __, ...rest }]) => [id, rest]));
}

// ---- responses (what the handlers answer) ----
const Issue = z.object({ path: z.string(), message: z.string() });
const ErrorBody = z.object({
  error: z.string(),
  message: z.string(),
  /** The first 100 problems of invalid input. */
  issues: z.optional(z.array(Issue)),
  /** How many problems there are in all (more than `issues` lists when over 100). */
  issueCount: z.optional(z.number()),
  requestId: z.optional(z.string()),
  batchId: z.optional(z.string()),
});
/** The provider that answers several outcomes at once: the one that takes many targets per call (its `chunk`). */
const many = REGISTRY.find((p) => 'chunk' in p) ?? REGISTRY[0];
const titles = REGISTRY.map((p) => p.title);
const Outcomes = z.object({
  provider: z.literal(many.name),
  operation: z.literal(many.functions[0].fn),
  outcome: z.optional(z.enum(OUTCOMES)),
  outcomes: z.array(OutcomeSchema),
});
const CreditApplication = z.looseObject({
  id: z.string(),
  status: z.string(),
  terminal: z.boolean(),
  expired: z.boolean(),
  expires_at: z.optional(z.nullable(z.string())),
  created_at: z.optional(z.nullable(z.string())),
  updated_at: z.optional(z.nullable(z.string())),
});
const Counts = z.object(
  Object.fromEntries(OUTCOMES.map((o) => [o, z.number()])) as Record<(typeof OUTCOMES)[number], z.ZodMiniNumber>,
);
const Summary = z.object({
  total: z.number(),
  unique: z.number(),
  duplicates: z.number(),
  lost: z.number(),
  byProvider: z.partialRecord(z.enum(PROVIDERS), Counts),
  byOutcome: Counts,
});
const ItemResult = z.looseObject({
  index: z.number(),
  duplicateOf: z.optional(z.number()),
  provider: z.enum(PROVIDERS),
  outcome: z.enum(OUTCOMES),
});
const BatchStarted = z.object({
  batchId: z.string(),
  executionArn: z.string(),
  status: z.literal('running'),
  startedAt: z.string(),
  items: z.number(),
  links: z.object({ self: z.string() }),
});
const BatchStatus = z.looseObject({
  batchId: z.string(),
  status: z.enum(['running', 'waiting', 'completed', 'completed_with_failures', 'skipped', 'failed', 'aborted']),
  executionStatus: z.string(),
  /** Between rounds: the providers it waits for and its next attempt (shared/batch/rounds.ts). */
  waiting: z.optional(
    z.looseObject({
      round: z.number(),
      pending: z.number(),
      nextAttemptAt: z.string(),
      deadline: z.string(),
      waitingFor: z.array(
        z.object({
          provider: z.enum(PROVIDERS),
          items: z.number(),
          circuit: z.optional(z.literal('open')),
          since: z.optional(z.string()),
          /** The credit application the batch's guard could not read yet: nothing is cancelled before it has. */
          guard: z.optional(z.string()),
        }),
      ),
    }),
  ),
  rounds: z.optional(
    z.looseObject({
      count: z.number(),
      deadline: z.string(),
      ended: z.enum(['settled', 'deadline', 'history']),
      message: z.optional(z.string()),
    }),
  ),
  startedAt: z.string(),
  stoppedAt: z.optional(z.string()),
  // A batch its guard skipped counts its items only.
  summary: z.optional(z.union([Summary, z.object({ total: z.number(), unique: z.number() })])),
  results: z.optional(
    z.union([z.array(ItemResult), z.object({ bucket: z.string(), key: z.string(), count: z.number() })]),
  ),
  error: z.optional(z.string()),
  cause: z.optional(z.string()),
});
const Expiration = z.looseObject({
  id: z.string(),
  status: z.enum(['scheduled', 'started', 'disabled']),
  expiresAt: z.string(),
  schedule: z.optional(z.string()),
  group: z.optional(z.string()),
  replaced: z.optional(z.boolean()),
  batchId: z.optional(z.string()),
  message: z.optional(z.string()),
});
const LedgerEntry = z.looseObject({
  provider: z.enum(PROVIDERS),
  operation: z.enum(OPERATIONS),
  target: z.record(z.string(), z.string()),
  outcome: z.enum(OUTCOMES),
  at: z.string(),
  source: z.enum(['api', 'task']),
});
const CancellationsPage = z.object({ cancellations: z.array(LedgerEntry), next: z.optional(z.string()) });
/** What a 500 carries: our configuration or internal error, or API Gateway's own when the function could not answer
 * (throttled at its reserved concurrency, crashed, timed out): `{"message": "Internal Server Error"}`. */
const ServerError = z.union([ErrorBody, z.object({ message: z.string() })]);
for (const [id, s] of Object.entries({
  Outcome: OutcomeSchema,
  Outcomes,
  Error: ErrorBody,
  ServerError,
  CreditApplication,
  BatchItem,
  BatchStarted,
  BatchStatus,
  BatchSummary: Summary,
  Expiration,
  CancellationsPage,
}))
  COMPONENTS.add(s, { id });

const json = (ref: string, description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } },
});
const errors = (...statuses: number[]) =>
  Object.fromEntries(
    statuses.map((s) => [String(s), json(s === 500 ? 'ServerError' : 'Error', ERROR_TEXT[s] ?? 'error')]),
  );
const ERROR_TEXT: Record<number, string> = {
  400: 'Invalid input: every problem listed, with its path; nothing was sent to a provider',
  404: 'Not found',
  409: 'Conflict',
  422: 'The Idempotency-Key was already used with a different request',
  500: "Configuration error or a bug (with the request id to find the log); or API Gateway's own when the function could not answer (throttled at its reserved concurrency: retry with backoff)",
  502: 'The lookup failed',
};
const outcome = (description: string) => json('Outcome', description);
const OUTCOME_RESPONSES = {
  '200': outcome('canceled or already_canceled'),
  '404': outcome('not_found: the provider does not know it'),
  '409': outcome('not_cancelable: terminal in another state'),
  '502': outcome('rejected: the provider refused our request (its reason in message)'),
  '503': outcome('failed: transient failures outlasted the retries; Retry-After where known'),
  '504': outcome('failed: the provider did not answer in time'),
  ...errors(400, 422, 500),
};

/** What each route answers, by status. */
const RESPONSES: Record<string, Json> = {
  'cancel-document-request': OUTCOME_RESPONSES,
  'cancel-verification-order': OUTCOME_RESPONSES,
  'cancel-billing-request': OUTCOME_RESPONSES,
  'cancel-signing-processes': {
    '200': json('Outcomes', 'every code canceled or already_canceled'),
    '207': json('Outcomes', 'codes with different outcomes'),
    '404': json('Outcomes', 'no code is known'),
    '409': json('Outcomes', 'every code is terminal in another state'),
    '502': json('Outcomes', 'rejected'),
    '503': json('Outcomes', 'failed'),
    ...errors(400, 422, 500),
  },
  'get-credit-application': {
    '200': json('CreditApplication', 'The application, validated, with terminal and expired derived'),
    '404': outcome('not_found'),
    '502': outcome('rejected'),
    '503': outcome('failed'),
    ...errors(400, 500),
  },
  'POST /v1/batches': {
    '202': json('BatchStarted', 'The batch started; read it at links.self'),
    ...errors(400, 409, 422, 500),
  },
  'GET /v1/batches/{batchId}': { '200': json('BatchStatus', 'Status, summary and results'), ...errors(400, 404, 500) },
  'POST /v1/expirations': {
    '200': json('Expiration', 'Scheduled, replacing the schedule registered before'),
    '201': json('Expiration', 'Scheduled'),
    '202': json('Expiration', 'expiresAt is in the past: the batch started now'),
    ...errors(400, 404, 422, 500, 502),
  },
  'GET /v1/expirations/{id}': { '200': json('Expiration', 'The scheduled expiration'), ...errors(400, 404, 500) },
  'DELETE /v1/expirations/{id}': { '204': { description: 'Deleted' }, ...errors(400, 404, 500) },
  'GET /v1/cancellations': {
    '200': json('CancellationsPage', 'Newest first; pass next as cursor for the next page'),
    ...errors(400, 500),
  },
};

/** Request parts by route: each handler's own schema. */
const REQUESTS: Record<string, z.core.$ZodType> = {
  'cancel-document-request': cancelDocumentRequestApi,
  'get-credit-application': getCreditApplicationApi,
  'cancel-signing-processes': cancelSigningProcessesApi,
  'cancel-verification-order': cancelVerificationOrderApi,
  'cancel-billing-request': cancelBillingRequestApi,
  'POST /v1/batches': z.object({ headers: batchPostApi.shape.headers, body: BatchRequest }),
  'GET /v1/batches/{batchId}': batchGetApi,
  'POST /v1/expirations': z.object({ body: ExpirationRequest }),
  'GET /v1/expirations/{id}': expirationByIdApi,
  'DELETE /v1/expirations/{id}': expirationByIdApi,
  'GET /v1/cancellations': z.object({ query: cancellationsQuery }),
};

/** Routes whose body holds batch items. */
const BATCH_ITEMS = new Set(['POST /v1/batches', 'POST /v1/expirations']);

function parameters(request: Json): Json[] {
  const parts = (request.properties ?? {}) as Record<string, Json>;
  const out: Json[] = [];
  for (const [part, where] of [
    ['path', 'path'],
    ['query', 'query'],
    ['headers', 'header'],
  ] as const) {
    const p = parts[part];
    if (!p) continue;
    const required = new Set((p.required as string[] | undefined) ?? []);
    for (const [name, s] of Object.entries((p.properties ?? {}) as Record<string, Json>)) {
      out.push({
        name,
        in: where,
        required: where === 'path' || required.has(name),
        schema: s,
        ...(s.description ? { description: s.description } : {}),
      });
    }
  }
  return out;
}

/** Every route needs IAM authorization in AWS: a request signed with SigV4, as API Gateway imports and exports it. */
const SIGV4 = {
  type: 'apiKey',
  name: 'Authorization',
  in: 'header',
  description:
    'AWS Signature Version 4 (service execute-api) by credentials allowed execute-api:Invoke on the route. npm start does not check it.',
  'x-amazon-apigateway-authtype': 'awsSigv4',
};

/**
 * The document. Its servers are the deployed stack (the `ApiUrl` output of `npm run deploy`) and `npm start`: at
 * `local` when given (the URL a running `npm start` serves it from), otherwise on its default port.
 */
export function openApiDocument(local?: string): Json {
  const paths: Record<string, Json> = {};
  for (const route of ROUTES) {
    const key = `${route.method} ${route.path}`;
    const request = schema(REQUESTS[key] ?? (REQUESTS[route.function] as z.core.$ZodType));
    const body = (request.properties as Record<string, Json> | undefined)?.body;
    // The handler takes `items` as a list of anything and checks each as a batch item, so that every problem is
    // listed by index: the document names what each item must be.
    const items = (body?.properties as Record<string, Json> | undefined)?.items;
    if (BATCH_ITEMS.has(key) && items) items.items = { $ref: '#/components/schemas/BatchItem' };
    const operation: Json = {
      operationId: `${route.method.toLowerCase()}${route.path.replace(/\{(\w+)\}/g, 'By$1').replace(/(^|[/-])(\w)/g, (_m, _s, c: string) => c.toUpperCase())}`,
      summary: route.summary,
      tags: [route.path.split('/')[2] ?? 'api'],
      parameters: parameters(request),
      ...(body
        ? {
            requestBody: {
              required: ((request.required as string[] | undefined) ?? []).includes('body'),
              content: { 'application/json': { schema: body } },
            },
          }
        : {}),
      responses: RESPONSES[key] ?? RESPONSES[route.function],
      security: [{ sigv4: [] }],
      'x-lambda-function': route.function,
    };
    paths[route.path] = { ...paths[route.path], [route.method.toLowerCase()]: operation };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Provider cancellations',
      version: '1.0.0',
      license: { name: 'MIT', identifier: 'MIT' },
      description: `Cancel in-flight work at ${titles.slice(0, -1).join(', ')} and ${titles.at(-1)}. In AWS every route needs IAM (SigV4) authorization; locally (npm start) it is open on loopback. Failures of transient kind answer 503/504 with Retry-After where the provider said how long.`,
    },
    servers: [
      {
        url: 'https://{apiId}.execute-api.{region}.amazonaws.com',
        description: 'The deployed stack (its ApiUrl output): every request signed with SigV4',
        variables: {
          apiId: { default: 'abcdef1234', description: 'The HTTP API id (the host name in the ApiUrl output)' },
          region: { default: 'us-east-1', description: 'The AWS region the stack is deployed in' },
        },
      },
      local
        ? { url: local, description: 'npm start: the handlers and provider simulators on this machine' }
        : {
            url: 'http://127.0.0.1:{port}',
            description: 'npm start: the handlers and provider simulators on this machine',
            variables: { port: { default: '3000', description: 'npm start --port N (or PORT)' } },
          },
    ],
    paths,
    components: { schemas: components(), securitySchemes: { sigv4: SIGV4 } },
  };
}
