/**
 * The gateway's local server identity: the certificate its broker and enrollment listener
 * present, minted by the gateway itself under its delegated CA, so local service lasts as long
 * as the CA (the offline budget), not as long as the upstream gateway SVID (issue 14 item 2).
 *
 * - a fresh P-256 key per certificate, held in memory only (never written anywhere);
 * - URI SAN = the gateway's own SPIFFE ID (the CA's ID), DNS/IP SANs = the server names the
 *   issuer admitted, read from the gateway SVID it issued; EKU serverAuth only;
 * - lives `ttlMs` (default 1 h), never past the CA (the signer clamps), signed by the agent's
 *   device signer (`device-signer.ts`: the one signing path of the delegated CA key);
 * - re-minted at half-life, when the CA or the admitted names change, and retried every
 *   `retryMs` while the signer refuses (clock untrusted); the chain is leaf, delegated CA and
 *   what is above it, never the root;
 * - at the CA's NotAfter (the budget's end) it is gone at once: `getX509Svid` throws
 *   `ERR_SVID_UNAVAILABLE`, listeners are told, and the log says so (`local.budget-ended`).
 *
 * Validity is judged by `now()` (the agent's clock with its time floor) at every call, so it is
 * never handed out past its end even between timers.
 *
 * @example
 * ```ts
 * const server = new ServerIdentity({ signer: agent.deviceSigner, caIdentity: () => ..., onIdentityChange: (f) => agent.svidSource.onChange(f), clock, now: () => agent.now(), logger });
 * await server.start();
 * startBroker({ serverSource: server, svidSource: agent.svidSource, ... });
 * ```
 */
import { type KeyObject, X509Certificate } from 'node:crypto';
import type { Clock, Timer } from '../core/clock.ts';
import type { Logger } from '../core/logger.ts';
import { RuntimeError } from '../errors.ts';
import { Listeners } from '../sources/listeners.ts';
import type { SvidSource, Unsubscribe, X509Svid } from '../sources/types.ts';
import { spkiOf } from '../svid/signer.ts';
import type { SignedServerCertificate } from './device-signer.ts';
import { codeOf, eventLog, iso } from './events.ts';
import type { LiveIdentity } from './identity.ts';
import { newP256Key } from './keys.ts';

export const DEFAULT_SERVER_TTL_MS = 60 * 60_000;
const DEFAULT_RETRY_MS = 30_000;

export interface ServerIdentityOptions {
  readonly signer: {
    signServer(request: {
      spki: Uint8Array;
      ttlMs: number;
      serverNames: readonly string[];
    }): Promise<SignedServerCertificate>;
  };
  /** The loaded identity whose delegated CA is valid now, if any. */
  caIdentity(): LiveIdentity | undefined;
  /** Subscribe to changes of the gateway's identity (rotation of the SVID or the CA, expiry). */
  onIdentityChange(listener: () => void): Unsubscribe;
  readonly clock: Clock;
  /** The time validity is judged by (the agent's, never below the time floor). */
  now(): number;
  readonly logger: Logger;
  readonly ttlMs?: number;
  readonly retryMs?: number;
  /** TEST ONLY override; default a fresh P-256 key from the OS. */
  readonly newKey?: () => KeyObject;
}

/** What `status` and `/metrics` show of local service. */
export interface LocalServiceStatus {
  /** True while a server certificate valid now is presented. */
  readonly up: boolean;
  /** The server certificate's NotAfter (it is re-minted before then while the CA lasts). */
  readonly certNotAfter: number | undefined;
  /** When local service stops: the delegated CA's NotAfter (the end of the offline budget). */
  readonly stopsAt: number | undefined;
  /** Milliseconds of offline budget left (0 once ended). */
  readonly budgetRemainingMs: number | undefined;
}

interface Minted {
  readonly svid: X509Svid;
  readonly notBefore: number;
  readonly caFingerprint: string;
  readonly caNotAfter: number;
  readonly names: string;
}

export class ServerIdentity implements SvidSource {
  readonly #o: ServerIdentityOptions;
  readonly #listeners: Listeners<[]>;
  readonly #event: ReturnType<typeof eventLog>;
  #minted: Minted | undefined;
  /** The mint in flight (signing may be asynchronous: TPM2_Sign), and whether another was asked for meanwhile. */
  #inflight: Promise<void> | undefined;
  #again = false;
  /** NotAfter of the last CA served, to tell the budget's end from "never had one". */
  #lastCaNotAfter: number | undefined;
  #timer: Timer | undefined;
  #off: Unsubscribe | undefined;
  #running = false;
  #ended = false;

  constructor(o: ServerIdentityOptions) {
    const ttl = o.ttlMs ?? DEFAULT_SERVER_TTL_MS;
    if (!(ttl > 0)) throw new TypeError('server certificate ttlMs must be positive');
    this.#o = o;
    this.#listeners = new Listeners('server-identity', o.logger);
    this.#event = eventLog(o.logger);
  }

  /**
   * Follow the gateway identity; resolves once the first certificate is minted (or refused, or
   * there is no valid CA to mint under).
   */
  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    this.#off = this.#o.onIdentityChange(() => this.#onIdentityChange());
    await this.#refresh();
  }

  stop(): void {
    this.#running = false;
    this.#off?.();
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#listeners.clear();
  }

  onChange(listener: () => void): Unsubscribe {
    return this.#listeners.add(listener);
  }

  getX509Svid(): X509Svid {
    const m = this.#valid();
    if (m === undefined)
      throw new RuntimeError(
        'ERR_SVID_UNAVAILABLE',
        this.#ended
          ? 'the offline budget has ended (delegated CA expired): local service stopped'
          : 'no local server certificate (no valid delegated CA)',
      );
    return m.svid;
  }

  status(): LocalServiceStatus {
    const now = this.#o.now();
    const m = this.#valid();
    const ca = this.#o.caIdentity();
    const stopsAt = ca?.ca.notAfter ?? this.#lastCaNotAfter;
    return {
      up: m !== undefined,
      certNotAfter: m?.svid.notAfter,
      stopsAt,
      budgetRemainingMs: stopsAt === undefined ? undefined : Math.max(0, stopsAt - now),
    };
  }

  #valid(): Minted | undefined {
    const m = this.#minted;
    const now = this.#o.now();
    return m !== undefined && now < m.svid.notAfter && now < m.caNotAfter ? m : undefined;
  }

  #onIdentityChange(): void {
    if (!this.#running) return;
    const ca = this.#o.caIdentity();
    const m = this.#minted;
    if (m !== undefined && ca !== undefined && sameCa(m, ca) && namesOf(ca).join(',') === m.names) return;
    void this.#refresh();
  }

  /** One mint at a time; a request during one runs once more after it. */
  #refresh(): Promise<void> {
    if (this.#inflight !== undefined) {
      this.#again = true;
      return this.#inflight;
    }
    const run = async (): Promise<void> => {
      do {
        this.#again = false;
        await this.#mint();
      } while (this.#again && this.#running);
    };
    this.#inflight = run().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  /** Mint when a CA is valid; otherwise end what is served. Arms the next timer. */
  async #mint(): Promise<void> {
    if (!this.#running) return;
    const ca = this.#o.caIdentity();
    if (ca === undefined) {
      this.#expire();
      return;
    }
    this.#lastCaNotAfter = ca.ca.notAfter;
    const key = (this.#o.newKey ?? newP256Key)();
    let signed: SignedServerCertificate;
    try {
      signed = await this.#o.signer.signServer({
        spki: spkiOf(key),
        ttlMs: this.#o.ttlMs ?? DEFAULT_SERVER_TTL_MS,
        serverNames: namesOf(ca),
      });
    } catch (err) {
      // Keep what is valid (until its own end), try again soon.
      this.#event('warn', 'local server certificate not minted', 'local.mint-failed', { code: codeOf(err) });
      this.#arm(true);
      return;
    }
    if (!this.#running) return;
    if (this.#o.now() >= signed.live.ca.notAfter) {
      // The CA ended while the signature was being made.
      this.#expire();
      return;
    }
    const chain = signed.chain.map((d) => new X509Certificate(Buffer.from(d)));
    const names = namesOf(signed.live);
    this.#minted = {
      svid: {
        spiffeId: signed.live.svid.spiffeId,
        chain,
        privateKey: key,
        notAfter: Math.min(signed.issued.notAfter, signed.live.ca.notAfter),
      },
      notBefore: signed.issued.notBefore,
      caFingerprint: fingerprintOf(signed.live),
      caNotAfter: signed.live.ca.notAfter,
      names: names.join(','),
    };
    this.#ended = false;
    this.#event('info', 'local server certificate minted', 'local.server-cert', {
      spiffeId: signed.live.svid.spiffeId,
      notAfter: iso(signed.issued.notAfter),
      stopsAt: iso(signed.live.ca.notAfter),
      serverNames: names.join(','),
    });
    this.#arm();
    this.#listeners.emit();
  }

  /** Nothing valid to serve any more: say so once, tell listeners. */
  #expire(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    const had = this.#minted !== undefined;
    this.#minted = undefined;
    const now = this.#o.now();
    if (had && this.#lastCaNotAfter !== undefined && now >= this.#lastCaNotAfter && !this.#ended) {
      this.#ended = true;
      this.#event(
        'error',
        'offline budget ended: the delegated CA expired, all local service stopped',
        'local.budget-ended',
        { code: 'ERR_SVID_UNAVAILABLE', stopsAt: iso(this.#lastCaNotAfter) },
      );
    }
    if (had) this.#listeners.emit();
  }

  /** Next: the half-life of the certificate (re-mint), its end, or a retry after a refusal. */
  #arm(failed = false): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    if (!this.#running) return;
    const now = this.#o.now();
    const m = this.#minted;
    const retry = now + (this.#o.retryMs ?? DEFAULT_RETRY_MS);
    let at: number;
    if (m === undefined || now >= m.svid.notAfter) at = retry;
    else if (failed) at = Math.min(retry, m.svid.notAfter);
    else if (m.svid.notAfter >= m.caNotAfter) {
      // Clamped to the CA: a re-mint would end there too. Its end is the budget's end, acted on exactly then.
      at = m.caNotAfter;
    } else {
      const half = m.notBefore + Math.floor((m.svid.notAfter - m.notBefore) / 2);
      at = Math.min(half > now ? half : retry, m.svid.notAfter);
    }
    this.#timer = this.#o.clock.setTimer('server-identity', Math.max(0, at - now), () => this.#due());
  }

  #due(): void {
    this.#timer = undefined;
    if (!this.#running) return;
    const m = this.#minted;
    const now = this.#o.now();
    if (m !== undefined && now >= m.svid.notAfter) {
      // Its end (or the CA's): gone now, whatever a re-mint below may bring.
      this.#expire();
    }
    void this.#refresh();
  }
}

/** The DNS/IP SANs of the gateway SVID the issuer signed (the names it admitted), in order. */
export function namesOf(live: LiveIdentity): string[] {
  const leaf = live.svid.chain[0];
  if (leaf === undefined) return [];
  const out: string[] = [];
  for (const part of (leaf.subjectAltName ?? '').split(', ')) {
    if (part.startsWith('DNS:')) out.push(part.slice(4));
    else if (part.startsWith('IP Address:')) out.push(part.slice(11));
  }
  return out;
}

function fingerprintOf(live: LiveIdentity): string {
  return (live.ca.chain[0] as X509Certificate).fingerprint256;
}

function sameCa(m: Minted, live: LiveIdentity): boolean {
  return m.caFingerprint === fingerprintOf(live);
}

/** What `serverIdentityOf` reads of the agent. */
export interface ServerIdentityHost {
  readonly svidSource: {
    loaded(): LiveIdentity | undefined;
    onChange(listener: () => void): Unsubscribe;
  };
  readonly deviceSigner: ServerIdentityOptions['signer'];
  now(): number;
}

/** The server identity of an agent: signed by its device signer, following its identity. */
export function serverIdentityOf(
  agent: ServerIdentityHost,
  o: { clock: Clock; logger: Logger; ttlMs?: number },
): ServerIdentity {
  return new ServerIdentity({
    signer: agent.deviceSigner,
    caIdentity: () => {
      const live = agent.svidSource.loaded();
      return live !== undefined && agent.now() < live.ca.notAfter ? live : undefined;
    },
    onIdentityChange: (f) => agent.svidSource.onChange(f),
    now: () => agent.now(),
    ...o,
  });
}
