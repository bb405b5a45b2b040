/**
 * TEST ONLY: an in-memory upstream for the agent's rotation logic. It speaks the protocol of
 * runtime/upstream/protocol.ts with real certificates (runtime/svid signer, one root CA), every
 * request and answer passed through CBOR as on the wire, and faults on demand: an endpoint can be
 * down (unreachable), answer 5xx or 429, or return garbage. Refusals are the issuer's own codes
 * (`IssuerErrorCode`, so a code the issuer never sends does not compile) with the HTTP status
 * the issuer answers them with (runtime/issuer/http.ts `statusFor`) and the agent's code for that
 * status (runtime/upstream/client.ts `codeForStatus`). Recovery (`/v1/recover/*`) checks the proof
 * of possession of the delegated CA key for real, against the CA serials this issuer signed;
 * `/v1/devices/issued` records what it is sent. Integration tests use the real issuer instead.
 */
import { createPublicKey, type KeyObject, verify, X509Certificate } from 'node:crypto';
import { decode, encode } from 'cbor-x';
import { newP256Key } from '../../../../runtime/agent/keys.ts';
import type { Random } from '../../../../runtime/core/random.ts';
import { AgentError, type IssuerErrorCode } from '../../../../runtime/errors.ts';
import { statusFor } from '../../../../runtime/issuer/http.ts';
import { createRootCa } from '../../../../runtime/svid/authority.ts';
import { encodeBundle } from '../../../../runtime/svid/bundle.ts';
import { parseCsr } from '../../../../runtime/svid/csr.ts';
import { caPopSignedData } from '../../../../runtime/svid/pop.ts';
import { createSigner, type SvidSigner } from '../../../../runtime/svid/signer.ts';
import { codeForStatus } from '../../../../runtime/upstream/client.ts';
import type {
  AttestBeginRequest,
  DeviceIssuedEntry,
  DevicesIssuedRequest,
  IssuedIdentity,
  RecoverBeginRequest,
  RecoverFinishRequest,
  RenewFinishRequest,
  RevocationFeed,
} from '../../../../runtime/upstream/protocol.ts';
import type { CallOptions, Upstream, UpstreamEndpoint } from '../../../../runtime/upstream/types.ts';

export type Fault = 'down' | '503' | '429' | 'garbage';

/**
 * Another issuer behind these endpoints (helpers/real-issuer.ts): it is handed the request body
 * and the client certificate (the SVID leaf, DER) and answers, or refuses with the issuer's code.
 */
export type Backend = (
  path: string,
  body: unknown,
  clientLeaf: Uint8Array | undefined,
) => Promise<{ answer: unknown } | { refused: string }>;

/** An issuer refusal: the typed error the agent's client makes of it. */
export function refusal(code: IssuerErrorCode, endpoint: string, path: string): AgentError {
  return clientError(code, endpoint, path);
}

/** What the agent's client (runtime/upstream/client.ts) makes of an issuer's error answer. */
function clientError(code: string, endpoint: string, path: string): AgentError {
  const status = statusFor(code);
  return new AgentError(codeForStatus(status), `${endpoint}${path}: ${status} ${code}`, {
    endpoint,
    status,
    remoteCode: code,
  });
}

export interface Call {
  endpoint: string;
  method: 'GET' | 'POST';
  path: string;
  at: number;
  clientId: string | undefined;
  /** The request body as sent (CBOR round trip), for POSTs. */
  body: unknown;
}

export class FakeIssuer {
  readonly trustDomain: string;
  readonly rootDer: Buffer;
  readonly rootKey: KeyObject;
  readonly calls: Call[] = [];
  readonly faults = new Map<string, Fault>();
  /** Refusals by path prefix (`/v1/renew`, `/v1/recover/finish`, ...), answered before anything else. */
  readonly refusals = new Map<string, IssuerErrorCode>();
  /** Join tokens are single use, as on the real issuer (off: every attestation is admitted). */
  consumeTokens = false;
  /** Serials (hex) of every delegated CA this issuer signed: what recovery admits. */
  readonly caSerials = new Set<string>();
  /** Entries received on `/v1/devices/issued`, per request. */
  readonly uploads: DeviceIssuedEntry[][] = [];
  /** Refuse `/v1/devices/issued` after this many accepted requests (resumable upload tests). */
  acceptUploads = Number.POSITIVE_INFINITY;
  /** When set, requests go to this issuer instead (faults and refusals still apply first). */
  backend: Backend | undefined;
  svidTtlMs = 60 * 60_000;
  caTtlMs = 24 * 60 * 60_000;
  /** When each delegated CA was signed (virtual ms). */
  readonly caIssued: number[] = [];
  gatewayName = 'gw-1';
  bundleSequence = 1;
  revocations: RevocationFeed = { sequence: 0, entries: [] };
  readonly #clock: { now(): number };
  readonly #signer: SvidSigner;
  #sessions = 0;
  #tokenUsed = false;
  readonly #recoverSessions = new Map<string, { nonce: Uint8Array; caPublic: KeyObject }>();

  constructor(clock: { now(): number }, random: Random, trustDomain = 'fleet.example') {
    this.#clock = clock;
    this.trustDomain = trustDomain;
    this.rootKey = newP256Key();
    this.rootDer = createRootCa({
      trustDomain,
      privateKey: this.rootKey,
      notBefore: clock.now() - 60_000,
      notAfter: clock.now() + 365 * 86_400_000,
      random,
    });
    this.#signer = createSigner({ certificate: this.rootDer, privateKey: this.rootKey, trustDomain, random });
  }

  get bundleJson(): string {
    return encodeBundle({ roots: [this.rootDer], sequence: this.bundleSequence, refreshHintSeconds: 300 });
  }

  /** An upstream with one endpoint per URL, all served by this issuer. */
  upstream(urls: readonly string[] = ['https://issuer-a.test']): Upstream {
    return { endpoints: urls.map((u) => this.#endpoint(u)), close: async () => {} };
  }

  count(path: string, endpoint?: string): number {
    return this.calls.filter(
      (c) => c.path.startsWith(path) && (endpoint === undefined || c.endpoint === endpoint),
    ).length;
  }

  #endpoint(url: string): UpstreamEndpoint {
    const call = async <T>(
      method: 'GET' | 'POST',
      path: string,
      body: unknown,
      opts?: CallOptions,
    ): Promise<T> => {
      const now = this.#clock.now();
      const clientId = opts?.clientSvid?.spiffeId;
      this.calls.push({
        endpoint: url,
        method,
        path,
        at: now,
        clientId,
        body: body === undefined ? undefined : decode(encode(body)),
      });
      const fault = this.faults.get(url) ?? this.faults.get('*');
      const err = (code: ConstructorParameters<typeof AgentError>[0], status: number, extra = {}) =>
        new AgentError(code, `${url}${path}: ${status}`, { endpoint: url, status, ...extra });
      if (fault === 'down') throw err('ERR_UPSTREAM_UNREACHABLE', 0);
      if (fault === '503') throw err('ERR_UPSTREAM_UNAVAILABLE', 503);
      if (fault === '429') throw err('ERR_UPSTREAM_RATE_LIMITED', 429, { retryAfterMs: 120_000 });
      for (const [prefix, code] of this.refusals) if (path.startsWith(prefix)) throw refusal(code, url, path);
      const req = body === undefined ? undefined : decode(encode(body));
      let res: unknown;
      if (this.backend !== undefined) {
        const out = await this.backend(path, body, opts?.clientSvid?.chain[0]?.raw);
        if ('refused' in out) throw clientError(out.refused, url, path);
        res = out.answer;
      } else
        try {
          res = this.#handle(path, req, clientId);
        } catch (e) {
          throw e instanceof Refused ? refusal(e.issuerCode, url, path) : e;
        }
      if (fault === 'garbage' && path.endsWith('finish')) {
        const bad = res as IssuedIdentity;
        return decode(encode({ ...bad, svidChain: [this.rootDer] })) as T;
      }
      return decode(encode(res)) as T;
    };
    return {
      url,
      post: (path, body, opts) => call('POST', path, body, opts),
      get: (path, opts) => call('GET', path, undefined, opts),
    };
  }

  #handle(path: string, req: unknown, clientId: string | undefined): unknown {
    const now = this.#clock.now();
    const id = `spiffe://${this.trustDomain}/gateway/${this.gatewayName}`;
    switch (path.split('?')[0]) {
      case '/v1/attest/begin': {
        const r = req as AttestBeginRequest;
        if (r.method !== 'join-token') throw new AgentError('ERR_UPSTREAM_REJECTED', 'method');
        if (this.consumeTokens && this.#tokenUsed) throw refused('ERR_ISSUER_TOKEN_INVALID');
        this.#tokenUsed = true;
        return {
          sessionId: `s${this.#sessions++}`,
          nonce: new Uint8Array(32).fill(7),
          expiresAt: now + 60_000,
        };
      }
      case '/v1/renew/begin':
        if (clientId !== id) throw new AgentError('ERR_UPSTREAM_REFUSED', 'renewal without mTLS identity');
        return {
          sessionId: `s${this.#sessions++}`,
          nonce: new Uint8Array(32).fill(9),
          expiresAt: now + 60_000,
        };
      case '/v1/recover/begin': {
        const r = req as RecoverBeginRequest;
        const caDer = r.caChain[0];
        if (caDer === undefined) throw refused('ERR_ISSUER_BAD_REQUEST');
        const ca = new X509Certificate(Buffer.from(caDer));
        if (!ca.verify(this.root().publicKey)) throw refused('ERR_ISSUER_CHAIN_INVALID');
        if (!(Date.parse(ca.validFrom) <= now && now < Date.parse(ca.validTo)))
          throw refused('ERR_ISSUER_CHAIN_INVALID');
        if (!this.caSerials.has(ca.serialNumber.toLowerCase())) throw refused('ERR_ISSUER_POP_INVALID');
        const sessionId = `r${this.#sessions++}`;
        const nonce = new Uint8Array(32).fill(this.#sessions & 0xff);
        this.#recoverSessions.set(sessionId, {
          nonce,
          caPublic: createPublicKey(ca.publicKey.export({ format: 'pem', type: 'spki' })),
        });
        return { sessionId, nonce, expiresAt: now + 60_000 };
      }
      case '/v1/devices/issued': {
        if (clientId !== id) throw refused('ERR_ISSUER_CLIENT_CERT');
        const r = req as DevicesIssuedRequest;
        if (r.entries.length > 500) throw refused('ERR_ISSUER_BAD_REQUEST');
        if (r.entries.some((e) => !e.spiffeId.startsWith(`${id}/device/`)))
          throw refused('ERR_ISSUER_BAD_REQUEST');
        if (this.uploads.length >= this.acceptUploads)
          throw new AgentError('ERR_UPSTREAM_UNAVAILABLE', '503');
        this.uploads.push(r.entries);
        return { accepted: r.entries.length };
      }
      case '/v1/recover/finish':
      case '/v1/attest/finish':
      case '/v1/renew/finish': {
        const r = req as RenewFinishRequest;
        if (path === '/v1/recover/finish') {
          const f = req as RecoverFinishRequest;
          const session = this.#recoverSessions.get(f.sessionId);
          this.#recoverSessions.delete(f.sessionId);
          if (session === undefined) throw refused('ERR_ISSUER_SESSION_UNKNOWN');
          const signed = caPopSignedData(session.nonce, parseCsr(f.csr).spki);
          if (
            !verify(
              'sha256',
              signed,
              { key: session.caPublic, dsaEncoding: 'der' },
              Buffer.from(f.caSignature),
            )
          )
            throw refused('ERR_ISSUER_POP_INVALID');
        }
        const svid = this.#signer.sign({
          profile: 'svid',
          spiffeId: id,
          spki: parseCsr(r.csr).spki,
          notBefore: now,
          notAfter: now + this.svidTtlMs,
        });
        // A renewal without caCsr leaves the delegated CA alone (protocol.ts): empty chain.
        const ca =
          r.caCsr === undefined
            ? undefined
            : this.#signer.sign({
                profile: 'device-ca',
                spiffeId: id,
                spki: parseCsr(r.caCsr).spki,
                notBefore: now,
                notAfter: now + this.caTtlMs,
              });
        if (ca !== undefined) {
          this.caIssued.push(now);
          this.caSerials.add(new X509Certificate(ca).serialNumber.toLowerCase());
        }
        const out: IssuedIdentity = {
          spiffeId: id,
          svidChain: [svid],
          deviceCaChain: ca === undefined ? [] : [ca],
          bundle: this.bundleJson,
          bundleSequence: this.bundleSequence,
          nextNonce: new Uint8Array(32).fill(1),
        };
        return out;
      }
      case '/v1/revocations': {
        const since = Number(new URL(`https://x${path}`).searchParams.get('since') ?? 0);
        return { ...this.revocations, entries: this.revocations.entries.filter((e) => e.sequence > since) };
      }
      case '/v1/bundle': // the SPIFFE bundle itself, JSON text, as the issuer answers it
        return this.bundleJson;
      default:
        throw new AgentError('ERR_UPSTREAM_REJECTED', `404 ${path}`);
    }
  }

  root(): X509Certificate {
    return new X509Certificate(this.rootDer);
  }
}

/** A refusal thrown inside the fake's handler: the endpoint turns it into the client's error. */
class Refused extends Error {
  readonly issuerCode: IssuerErrorCode;
  constructor(code: IssuerErrorCode) {
    super(code);
    this.issuerCode = code;
  }
}
const refused = (code: IssuerErrorCode): Refused => new Refused(code);
