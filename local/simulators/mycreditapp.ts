/**
 * A mycreditapp simulator: OAuth2 client-credentials tokens that expire, document requests with their
 * cancellations, credit applications, the organization headers, the `detail[]` error envelope and a maintenance
 * mode (PROVIDERS.md 1.4). Unknowns are options: what a repeated cancel answers (200 or a 4xx), the status and
 * wording of a refusal, the API version segment, and an optional rate limit.
 */
import { createHmac, randomUUID } from 'node:crypto';
import {
  INVALID_JSON,
  retryAfterSeconds,
  type SimRequest,
  type SimResponse,
  Simulator,
  type SimulatorBaseOptions,
  type SimulatorModule,
} from './base.ts';

export type DocumentStatus = 'pending' | 'partially' | 'completed' | 'expired' | 'canceled';

export interface MyCreditAppSimOptions {
  clientId: string;
  clientSecret: string;
  /** The version segment of the API root (`/v1-beta` by default; the docs also say `/v1`). */
  apiVersion: string;
  tokenTtlSeconds: number;
  /** A second cancel: "200" answers the canceled object again; a status answers that 4xx with `detail[]`. */
  repeatCancel: '200' | '400' | '409' | '422';
  /** Cancelling a completed or expired request: that 4xx with `detail[]`. */
  terminalStatus: '400' | '409' | '422';
  /** "descriptive" refusals name the state; "opaque" ones only say the state is invalid. */
  refusalWording: 'descriptive' | 'opaque';
  /** Answer every call with `service_under_maintenance` at this status. */
  maintenance: boolean;
  maintenanceStatus: number;
  /** Requests per second; 0 is unlimited (none is documented). */
  ratePerSecond: number;
  retryAfterHeader: boolean;
}

interface DocumentRequest {
  id: string;
  status: DocumentStatus;
  host_organization_id: string;
  guest_organization_id: string;
  follow_up: boolean;
  expires_at: string;
  created_at: string;
  updated_at: string;
  all_documents: boolean;
  comment: string | null;
  items: {
    document_type: string;
    period_type: string;
    period_year: number;
    period_month: number | null;
    period_quarter: number | null;
  }[];
}

/** Seeded demo data: the README's curl examples use these. */
export const MYCREDITAPP_DEMO = {
  clientId: 'sim-client-id',
  clientSecret: 'sim-client-secret-0001',
  hostOrg: '0f6a6c1e-8d3b-4c2e-9a51-3c9d2b7e4a10',
  guestOrg: '5b2e9d47-1c8a-4f3e-b6d2-8e7a9c0f1d23',
  pendingRequest: '7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f',
  partialRequest: '8d2e3f40-5b6c-4d7e-9fa0-1b2c3d4e5f60',
  completedRequest: '9e3f4051-6c7d-4e8f-a0b1-2c3d4e5f6071',
  expiredRequest: 'af405162-7d8e-4f90-b1c2-3d4e5f607182',
  pendingApplication: 'b2a9f8d3-6e5c-4b1a-9d8e-7f6a5b4c3d21',
  approvedApplication: 'c3b0a9e4-7f6d-4c2b-8e9f-806b5c4d3e32',
  declinedApplication: 'd4c1b0f5-8a7e-4d3c-9fa0-917c6d5e4f43',
  expiringApplication: 'e5d2c1a6-9b8f-4e4d-a0b1-a28d7e6f5a54',
} as const;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** mycreditapp's own examples carry no timezone: `2025-01-02T12:00:00.123456`. */
const naive = (ms: number) => new Date(ms).toISOString().replace('Z', '000');

/** FastAPI's validation item for a value that is not a UUID. */
function uuidIssue(where: string, name: string) {
  return { loc: [where, name], msg: 'Input should be a valid UUID', type: 'uuid_parsing', code: 'validation_error' };
}

/** The organization headers every org-scoped route requires: missing is FastAPI's `missing`, malformed a UUID issue. */
function headerIssues(req: SimRequest) {
  return (['requester-organization-id', 'target-organization-id'] as const).flatMap((name) => {
    const value = req.headers[name];
    if (value === undefined)
      return [{ loc: ['header', name], msg: 'Field required', type: 'missing', code: 'validation_error' }];
    return typeof value === 'string' && UUID.test(value) ? [] : [uuidIssue('header', name)];
  });
}

export class MyCreditAppSimulator extends Simulator<MyCreditAppSimOptions> {
  readonly name = 'mycreditapp';
  readonly documentRequests = new Map<string, DocumentRequest>();
  readonly creditApplications = new Map<string, Record<string, unknown>>();
  private readonly tokens = new Map<string, number>();

  constructor(options: Partial<MyCreditAppSimOptions> & SimulatorBaseOptions = {}) {
    super(
      {
        clientId: MYCREDITAPP_DEMO.clientId,
        clientSecret: MYCREDITAPP_DEMO.clientSecret,
        apiVersion: 'v1-beta',
        tokenTtlSeconds: 3600,
        repeatCancel: '200',
        terminalStatus: '409',
        refusalWording: 'descriptive',
        maintenance: false,
        maintenanceStatus: 503,
        ratePerSecond: 0,
        retryAfterHeader: false,
      },
      options,
    );
  }

  protected override get rootPath(): string {
    return `/${this.options.apiVersion}`;
  }

  override reset(): void {
    this.tokens.clear();
    super.reset();
  }

  /** With the demo host organization as `organizationId`, the default of a guard's organization headers. */
  demoSecret(): Record<string, unknown> {
    return {
      clientId: MYCREDITAPP_DEMO.clientId,
      clientSecret: MYCREDITAPP_DEMO.clientSecret,
      baseUrl: this.url,
      organizationId: MYCREDITAPP_DEMO.hostOrg,
    };
  }

  seed(): void {
    this.documentRequests.clear();
    this.creditApplications.clear();
    const d = MYCREDITAPP_DEMO;
    this.addDocumentRequest(d.pendingRequest, 'pending');
    this.addDocumentRequest(d.partialRequest, 'partially');
    this.addDocumentRequest(d.completedRequest, 'completed');
    this.addDocumentRequest(d.expiredRequest, 'expired');
    const day = 86_400_000;
    this.addCreditApplication(d.pendingApplication, 'pending', Date.now() + 30 * day);
    this.addCreditApplication(d.approvedApplication, 'approved', Date.now() + 30 * day);
    this.addCreditApplication(d.declinedApplication, 'declined', Date.now() + 30 * day);
    this.addCreditApplication(d.expiringApplication, 'external_review', Date.now() - day);
  }

  addDocumentRequest(
    id: string,
    status: DocumentStatus,
    hostOrg: string = MYCREDITAPP_DEMO.hostOrg,
    guestOrg: string = MYCREDITAPP_DEMO.guestOrg,
  ): void {
    const created = naive(Date.now() - 3_600_000);
    this.documentRequests.set(id, {
      id,
      status,
      host_organization_id: hostOrg,
      guest_organization_id: guestOrg,
      follow_up: false,
      expires_at: naive(Date.now() + 14 * 86_400_000),
      created_at: created,
      updated_at: created,
      all_documents: false,
      comment: null,
      items: [
        {
          document_type: 'balance_sheet',
          period_type: 'month',
          period_year: 2026,
          period_month: 9,
          period_quarter: null,
        },
      ],
    });
  }

  addCreditApplication(id: string, status: string, expiresAtMs: number | null): void {
    const created = naive(Date.now() - 7 * 86_400_000);
    this.creditApplications.set(id, {
      id,
      credit_application_type: 'credit_terms',
      forwarder: { id: MYCREDITAPP_DEMO.hostOrg, name: 'Demo Forwarder', email: 'ops@forwarder.example' },
      shipper: { id: MYCREDITAPP_DEMO.guestOrg, name: 'Demo Shipper', email: 'finance@shipper.example' },
      status,
      created_at: created,
      updated_at: created,
      expires_at: expiresAtMs === null ? null : naive(expiresAtMs),
      // The shape of the API reference's application (PROVIDERS.md 1.2): `payment_terms` a string, the trade
      // profile, its document and the security-compliance answers, and the proposal in `extra_details`.
      data: {
        details: {
          annual_revenue: 1_200_000,
          credit_amount: 50_000,
          currency: 'USD',
          payment_terms: 'net_30',
          freight_spend: 200_000,
          purpose: 'working capital',
        },
        trade_profile: {
          shipping_routes: [{ origin: 'CN', destination: 'US' }],
          trade_types: ['import'],
          avg_shipment_value: 25_000,
        },
        trade_profile_document: { filename: 'trade-profile.pdf' },
        security_compliance: [
          { title: 'C-TPAT certified', other: null, description: 'Customs-Trade Partnership Against Terrorism' },
        ],
      },
      extra_details: { created_at: created, updated_at: created, proposed_amount: 45_000, proposed_terms: 'net_45' },
    });
  }

  protected setResource(id: string, body: unknown): boolean {
    const b = body as { status?: string; expiresAt?: string | null; kind?: string };
    if (b.kind === 'credit-application' || this.creditApplications.has(id)) {
      const expires =
        b.expiresAt === undefined ? Date.now() + 86_400_000 : b.expiresAt === null ? null : Date.parse(b.expiresAt);
      this.addCreditApplication(id, b.status ?? 'pending', expires);
      return true;
    }
    const existing = this.documentRequests.get(id);
    if (existing) existing.status = (b.status ?? 'pending') as DocumentStatus;
    else this.addDocumentRequest(id, (b.status ?? 'pending') as DocumentStatus);
    return true;
  }

  private detail(
    status: number,
    items: { msg: string; type: string; code: string; loc?: (string | number)[] }[],
    headers: Record<string, string> = {},
  ): SimResponse {
    return {
      status,
      body: { detail: items.map((i) => ({ loc: i.loc ?? [], msg: i.msg, type: i.type, code: i.code })) },
      headers: { 'x-request-id': randomUUID(), ...headers },
    };
  }

  protected handle(req: SimRequest): SimResponse {
    const wait = this.throttle(this.options.ratePerSecond);
    if (wait !== undefined) {
      const headers: Record<string, string> = this.options.retryAfterHeader
        ? { 'retry-after': retryAfterSeconds(wait) }
        : {};
      return this.detail(429, [{ msg: 'Too many requests', type: 'rate_limit', code: 'rate_limit_exceeded' }], headers);
    }
    if (this.options.maintenance) {
      return this.detail(this.options.maintenanceStatus, [
        { msg: 'The service is under maintenance', type: 'maintenance', code: 'service_under_maintenance' },
      ]);
    }
    if (req.method === 'POST' && req.path === '/oauth2/token') return this.token(req);
    const bearer = /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ''))?.[1];
    const expires = bearer ? this.tokens.get(bearer) : undefined;
    if (!bearer || expires === undefined)
      return this.detail(401, [{ msg: 'Invalid or missing access token', type: 'oauth', code: 'oauth_invalid_token' }]);
    if (expires <= Date.now())
      return this.detail(401, [{ msg: 'The access token has expired', type: 'oauth', code: 'oauth_token_expired' }]);

    const app = /^\/credit-applications\/([^/]+)$/.exec(req.path);
    if (app && req.method === 'GET') {
      const id = decodeURIComponent(app[1] ?? '');
      // Both organization headers are mandatory on every route but the token's (PROVIDERS.md 1.1).
      const issues = [...headerIssues(req), ...(UUID.test(id) ? [] : [uuidIssue('path', 'credit_application_id')])];
      if (issues.length) return this.detail(422, issues);
      const found = this.creditApplications.get(id);
      return found
        ? { status: 200, body: found }
        : this.detail(404, [
            { msg: 'Credit application not found', type: 'not_found', code: 'credit_application_not_found' },
          ]);
    }
    const cancel = /^\/organizations\/([^/]+)\/documents\/requests\/([^/]+)\/cancellations$/.exec(req.path);
    if (cancel && req.method === 'POST')
      return this.cancel(decodeURIComponent(cancel[1] ?? ''), decodeURIComponent(cancel[2] ?? ''), req);
    // FastAPI's own answer to an unknown path (a wrong version segment, a wrong base URL).
    return { status: 404, body: { detail: 'Not Found' } };
  }

  private token(req: SimRequest): SimResponse {
    const body =
      req.json === INVALID_JSON || typeof req.json !== 'object' || req.json === null
        ? undefined
        : (req.json as Record<string, unknown>);
    if (!body)
      return this.detail(422, [
        { loc: ['body'], msg: 'Body must be a JSON object', type: 'json_invalid', code: 'validation_error' },
      ]);
    const issues = (['client_id', 'client_secret'] as const)
      .filter((f) => typeof body[f] !== 'string' || (body[f] as string).length === 0)
      .map((f) => ({ loc: ['body', f], msg: 'Field required', type: 'missing', code: 'validation_error' }));
    if (issues.length) return this.detail(422, issues);
    if (body.client_id !== this.options.clientId || body.client_secret !== this.options.clientSecret) {
      return this.detail(401, [
        { msg: 'Invalid client credentials', type: 'oauth', code: 'oauth_invalid_client_credentials' },
      ]);
    }
    const issuedAt = Math.floor(Date.now() / 1000);
    const claims = Buffer.from(
      JSON.stringify({
        sub: body.client_id,
        iat: issuedAt,
        exp: issuedAt + this.options.tokenTtlSeconds,
        jti: randomUUID(),
      }),
    ).toString('base64url');
    const head = Buffer.from('{"alg":"HS256","typ":"JWT"}').toString('base64url');
    const signature = createHmac('sha256', 'simulator').update(`${head}.${claims}`).digest('base64url');
    const accessToken = `${head}.${claims}.${signature}`;
    this.tokens.set(accessToken, Date.now() + this.options.tokenTtlSeconds * 1000);
    return {
      status: 200,
      body: { access_token: accessToken, expires_in: this.options.tokenTtlSeconds, token_type: 'bearer' },
    };
  }

  private cancel(orgId: string, requestId: string, req: SimRequest): SimResponse {
    const requester = req.headers['requester-organization-id'];
    const target = req.headers['target-organization-id'];
    const issues = [
      ...headerIssues(req),
      ...[
        ['path', 'org_id', orgId],
        ['path', 'request_id', requestId],
      ]
        .filter(([, , v]) => typeof v !== 'string' || !UUID.test(v))
        .map(([where, name]) => uuidIssue(where as string, name as string)),
    ];
    if (issues.length) return this.detail(422, issues);
    const request = this.documentRequests.get(requestId);
    if (!request)
      return this.detail(404, [
        { msg: 'Document request not found', type: 'not_found', code: 'document_request_not_found' },
      ]);
    const orgs = new Set([request.host_organization_id, request.guest_organization_id]);
    if (orgId !== request.host_organization_id || !orgs.has(String(requester)) || !orgs.has(String(target))) {
      return this.detail(403, [
        {
          msg: 'The organizations are not connected for this resource',
          type: 'authorization',
          code: 'organizations_not_connected',
        },
      ]);
    }
    if (request.status === 'canceled') {
      if (this.options.repeatCancel === '200') return { status: 200, body: request };
      return this.refuse(Number(this.options.repeatCancel), 'canceled');
    }
    if (request.status === 'completed' || request.status === 'expired')
      return this.refuse(Number(this.options.terminalStatus), request.status);
    request.status = 'canceled';
    request.updated_at = naive(Date.now());
    this.countCancel(requestId);
    return { status: 200, body: request };
  }

  private refuse(status: number, state: DocumentStatus): SimResponse {
    if (this.options.refusalWording === 'opaque') {
      return this.detail(status, [
        { msg: 'The request cannot be processed in its current state', type: 'invalid_request', code: 'invalid_state' },
      ]);
    }
    const msg =
      state === 'canceled'
        ? 'Document request is already canceled'
        : `Document request cannot be canceled because it is ${state}`;
    const code = state === 'canceled' ? 'document_request_already_canceled' : `document_request_${state}`;
    return this.detail(status, [{ msg, type: 'conflict', code }]);
  }
}

/** What `npm start` runs for mycreditapp (local/simulators/base.ts, SimulatorModule). */
export function create(): Simulator {
  return new MyCreditAppSimulator();
}

/** The demo organization answers lookups that name none. */
export const DEMO_SECRET = { organizationId: MYCREDITAPP_DEMO.hostOrg };

export const DEMO_REQUESTS: SimulatorModule['DEMO_REQUESTS'] = {
  calls: [],
  items: [
    {
      provider: 'mycreditapp',
      orgId: MYCREDITAPP_DEMO.hostOrg,
      requestId: MYCREDITAPP_DEMO.pendingRequest,
      requesterOrganizationId: MYCREDITAPP_DEMO.hostOrg,
      targetOrganizationId: MYCREDITAPP_DEMO.guestOrg,
    },
  ],
};
