/**
 * One simulated tpm gateway of the `issuer-ha` load generator: the TypeScript TPM simulator
 * (sim/tpm, a provisioned state directory) and the real `TpmAttestor` for enrollment, then
 * renewals as the agent sends them: renew/finish on a fresh mTLS connection (full handshake,
 * one SecureContext per SVID, as `runtime/upstream/client.ts`) with the session and nonce of the
 * last issuance and a fresh quote over SHA-256(nonce ‖ CSR SPKI) by the AK. The AK stays loaded
 * in the simulator between renewals (a real agent recreates it per quote; that is TPM time on the
 * gateway, not issuer time), so the load generator spends ~1–2 ms of CPU per quote. `prepare()`
 * makes the quote ahead of the request, so the measured latency is the issuer's round trip.
 */
import { createPublicKey, generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { type RequestOptions, request } from 'node:https';
import { createSecureContext, type SecureContext } from 'node:tls';
import { TpmAttestor } from '../attestors/tpm/attestor.ts';
import { execute } from '../attestors/tpm/client/execute.ts';
import { flush } from '../attestors/tpm/client/helpers.ts';
import { CreatePrimary } from '../attestors/tpm/commands/hierarchy.ts';
import { type Ak, quotePcrs } from '../attestors/tpm/quote.ts';
import { qualifyingData } from '../attestors/tpm/verify/qualifying-data.ts';
import { TPM_RH } from '../attestors/tpm/wire/constants.ts';
import { parsePcrSelection } from '../attestors/tpm/wire/pcr-selection.ts';
import { marshalPublic } from '../attestors/tpm/wire/public.ts';
import { akEccP256Template } from '../attestors/tpm/wire/templates.ts';
import { cryptoRandom } from '../runtime/core/random.ts';
import { issuerCbor } from '../runtime/issuer/store.ts';
import { createCsr } from '../runtime/svid/csr.ts';
import type {
  AttestBeginResponse,
  IssuedIdentity,
  RenewBeginResponse,
  RenewFinishRequest,
} from '../runtime/upstream/protocol.ts';
import { openSimTransport, type SimTpmTransport } from '../sim/tpm/index.ts';

export interface Reply {
  status: number;
  body: unknown;
}

/**
 * POST a CBOR body (or GET without one) on a fresh TLS connection (no keep-alive, no session
 * reuse: `agent: false`).
 */
export function post(
  url: string,
  path: string,
  body: unknown,
  secureContext: SecureContext,
  method: 'POST' | 'GET' = 'POST',
): Promise<Reply> {
  const payload = method === 'GET' ? Buffer.alloc(0) : Buffer.from(issuerCbor.encode(body));
  const u = new URL(path, url);
  // `secureContext` is passed through to tls.connect (not in @types/node's RequestOptions).
  const options: RequestOptions & { secureContext: SecureContext } = {
    host: u.hostname,
    port: u.port,
    path: u.pathname,
    method,
    agent: false,
    secureContext,
    headers: { 'content-type': 'application/cbor', 'content-length': payload.length },
  };
  return new Promise((resolve, reject) => {
    const req = request(options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        resolve({
          status: res.statusCode ?? 0,
          body: raw.length === 0 || method === 'GET' ? undefined : issuerCbor.decode(raw),
        });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

const spkiOf = (key: KeyObject): Buffer => createPublicKey(key).export({ format: 'der', type: 'spki' });

export class BenchGateway {
  readonly #tpm: SimTpmTransport;
  readonly #ca: string;
  readonly #key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  readonly #keyPem = this.#key.export({ format: 'pem', type: 'pkcs8' }) as string;
  readonly #csr = createCsr(this.#key);
  readonly #spki = spkiOf(this.#key);
  #ak: Ak | undefined;
  #selection = 'sha256:0';
  #tls: SecureContext | undefined;
  #session = '';
  #nonce: Uint8Array = new Uint8Array();
  #prepared: RenewFinishRequest | undefined;

  private constructor(tpm: SimTpmTransport, ca: string) {
    this.#tpm = tpm;
    this.#ca = ca;
  }

  /** Opens the simulator state in `dir` (provisioned by the driver). */
  static async open(dir: string, ca: string): Promise<BenchGateway> {
    return new BenchGateway(await openSimTransport(dir, { ekTypes: ['ecc'] }), ca);
  }

  /** tpm attestation (EK certificate, credential activation, quote) on `url`; keeps the AK loaded. */
  async enroll(url: string): Promise<void> {
    const attestor = new TpmAttestor({ transport: this.#tpm, random: cryptoRandom, ownsTransport: false });
    await attestor.start();
    const anonymous = createSecureContext({ ca: this.#ca });
    const b = await post(url, '/v1/attest/begin', await attestor.begin(), anonymous);
    if (b.status !== 200) throw new Error(`attest begin ${b.status} ${JSON.stringify(b.body)}`);
    const challenge = b.body as AttestBeginResponse;
    this.#selection = challenge.pcrSelection ?? this.#selection;
    const proof = await attestor.answer(challenge, this.#spki);
    const caCsr = createCsr(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
    const f = await post(
      url,
      '/v1/attest/finish',
      { sessionId: challenge.sessionId, csr: this.#csr, caCsr, ...proof },
      anonymous,
    );
    if (f.status !== 200) throw new Error(`attest finish ${f.status} ${JSON.stringify(f.body)}`);
    await attestor.close();
    this.#accept(f.body as IssuedIdentity);
    const r = await execute(this.#tpm, CreatePrimary, {
      primaryHandle: TPM_RH.ENDORSEMENT,
      inSensitive: { userAuth: new Uint8Array(), data: new Uint8Array() },
      inPublic: marshalPublic(akEccP256Template()),
      outsideInfo: new Uint8Array(),
      creationPCR: [],
    });
    this.#ak = { handle: r.objectHandle, public: Buffer.from(r.outPublic), name: Buffer.from(r.name) };
  }

  #accept(id: IssuedIdentity): void {
    const leaf = new X509Certificate(Buffer.from(id.svidChain[0] as Uint8Array));
    this.#tls = createSecureContext({ ca: this.#ca, cert: leaf.toString(), key: this.#keyPem });
    this.#session = id.nextSessionId as string;
    this.#nonce = id.nextNonce;
    this.#prepared = undefined;
  }

  /** The next renewal's request: a fresh quote on the last issuance's nonce. */
  async prepare(): Promise<void> {
    if (this.#prepared !== undefined) return;
    const q = await quotePcrs(
      this.#tpm,
      this.#ak as Ak,
      qualifyingData(this.#nonce, this.#spki),
      parsePcrSelection(this.#selection),
    );
    this.#prepared = {
      sessionId: this.#session,
      csr: this.#csr,
      quote: q.quote,
      signature: q.signature,
      pcrValues: q.pcrValues,
    };
  }

  /** One renewal (prepared first when it is not); resolves with the HTTP status. */
  async renew(url: string): Promise<number> {
    await this.prepare();
    const r = await post(url, '/v1/renew/finish', this.#prepared, this.#tls as SecureContext);
    if (r.status === 200) {
      this.#accept(r.body as IssuedIdentity);
      return 200;
    }
    // The session is used up either way: a new one through renew/begin for the next attempt.
    this.#prepared = undefined;
    const b = await post(url, '/v1/renew/begin', {}, this.#tls as SecureContext).catch(() => undefined);
    const s = b?.body as RenewBeginResponse | undefined;
    if (b?.status === 200 && s !== undefined) {
      this.#session = s.sessionId;
      this.#nonce = s.nonce;
    }
    return r.status;
  }

  /** The floor of a renewal: GET /v1/bundle (no store, no signing) on a fresh mTLS connection. */
  async floor(url: string): Promise<number> {
    return (await post(url, '/v1/bundle', undefined, this.#tls as SecureContext, 'GET')).status;
  }

  async close(): Promise<void> {
    if (this.#ak !== undefined) await flush(this.#tpm, this.#ak.handle).catch(() => undefined);
    await this.#tpm.close();
  }
}
