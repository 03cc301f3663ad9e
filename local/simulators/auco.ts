/**
 * An Auco simulator: documents with codes and signing status, `POST /document/cancel` for several codes at once
 * and `GET /document?code=`, with the bare private/public keys (PROVIDERS.md 2.4). Unknowns are options: what an
 * all-failed call answers (200 or 400, and the 400's body), what an unknown code does, how a status read of an
 * unknown code answers, and whether `email` must belong to an enrolled user.
 */
import {
  INVALID_JSON,
  type SimRequest,
  type SimResponse,
  Simulator,
  type SimulatorBaseOptions,
  type SimulatorModule,
} from './base.ts';

export type DocumentStatus = 'CREATED' | 'REJECTED' | 'EXPIRED' | 'FINISH';

export interface AucoSimOptions {
  privateKeys: string[];
  publicKeys: string[];
  /** When every code fails: "200" answers `{success: 0, ...}`; "400" answers 400 with the counts or a message. */
  allFailed: '200' | '400';
  allFailedBody: 'counts' | 'message';
  /** An unknown code in a cancel: counted as failed, or the whole call refused with 400. */
  unknownCode: 'error' | '400';
  /** A status read of an unknown code: 404, 400, or 200 with an empty body. */
  unknownStatus: '404' | '400' | '200';
  /** When non-empty, `email` must be one of these (else 400 USER_NOTFOUND). */
  enrolledEmails: string[];
  ratePerSecond: number;
}

interface AucoDocument {
  code: string;
  name: string;
  status: DocumentStatus;
}

export const AUCO_DEMO = {
  privateKey: 'prk_sim_0000000000000000001',
  publicKey: 'puk_sim_0000000000000000001',
  created: 'TR99AQMY31',
  created2: 'TR99AQMY32',
  signed: 'TR99AQFIN1',
  rejected: 'TR99AQREJ1',
  expired: 'TR99AQEXP1',
} as const;

export class AucoSimulator extends Simulator<AucoSimOptions> {
  readonly name = 'auco';
  readonly documents = new Map<string, AucoDocument>();
  /** The cancel messages and emails Auco would have mailed to signers and recorded. */
  readonly notices: { code: string; message: string; email: string }[] = [];

  constructor(options: Partial<AucoSimOptions> & SimulatorBaseOptions = {}) {
    super(
      {
        privateKeys: [AUCO_DEMO.privateKey],
        publicKeys: [AUCO_DEMO.publicKey],
        allFailed: '200',
        allFailedBody: 'counts',
        unknownCode: 'error',
        unknownStatus: '404',
        enrolledEmails: [],
        ratePerSecond: 0,
      },
      options,
    );
  }

  protected override get rootPath(): string {
    return '/v1.5/ext';
  }

  override reset(): void {
    this.notices.length = 0;
    super.reset();
  }

  demoSecret(): Record<string, unknown> {
    return { privateKey: AUCO_DEMO.privateKey, publicKey: AUCO_DEMO.publicKey, baseUrl: this.url };
  }

  seed(): void {
    this.documents.clear();
    this.add(AUCO_DEMO.created, 'CREATED');
    this.add(AUCO_DEMO.created2, 'CREATED');
    this.add(AUCO_DEMO.signed, 'FINISH');
    this.add(AUCO_DEMO.rejected, 'REJECTED');
    this.add(AUCO_DEMO.expired, 'EXPIRED');
  }

  add(code: string, status: DocumentStatus): void {
    this.documents.set(code, { code, name: `Credit agreement ${code}`, status });
  }

  protected setResource(id: string, body: unknown): boolean {
    this.add(id, ((body as { status?: DocumentStatus }).status ?? 'CREATED') as DocumentStatus);
    return true;
  }

  protected handle(req: SimRequest): SimResponse {
    if (this.throttle(this.options.ratePerSecond) !== undefined)
      return { status: 429, body: { message: 'Too many requests' } };
    const key = String(req.headers.authorization ?? '');
    if (req.method === 'POST' && req.path === '/document/cancel') {
      if (!this.options.privateKeys.includes(key))
        return { status: 401, body: { message: 'Unauthorized: a valid private key (prk_) is required' } };
      return this.cancel(req);
    }
    if (req.method === 'GET' && req.path === '/document') {
      if (!this.options.publicKeys.includes(key))
        return { status: 401, body: { message: 'Unauthorized: a valid public key (puk_) is required' } };
      const code = req.url.searchParams.get('code') ?? '';
      const doc = this.documents.get(code);
      if (!doc) {
        if (this.options.unknownStatus === '200') return { status: 200, text: '', type: 'application/json' };
        return { status: Number(this.options.unknownStatus), body: { message: 'Document not found' } };
      }
      // The signers appear both under `data` and at the top level (PROVIDERS.md, GET /document).
      const signProfile = [
        {
          name: 'Signer One',
          email: 'signer@shipper.example',
          status: doc.status === 'FINISH' ? 'FINISH' : 'NOTIFICATION',
        },
      ];
      return {
        status: 200,
        body: {
          url: `https://auco.example/document/${doc.code}`,
          name: doc.name,
          code: doc.code,
          status: doc.status,
          data: { signProfile },
          signProfile,
        },
      };
    }
    return { status: 404, body: { message: `No route for ${req.method} ${req.path}` } };
  }

  private cancel(req: SimRequest): SimResponse {
    const body =
      req.json === INVALID_JSON || typeof req.json !== 'object' || req.json === null
        ? {}
        : (req.json as Record<string, unknown>);
    const missing = ['codes', 'message', 'email'].filter(
      (f) => body[f] === undefined || body[f] === '' || (Array.isArray(body[f]) && (body[f] as unknown[]).length === 0),
    );
    if (missing.length) return { status: 400, body: { message: `Missing parameters: ${missing.join(', ')}` } };
    if (!Array.isArray(body.codes) || !body.codes.every((c) => typeof c === 'string'))
      return { status: 400, body: { message: 'codes must be a list of document codes' } };
    const email = String(body.email);
    if (this.options.enrolledEmails.length && !this.options.enrolledEmails.includes(email))
      return { status: 400, body: { message: 'USER_NOTFOUND' } };
    const codes = body.codes as string[];
    if (this.options.unknownCode === '400') {
      const unknown = codes.filter((c) => !this.documents.has(c));
      if (unknown.length) return { status: 400, body: { message: `Documents not found: ${unknown.join(', ')}` } };
    }
    const failed: string[] = [];
    let success = 0;
    for (const code of codes) {
      const doc = this.documents.get(code);
      if (doc?.status !== 'CREATED') {
        failed.push(code);
        continue;
      }
      doc.status = 'REJECTED';
      success++;
      this.countCancel(code);
      this.notices.push({ code, message: String(body.message), email });
    }
    const counts = { success, errors: failed.length ? { cant: failed.length, documents: failed } : { cant: 0 } };
    if (success === 0 && this.options.allFailed === '400') {
      return {
        status: 400,
        body: this.options.allFailedBody === 'counts' ? counts : { message: 'The documents could not be cancelled' },
      };
    }
    return { status: 200, body: counts };
  }
}

/** What `npm start` runs for Auco (local/simulators/base.ts, SimulatorModule). */
export function create(): Simulator {
  return new AucoSimulator();
}

export const DEMO_REQUESTS: SimulatorModule['DEMO_REQUESTS'] = {
  calls: [],
  items: [{ provider: 'auco', code: AUCO_DEMO.created }],
};
