/**
 * A GoCardless simulator: billing requests, their cancel action and read-back, with the documented auth,
 * version header, `data` envelope, error envelope, idempotency keys and `ratelimit-*` headers
 * (PROVIDERS.md 4.7). Unknowns are options: the `invalid_state` reason, what an idempotency-key replay answers,
 * and whether a 429 has a JSON or an HTML body.
 */
import { randomUUID } from 'node:crypto';
import {
  INVALID_JSON,
  type SimRequest,
  type SimResponse,
  Simulator,
  type SimulatorBaseOptions,
  type SimulatorModule,
  SlidingWindow,
} from './base.ts';

export type BillingRequestStatus = 'pending' | 'ready_to_fulfil' | 'fulfilling' | 'fulfilled' | 'cancelled';

export interface GoCardlessSimOptions {
  accessTokens: string[];
  /** Requests per window (1000 per minute documented). */
  rateLimit: number;
  windowMs: number;
  /** A 429's body: the JSON error envelope, or the HTML page GoCardless has been seen to send. */
  rateLimitBody: 'json' | 'html';
  /** `errors[].reason` of the 422 for a billing request that cannot be cancelled (the real string is unknown). */
  invalidStateReason: string;
  /**
   * A reused Idempotency-Key on the cancel action: 409 `idempotent_creation_conflict` naming the resource the key
   * first acted on, or the first answer replayed. GoCardless documents the 409 for creation endpoints only; for
   * actions it is unknown (README, GoCardless section), so both are offered.
   */
  idempotencyReplay: '409' | 'replay';
  /** Answer 400 when the GoCardless-Version header is missing or wrong. */
  enforceVersion: boolean;
}

interface BillingRequest {
  id: string;
  status: BillingRequestStatus;
  created_at: string;
  metadata: Record<string, string>;
}

/** Seeded demo data: the README's curl examples use these. */
export const GOCARDLESS_DEMO = {
  accessToken: 'sandbox_sim_gocardless_token_0001',
  pending: 'BRQ000DEMOPEND1',
  ready: 'BRQ000DEMOREADY',
  fulfilled: 'BRQ000DEMOFULFD',
  cancelled: 'BRQ000DEMOCANCL',
} as const;

export class GoCardlessSimulator extends Simulator<GoCardlessSimOptions> {
  readonly name = 'gocardless';
  readonly billingRequests = new Map<string, BillingRequest>();
  readonly events: {
    resource_type: string;
    action: string;
    links: { billing_request: string };
    details: Record<string, string>;
  }[] = [];
  private window = this.newWindow();
  /** The first answer per (token, key), and the billing request that key first acted on. */
  private readonly idempotency = new Map<string, { status: number; body: unknown; resourceId: string }>();

  constructor(options: Partial<GoCardlessSimOptions> & SimulatorBaseOptions = {}) {
    super(
      {
        accessTokens: [GOCARDLESS_DEMO.accessToken],
        rateLimit: 1000,
        windowMs: 60_000,
        rateLimitBody: 'json',
        invalidStateReason: 'cancellation_failed',
        idempotencyReplay: '409',
        enforceVersion: true,
      },
      options,
    );
  }

  private newWindow(): SlidingWindow {
    return new SlidingWindow(this.options.rateLimit, this.options.windowMs / this.timeScale);
  }

  protected override optionsChanged(): void {
    this.window = this.newWindow();
  }

  demoSecret(): Record<string, unknown> {
    return { accessToken: GOCARDLESS_DEMO.accessToken, baseUrl: this.url };
  }

  seed(): void {
    this.billingRequests.clear();
    this.idempotency.clear();
    this.events.length = 0;
    this.add(GOCARDLESS_DEMO.pending, 'pending');
    this.add(GOCARDLESS_DEMO.ready, 'ready_to_fulfil');
    this.add(GOCARDLESS_DEMO.fulfilled, 'fulfilled');
    this.add(GOCARDLESS_DEMO.cancelled, 'cancelled');
  }

  add(id: string, status: BillingRequestStatus): void {
    this.billingRequests.set(id, { id, status, created_at: new Date().toISOString(), metadata: {} });
  }

  protected setResource(id: string, body: unknown): boolean {
    const status = (body as { status?: BillingRequestStatus }).status ?? 'pending';
    const existing = this.billingRequests.get(id);
    if (existing) existing.status = status;
    else this.add(id, status);
    return true;
  }

  /** The error envelope as GoCardless's own fixtures show it (test/fixtures/gocardless): the top-level message,
   * and `errors[]` items that carry a `reason` only where the fixtures do (not on `validation_failed` items, nor on
   * `invalid_api_usage` structure errors). */
  private error(
    status: number,
    type: string,
    reason: string,
    message: string,
    items: Record<string, unknown>[] = [{ reason, message }],
  ): SimResponse {
    return {
      status,
      body: {
        error: {
          message,
          errors: items,
          documentation_url: `https://developer.gocardless.com/api-reference#${reason}`,
          type,
          request_id: randomUUID(),
          code: status,
        },
      },
    };
  }

  protected handle(req: SimRequest): SimResponse {
    const limited = !this.window.take();
    const rateHeaders = {
      'ratelimit-limit': String(this.options.rateLimit),
      'ratelimit-remaining': String(this.window.remaining()),
      'ratelimit-reset': new Date(this.window.resetAt()).toUTCString(),
    };
    const response = limited ? this.rateLimited() : this.route(req);
    return { ...response, headers: { ...rateHeaders, ...response.headers } };
  }

  private rateLimited(): SimResponse {
    if (this.options.rateLimitBody === 'html') {
      return {
        status: 429,
        text: '<!DOCTYPE html><html><head><title>Error: Rate limit exceeded - GoCardless</title></head><body>Rate limit exceeded</body></html>',
        headers: { 'content-type': 'text/html' },
      };
    }
    return this.error(429, 'invalid_api_usage', 'rate_limit_exceeded', 'Rate limit exceeded');
  }

  private route(req: SimRequest): SimResponse {
    const token = /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ''))?.[1];
    if (!token || !this.options.accessTokens.includes(token)) {
      return this.error(401, 'invalid_api_usage', 'unauthorized', 'Invalid access token');
    }
    if (this.options.enforceVersion && req.headers['gocardless-version'] !== '2015-07-06') {
      return this.error(400, 'invalid_api_usage', 'version_not_found', 'GoCardless-Version header missing or unknown');
    }
    const get = /^\/billing_requests\/([^/]+)$/.exec(req.path);
    if (get && req.method === 'GET') {
      const br = this.billingRequests.get(decodeURIComponent(get[1] ?? ''));
      return br ? { status: 200, body: { billing_requests: this.render(br) } } : this.notFound();
    }
    const cancel = /^\/billing_requests\/([^/]+)\/actions\/cancel$/.exec(req.path);
    if (cancel && req.method === 'POST') return this.cancel(decodeURIComponent(cancel[1] ?? ''), req, token);
    return this.error(404, 'invalid_api_usage', 'path_not_found', 'Path not found');
  }

  private notFound(): SimResponse {
    return this.error(404, 'invalid_api_usage', 'resource_not_found', 'Resource not found');
  }

  private cancel(id: string, req: SimRequest, token: string): SimResponse {
    const key = req.headers['idempotency-key'];
    const storeKey = typeof key === 'string' ? `${token}:${key}` : undefined;
    const previous = storeKey ? this.idempotency.get(storeKey) : undefined;
    if (previous) {
      if (this.options.idempotencyReplay === 'replay') return { status: previous.status, body: previous.body };
      const message = 'A resource has already been created with this idempotency key';
      return this.error(409, 'invalid_state', 'idempotent_creation_conflict', message, [
        {
          reason: 'idempotent_creation_conflict',
          message,
          links: { conflicting_resource_id: previous.resourceId },
        },
      ]);
    }
    if (req.json === INVALID_JSON || req.json === null || typeof req.json !== 'object' || Array.isArray(req.json)) {
      return this.error(400, 'invalid_api_usage', 'invalid_document_structure', 'Invalid document structure', [
        { message: 'Root element must be an object.' },
      ]);
    }
    const data = (req.json as { data?: unknown }).data;
    if (data !== undefined && (data === null || typeof data !== 'object' || Array.isArray(data))) {
      return this.error(422, 'invalid_api_usage', 'invalid_type', 'One of your parameters was incorrectly typed', [
        { message: '"data" must be an object.', request_pointer: '/data' },
      ]);
    }
    const metadata = (data as { metadata?: unknown } | undefined)?.metadata;
    if (metadata !== undefined && !validMetadata(metadata)) {
      return this.error(422, 'validation_failed', 'validation_failed', 'Validation failed', [
        { field: 'metadata', message: 'is invalid', request_pointer: '/data/metadata' },
      ]);
    }
    const br = this.billingRequests.get(id);
    if (!br) return this.notFound();
    if (br.status !== 'pending' && br.status !== 'ready_to_fulfil') {
      return this.error(422, 'invalid_state', this.options.invalidStateReason, 'Billing request cannot be cancelled');
    }
    br.status = 'cancelled';
    if (metadata) br.metadata = metadata as Record<string, string>;
    this.countCancel(id);
    this.events.push({
      resource_type: 'billing_requests',
      action: 'cancelled',
      links: { billing_request: id },
      details: { cause: 'billing_request_cancelled', origin: 'api' },
    });
    const response = { status: 200, body: { billing_requests: this.render(br) } };
    if (storeKey) this.idempotency.set(storeKey, { ...response, resourceId: id });
    return response;
  }

  /** A billing request with the fields of GoCardless's own example (gocardless-pro-python fixture
   * `billing_requests.json`): a mandate request, `links`, `resources`, `creditor_name`, `sign_flow_url`, `purpose_code`. */
  private render(br: BillingRequest): Record<string, unknown> {
    const suffix = br.id.slice(3);
    return {
      id: br.id,
      status: br.status,
      created_at: br.created_at,
      actions:
        br.status === 'cancelled'
          ? []
          : [
              {
                type: 'collect_customer_details',
                required: true,
                status: 'pending',
                completes_actions: [],
                requires_actions: [],
              },
            ],
      metadata: br.metadata,
      links: {
        creditor: 'CR000SIMULATOR',
        organisation: 'OR000SIMULATOR',
        mandate_request: `MRQ${suffix}`,
        customer: `CU${suffix}`,
      },
      creditor_name: 'Simulated Creditor Ltd',
      sign_flow_url: `https://pay-sandbox.gocardless.com/billing/static/flow?id=BRF${suffix}`,
      purpose_code: 'other',
      payment_purpose_code: null,
      payment_context_code: null,
      fallback_enabled: false,
      fallback_occurred: false,
      mandate_request: {
        currency: 'GBP',
        scheme: 'bacs',
        verify: 'recommended',
        authorisation_source: 'web',
        metadata: {},
        links: br.status === 'fulfilled' ? { mandate: `MD${suffix}` } : {},
      },
      payment_request: null,
      subscription_request: null,
      instalment_schedule_request: null,
      resources: {
        customer: {
          id: `CU${suffix}`,
          created_at: br.created_at,
          email: 'payer@shipper.example',
          given_name: 'Demo',
          family_name: 'Payer',
          company_name: 'Demo Shipper',
          language: 'en',
          metadata: {},
        },
        customer_billing_detail: null,
        customer_bank_account: null,
      },
    };
  }
}

function validMetadata(value: unknown): boolean {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const entries = Object.entries(value);
  return entries.length <= 3 && entries.every(([k, v]) => k.length <= 50 && typeof v === 'string' && v.length <= 500);
}

/** What `npm start` runs for GoCardless (local/simulators/base.ts, SimulatorModule). */
export function create(): Simulator {
  return new GoCardlessSimulator();
}

export const DEMO_REQUESTS: SimulatorModule['DEMO_REQUESTS'] = {
  calls: [
    {
      path: `/v1/gocardless/billing-requests/${GOCARDLESS_DEMO.pending}/cancel`,
      body: { metadata: { reason: 'declined' } },
    },
  ],
  items: [{ provider: 'gocardless', billingRequestId: GOCARDLESS_DEMO.ready }],
};
