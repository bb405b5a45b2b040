/**
 * The issuer's CAs and the trust bundle they make. One CA signs (`active`); a `next` CA can be
 * prepared, which publishes it in the bundle before it signs anything; activating it retires
 * the old one, which stays in the bundle until everything it signed has expired. The bundle's
 * `spiffe_sequence` goes up with every change of the root set and is kept in the store.
 *
 * @example
 * ```ts
 * const cas = await CaSet.open({ trustDomain, active: { certificate, privateKey }, store, clock, random });
 * cas.signer.sign({...});  cas.bundleJson();  await cas.prepareNext(next);  await cas.activateNext();
 * ```
 */
import { createHash, type KeyObject, X509Certificate } from 'node:crypto';
import type { Clock } from '../core/clock.ts';
import type { Random } from '../core/random.ts';
import { IssuerError } from '../errors.ts';
import { encodeBundle } from '../svid/bundle.ts';
import { createSigner, type SvidSigner } from '../svid/signer.ts';
import { K } from './records.ts';
import type { IssuerStore } from './store.ts';

export interface CaKeyPair {
  readonly certificate: Uint8Array;
  readonly privateKey: KeyObject;
}

interface Retired {
  readonly certificate: Buffer;
  readonly x509: X509Certificate;
  /** Everything it signed has expired by then. */
  readonly until: number;
}

interface BundleMeta {
  sequence: number;
  fingerprints: string[];
  retired: { certificate: Uint8Array; until: number }[];
}

export interface CaSetOptions {
  readonly trustDomain: string;
  readonly active: CaKeyPair;
  readonly next?: CaKeyPair;
  readonly store: IssuerStore;
  readonly clock: Clock;
  readonly random: Random;
  readonly refreshHintSeconds?: number;
  /** The longest lifetime the issuer gives anything (bounds how long a retired CA stays). */
  readonly maxTtlMs: number;
}

const fp = (der: Uint8Array): string => createHash('sha256').update(der).digest('hex');

function signerFor(o: CaSetOptions, pair: CaKeyPair): { signer: SvidSigner; x509: X509Certificate } {
  try {
    const signer = createSigner({
      certificate: pair.certificate,
      privateKey: pair.privateKey,
      trustDomain: o.trustDomain,
      random: o.random,
    });
    return { signer, x509: new X509Certificate(Buffer.from(pair.certificate)) };
  } catch (cause) {
    throw new IssuerError('ERR_ISSUER_CA_INVALID', `CA unusable: ${(cause as Error).message}`, {}, { cause });
  }
}

export class CaSet {
  readonly #o: CaSetOptions;
  #active: { signer: SvidSigner; x509: X509Certificate; maxSigned: number };
  #next: { signer: SvidSigner; x509: X509Certificate } | undefined;
  #retired: Retired[] = [];
  #sequence = 0;
  /** The encoded bundle, kept while the sequence and the number of live roots stay the same. */
  #bundle: { json: string; sequence: number; roots: number } | undefined;

  private constructor(o: CaSetOptions) {
    this.#o = o;
    const a = signerFor(o, o.active);
    this.#active = { ...a, maxSigned: 0 };
    this.#next = o.next === undefined ? undefined : signerFor(o, o.next);
  }

  static async open(o: CaSetOptions): Promise<CaSet> {
    const set = new CaSet(o);
    const now = o.clock.now();
    if (set.#active.signer.notAfter <= now)
      throw new IssuerError('ERR_ISSUER_CA_INVALID', 'the CA certificate has expired');
    const meta = await o.store.get<BundleMeta>(K.bundle);
    set.#sequence = meta?.sequence ?? 0;
    for (const r of meta?.retired ?? []) {
      const der = Buffer.from(r.certificate);
      if (r.until > now && !set.#roots().some((x) => x.equals(der)))
        set.#retired.push({ certificate: der, x509: new X509Certificate(der), until: r.until });
    }
    await set.#persist(meta);
    return set;
  }

  /** The CA that signs now. */
  get signer(): SvidSigner {
    return this.#active.signer;
  }

  get sequence(): number {
    return this.#sequence;
  }

  /** Every root a verifier must accept now: active, next, and retired ones still covering issued certificates. */
  roots(): X509Certificate[] {
    const now = this.#o.clock.now();
    return [
      this.#active.x509,
      ...(this.#next ? [this.#next.x509] : []),
      ...this.#retired.filter((r) => r.until > now).map((r) => r.x509),
    ];
  }

  #roots(): Buffer[] {
    return this.roots().map((r) => r.raw);
  }

  /** Remember the latest NotAfter the active CA signed (how long it must stay in the bundle). */
  noteSigned(notAfter: number): void {
    if (notAfter > this.#active.maxSigned) this.#active.maxSigned = notAfter;
  }

  /** The bundle JSON, encoded once per root set (every GET /v1/bundle and issuance serves it). */
  bundleJson(): string {
    const roots = this.#roots();
    // The root set changes through #persist (a new sequence) or by a retired root lapsing before
    // prune (one root fewer).
    let cached = this.#bundle;
    if (cached === undefined || cached.sequence !== this.#sequence || cached.roots !== roots.length) {
      cached = {
        json: encodeBundle({
          roots,
          sequence: this.#sequence,
          ...(this.#o.refreshHintSeconds === undefined
            ? {}
            : { refreshHintSeconds: this.#o.refreshHintSeconds }),
        }),
        sequence: this.#sequence,
        roots: roots.length,
      };
      this.#bundle = cached;
    }
    return cached.json;
  }

  /** Publish `next` in the bundle; it signs nothing until `activateNext`. */
  async prepareNext(next: CaKeyPair): Promise<void> {
    this.#next = signerFor(this.#o, next);
    await this.#persist();
  }

  /** Make the prepared CA the signer; the old one stays in the bundle until what it signed expires. */
  async activateNext(): Promise<void> {
    if (this.#next === undefined)
      throw new IssuerError('ERR_ISSUER_CA_INVALID', 'no next CA prepared (set ca.next)');
    const old = this.#active;
    // maxSigned is lost over a restart: the longest TTL from now covers anything signed before.
    const until = Math.max(old.maxSigned, this.#o.clock.now() + this.#o.maxTtlMs);
    this.#retired.push({
      certificate: old.x509.raw,
      x509: old.x509,
      until: Math.min(until, old.signer.notAfter),
    });
    this.#active = { ...this.#next, maxSigned: 0 };
    this.#next = undefined;
    await this.#persist();
  }

  /** Drop retired CAs whose certificates have all expired; true when the bundle changed. */
  async prune(): Promise<boolean> {
    const now = this.#o.clock.now();
    const before = this.#retired.length;
    this.#retired = this.#retired.filter((r) => r.until > now);
    if (this.#retired.length === before) return false;
    await this.#persist();
    return true;
  }

  async #persist(meta?: BundleMeta): Promise<void> {
    const prints = this.#roots().map(fp);
    const old = meta ?? (await this.#o.store.get<BundleMeta>(K.bundle));
    const same = old !== undefined && old.fingerprints.join() === prints.join();
    if (!same) this.#sequence = (old?.sequence ?? 0) + 1;
    const retiredNow = this.#retired.map((r) => ({ certificate: r.certificate, until: r.until }));
    await this.#o.store.batch([
      {
        type: 'put',
        key: K.bundle,
        value: { sequence: this.#sequence, fingerprints: prints, retired: retiredNow },
      },
    ]);
  }
}
