/**
 * A Truework simulator: orders with verification requests, `PUT /orders/{id}/cancel` and `GET /orders/{id}`,
 * Bearer keys, versioned `Accept`, a 10 requests/second token bucket, and every JSON answer signed with its own
 * Ed25519 key (PROVIDERS.md 3.6). Unknowns are options: what a fully terminal order answers, whether not found
 * is 404 or 400, and whether a 429 carries Retry-After.
 */
import { createHash, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import {
  retryAfterSeconds,
  type SimRequest,
  type SimResponse,
  Simulator,
  type SimulatorBaseOptions,
  type SimulatorModule,
} from './base.ts';

export type VerificationState =
  | 'pending-approval'
  | 'action-required'
  | 'invalid'
  | 'processing'
  | 'completed'
  | 'canceled'
  | 'other';
const TERMINAL: VerificationState[] = ['completed', 'canceled', 'invalid'];
const REASONS = ['immediate', 'high-turnaround-time', 'competitor', 'wrong-info', 'other'];
const KEY_VERSION = '2023-10-30';

export interface TrueworkSimOptions {
  apiKeys: string[];
  ratePerSecond: number;
  burst: number;
  /** Send Retry-After (seconds) on a 429; Truework documents none. */
  retryAfterHeader: boolean;
  /** A fully terminal order: "200" echoes it unchanged; 400 or 403 refuse with `{"error": {"message"}}`. */
  terminalOrder: '200' | '400' | '403';
  /** An unknown order: 404, or the 400 "Order not found" the OpenAPI also allows. */
  notFound: '404' | '400';
  /** Sign answers (turn off to see what an unsigned answer does to a client that expects signatures). */
  sign: boolean;
}

interface VerificationRequest {
  id: string;
  created: string;
  state: { canonical_value: VerificationState; raw_value: string };
  cancellation_reason: { canonical_value: string; raw_value: string } | null;
  cancellation_details?: string | null;
  date_of_completion: string | null;
  loan_id: string | null;
  turnaround_time: { best_estimate: string | null; lower_bound: string | null; upper_bound: string | null };
}

interface Order {
  id: string;
  loan_id: string | null;
  verification_requests: VerificationRequest[];
}

export const TRUEWORK_DEMO = {
  apiKey: 'tw_sk_test_simulator_0000000001',
  open: 'ORDER_DEMO_OPEN',
  mixed: 'ORDER_DEMO_MIXED',
  completed: 'ORDER_DEMO_COMPLETED',
  canceled: 'ORDER_DEMO_CANCELED',
} as const;

export class TrueworkSimulator extends Simulator<TrueworkSimOptions> {
  readonly name = 'truework';
  readonly orders = new Map<string, Order>();
  readonly keyId = 'sim-1';
  /** The simulator's Ed25519 public key, base64 raw: what `truework.publicKeys` holds to trust it. */
  readonly publicKey: string;
  private readonly privateKey: KeyObject;

  constructor(options: Partial<TrueworkSimOptions> & SimulatorBaseOptions = {}) {
    super(
      {
        apiKeys: [TRUEWORK_DEMO.apiKey],
        ratePerSecond: 10,
        burst: 10,
        retryAfterHeader: false,
        terminalOrder: '200',
        notFound: '404',
        sign: true,
      },
      options,
    );
    const pair = generateKeyPairSync('ed25519');
    this.privateKey = pair.privateKey;
    const jwk = pair.publicKey.export({ format: 'jwk' });
    this.publicKey = Buffer.from(jwk.x ?? '', 'base64url').toString('base64');
  }

  /** With the simulator's signing key, so answers are verified as a configured deployment would. */
  demoSecret(): Record<string, unknown> {
    return { apiKey: TRUEWORK_DEMO.apiKey, baseUrl: this.url, publicKeys: { [this.keyId]: this.publicKey } };
  }

  seed(): void {
    this.orders.clear();
    this.add(TRUEWORK_DEMO.open, ['pending-approval', 'processing']);
    this.add(TRUEWORK_DEMO.mixed, ['processing', 'completed']);
    this.add(TRUEWORK_DEMO.completed, ['completed']);
    this.add(TRUEWORK_DEMO.canceled, ['canceled', 'canceled']);
  }

  add(id: string, states: VerificationState[]): void {
    const created = new Date().toISOString();
    this.orders.set(id, {
      id,
      loan_id: null,
      verification_requests: states.map((state, i) => ({
        id: createHash('sha256').update(`${id}/${i}`).digest('base64url').slice(0, 22),
        created,
        state: { canonical_value: state, raw_value: state },
        cancellation_reason: state === 'canceled' ? { canonical_value: 'other', raw_value: 'other' } : null,
        date_of_completion: TERMINAL.includes(state) ? created : null,
        loan_id: null,
        turnaround_time: { best_estimate: '48', lower_bound: '24', upper_bound: '72' },
      })),
    });
  }

  protected setResource(id: string, body: unknown): boolean {
    const states = (body as { states?: VerificationState[] }).states ?? ['pending-approval'];
    this.add(id, states);
    return true;
  }

  /** Signs like Truework: `date` and `content-length` lines, then the body (PROVIDERS.md 3.4). */
  private signed(status: number, body: unknown, extra: Record<string, string> = {}): SimResponse {
    const text = JSON.stringify(body);
    const headers: Record<string, string> = { date: new Date().toUTCString(), ...extra };
    if (this.options.sign) {
      const length = String(Buffer.byteLength(text));
      const message = Buffer.from(`date: ${headers.date}\ncontent-length: ${length}\n${text}`, 'utf8');
      const signature = sign(null, message, this.privateKey).toString('base64');
      headers['x-truework-signature'] =
        `keyId="${this.keyId}", headers="date content-length", signature="${signature}"`;
    }
    return { status, body, headers };
  }

  private error(
    status: number,
    message: string,
    extra: Record<string, unknown> = {},
    headers: Record<string, string> = {},
  ): SimResponse {
    return this.signed(status, { error: { message, ...extra } }, headers);
  }

  protected handle(req: SimRequest): SimResponse {
    const wait = this.throttle(this.options.ratePerSecond, this.options.burst);
    if (wait !== undefined) {
      const headers: Record<string, string> = this.options.retryAfterHeader
        ? { 'retry-after': retryAfterSeconds(wait) }
        : {};
      return this.error(429, 'Too many requests', {}, headers);
    }
    const key = /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ''))?.[1];
    if (!key || !this.options.apiKeys.includes(key)) return this.error(401, 'Invalid or missing API key');
    const accept = String(req.headers.accept ?? 'application/json');
    const version = /version=([^;\s]+)/.exec(accept)?.[1];
    if (
      !/application\/json|\*\/\*/.test(accept) ||
      (version !== undefined && version !== KEY_VERSION && !(version > KEY_VERSION))
    ) {
      return this.error(
        406,
        `Requested version ${version ?? accept} is not available for this key (pinned to ${KEY_VERSION})`,
      );
    }
    const get = /^\/orders\/([^/]+)$/.exec(req.path);
    if (get && req.method === 'GET') {
      const order = this.orders.get(decodeURIComponent(get[1] ?? ''));
      return order ? this.signed(200, order) : this.notFound();
    }
    const cancel = /^\/orders\/([^/]+)\/cancel$/.exec(req.path);
    if (cancel && req.method === 'PUT') return this.cancel(decodeURIComponent(cancel[1] ?? ''), req.json);
    return this.error(404, 'Not found');
  }

  private notFound(): SimResponse {
    return this.options.notFound === '400'
      ? this.error(400, 'Bad Request or Order not found')
      : this.error(404, 'Order not found');
  }

  private cancel(id: string, body: unknown): SimResponse {
    const input = (body ?? {}) as { cancellation_reason?: unknown; cancellation_details?: unknown };
    if (typeof input.cancellation_reason !== 'string' || !REASONS.includes(input.cancellation_reason)) {
      return this.error(400, 'Invalid field values provided', {
        invalid_fields: { cancellation_reason: [`must be one of ${REASONS.join(', ')}`] },
      });
    }
    const order = this.orders.get(id);
    if (!order) return this.notFound();
    const open = order.verification_requests.filter((vr) => !TERMINAL.includes(vr.state.canonical_value));
    if (open.length === 0 && this.options.terminalOrder !== '200') {
      return this.error(
        Number(this.options.terminalOrder),
        'Order cannot be canceled: every verification request is in a terminal state',
      );
    }
    for (const vr of open) {
      vr.state = { canonical_value: 'canceled', raw_value: 'canceled' };
      vr.cancellation_reason = { canonical_value: input.cancellation_reason, raw_value: input.cancellation_reason };
      vr.cancellation_details = typeof input.cancellation_details === 'string' ? input.cancellation_details : null;
    }
    if (open.length) this.countCancel(id);
    return this.signed(200, order);
  }
}

/** What `npm start` runs for Truework (local/simulators/base.ts, SimulatorModule). */
export function create(): Simulator {
  return new TrueworkSimulator();
}

export const DEMO_REQUESTS: SimulatorModule['DEMO_REQUESTS'] = {
  calls: [
    {
      path: `/v1/truework/orders/${TRUEWORK_DEMO.open}/cancel`,
      body: { reason: 'other', details: 'Credit application declined' },
    },
  ],
  items: [],
};
