/**
 * The issuer's CAs and the trust bundle they make. One CA signs (`active`); a `next` CA can be
 * prepared, which publishes it in the bundle before it signs anything; activating it retires
 * the old one, which stays in the bundle until everything it signed has expired. The bundle's
 * `spiffe_sequence` goes up with every change of the root set.
 *
 * With replicas, the CA state is the store's (`meta/bundle`: which certificate is active, which
 * is next, the retired ones, the sequence), never each process's own: every change is written
 * under the record's version (re-read and re-applied on conflict) and notifies the `ca` channel;
 * every replica re-reads the record on that notification, on a resync and on a poll, and signs
 * with the key pair (from its own configuration, never from the store) whose certificate the
 * store says is active. One `ca rotate` on any replica is thus applied by all of them. A replica
 * that does not hold the active CA's key refuses to sign (ERR_ISSUER_CA_INVALID, not ready).
 * A replica whose configured CA the store does not know (a first start, or a CA replaced by
 * editing the configuration rather than by rotation) makes it the active one, as one process did.
 *
 * @example
 * ```ts
 * const cas = await CaSet.open({ trustDomain, active: { certificate, privateKey }, store, clock, random });
 * cas.signer.sign({...});  cas.bundleJson();  await cas.prepareNext(next);  await cas.activateNext();
 * ```
 */
import { createHash, type KeyObject, X509Certificate } from 'node:crypto';
import type { Clock, Timer } from '../core/clock.ts';
import { isEdgewardError } from '../core/error.ts';
import { type Logger, nullLogger } from '../core/logger.ts';
import type { Random } from '../core/random.ts';
import { IssuerError } from '../errors.ts';
import { encodeBundle } from '../svid/bundle.ts';
import { createSigner, type SvidSigner } from '../svid/signer.ts';
import type { JwtKeySet } from './jwt-keys.ts';
import { K } from './records.ts';
import type { IssuerStore, StoreSubscription } from './store.ts';

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

/** `meta/bundle`: the CA state all replicas share. */
interface BundleMeta {
  sequence: number;
  fingerprints: string[];
  retired: { certificate: Uint8Array; until: number }[];
  /** The active CA's certificate (absent in a store written before replicas: the config's then). */
  active?: Uint8Array;
  next?: Uint8Array;
}

/** The store channel a CA change notifies. */
export const CA_CHANNEL = 'ca';
/** How often a replica re-reads the CA state without being told (backstop). */
export const CA_POLL_MS = 30_000;
const ATTEMPTS = 16;

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
  readonly logger?: Logger;
  readonly pollMs?: number;
  /** JWT-SVID signing keys published in the bundle (`jwt-keys.ts`); the bundle sequence is the sum of both. */
  readonly jwtKeys?: JwtKeySet;
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

type Signing = { signer: SvidSigner; x509: X509Certificate; pair: CaKeyPair };

export class CaSet {
  readonly #o: CaSetOptions;
  readonly #log: Logger;
  /** Every key pair this process holds (configured, or prepared through it), by certificate fingerprint. */
  readonly #pairs = new Map<string, Signing>();
  #active: Signing | undefined;
  /** The active certificate when this replica lacks its key. */
  #activeX509: X509Certificate;
  #maxSigned = 0;
  #next: X509Certificate | undefined;
  #retired: Retired[] = [];
  #sequence = 0;
  /** The encoded bundle, kept while the sequence and the number of live keys stay the same. */
  #bundle: { json: string; sequence: number; roots: number } | undefined;
  #subscription: StoreSubscription | undefined;
  #timer: Timer | undefined;
  #closed = false;
  /** The store version of the record applied last (a poll that finds it unchanged does nothing). */
  #version: number | undefined;
  #waiters: { sequence: number; resolve: () => void }[] = [];

  private constructor(o: CaSetOptions) {
    this.#o = o;
    this.#log = o.logger ?? nullLogger;
    const a = this.#hold(o.active);
    if (o.next !== undefined) this.#hold(o.next);
    this.#active = a;
    this.#activeX509 = a.x509;
  }

  static async open(o: CaSetOptions): Promise<CaSet> {
    const set = new CaSet(o);
    const now = o.clock.now();
    if ((set.#active as Signing).signer.notAfter <= now)
      throw new IssuerError('ERR_ISSUER_CA_INVALID', 'the CA certificate has expired');
    const configuredNext = o.next === undefined ? undefined : fp(o.next.certificate);
    await set.#change((meta) => {
      if (meta?.active !== undefined && set.#pairs.has(fp(meta.active))) {
        // The store's state wins; a configured next CA it does not have yet is published.
        if (meta.next === undefined && configuredNext !== undefined && configuredNext !== fp(meta.active))
          return { ...meta, next: Buffer.from((o.next as CaKeyPair).certificate) };
        return meta;
      }
      // First start on this store, or a CA the store does not know: the configuration's.
      return {
        sequence: meta?.sequence ?? 0,
        fingerprints: meta?.fingerprints ?? [],
        retired: meta?.retired ?? [],
        active: Buffer.from(o.active.certificate),
        ...(o.next === undefined ? {} : { next: Buffer.from(o.next.certificate) }),
      };
    });
    o.jwtKeys?.onChange(() => set.#wake());
    set.#subscription = await o.store.subscribe(CA_CHANNEL, () => set.#refreshLogged());
    set.#schedulePoll();
    return set;
  }

  /** The CA that signs now (ERR_ISSUER_CA_INVALID when this replica lacks the active CA's key). */
  get signer(): SvidSigner {
    return this.activeKeyPair().signer;
  }

  /** The active CA's key pair and signer, as held by this replica. */
  activeKeyPair(): Signing {
    if (this.#active === undefined)
      throw new IssuerError(
        'ERR_ISSUER_CA_INVALID',
        `this replica does not hold the key of the active CA (${this.#activeX509.subject}): configure it as ca or ca.next`,
      );
    return this.#active;
  }

  /** The bundle's `spiffe_sequence`: the CA state's plus the JWT key state's (each only goes up). */
  get sequence(): number {
    return this.#sequence + (this.#o.jwtKeys?.sequence ?? 0);
  }

  /** Every root a verifier must accept now: active, next, and retired ones still covering issued certificates. */
  roots(): X509Certificate[] {
    const now = this.#o.clock.now();
    return [
      this.#activeX509,
      ...(this.#next ? [this.#next] : []),
      ...this.#retired.filter((r) => r.until > now).map((r) => r.x509),
    ];
  }

  #roots(): Buffer[] {
    return this.roots().map((r) => r.raw);
  }

  /** Remember the latest NotAfter the active CA signed (how long it must stay in the bundle). */
  noteSigned(notAfter: number): void {
    if (notAfter > this.#maxSigned) this.#maxSigned = notAfter;
  }

  /** The bundle JSON, encoded once per root set (every GET /v1/bundle and issuance serves it). */
  bundleJson(): string {
    const roots = this.#roots();
    const jwtKeys = this.#o.jwtKeys?.authorities() ?? [];
    const sequence = this.sequence;
    const count = roots.length + jwtKeys.length;
    // The key set changes through the store (a new sequence) or by a retired key lapsing before
    // prune (one key fewer).
    let cached = this.#bundle;
    if (cached === undefined || cached.sequence !== sequence || cached.roots !== count) {
      cached = {
        json: encodeBundle({
          roots,
          jwtKeys,
          sequence,
          ...(this.#o.refreshHintSeconds === undefined
            ? {}
            : { refreshHintSeconds: this.#o.refreshHintSeconds }),
        }),
        sequence,
        roots: count,
      };
      this.#bundle = cached;
    }
    return cached.json;
  }

  /** Publish `next` in the bundle; it signs nothing until `activateNext`. */
  async prepareNext(next: CaKeyPair): Promise<void> {
    const n = this.#hold(next);
    await this.#change((meta) => ({ ...(meta as BundleMeta), next: n.x509.raw }));
  }

  /** Make the prepared CA the signer (on every replica); the old one stays in the bundle until what it signed expires. */
  async activateNext(): Promise<void> {
    await this.#change((meta) => {
      const m = meta as BundleMeta;
      if (m.next === undefined)
        throw new IssuerError('ERR_ISSUER_CA_INVALID', 'no next CA prepared (set ca.next)');
      if (!this.#pairs.has(fp(m.next)))
        throw new IssuerError(
          'ERR_ISSUER_CA_INVALID',
          'this replica does not hold the next CA key (configure ca.next here, or rotate on a replica that has it)',
        );
      const old = new X509Certificate(Buffer.from(m.active ?? this.#activeX509.raw));
      // What any replica signed with the old CA expires within the longest TTL from now.
      const until = Math.max(this.#maxSigned, this.#o.clock.now() + this.#o.maxTtlMs);
      const { next, ...rest } = m;
      return {
        ...rest,
        active: next,
        retired: [...m.retired, { certificate: old.raw, until: Math.min(until, Date.parse(old.validTo)) }],
      };
    });
  }

  /** Drop retired CAs whose certificates have all expired; true when the bundle changed. */
  async prune(): Promise<boolean> {
    const now = this.#o.clock.now();
    if (!this.#retired.some((r) => r.until <= now)) return false;
    await this.#change((meta) => ({
      ...(meta as BundleMeta),
      retired: (meta as BundleMeta).retired.filter((r) => r.until > now),
    }));
    return true;
  }

  /** Re-read the CA state from the store (what the notification, a resync and the poll do). */
  async refresh(): Promise<void> {
    const e = await this.#o.store.getEntry<BundleMeta>(K.bundle);
    if (e !== undefined && e.version !== this.#version) this.#apply(e.value, e.version);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#timer?.cancel();
    await this.#subscription?.close();
  }

  #hold(pair: CaKeyPair): Signing {
    const key = fp(pair.certificate);
    const have = this.#pairs.get(key);
    if (have !== undefined) return have;
    const s = { ...signerFor(this.#o, pair), pair };
    this.#pairs.set(key, s);
    return s;
  }

  /** This replica's view from the store's record. */
  #apply(meta: BundleMeta, version: number | undefined): void {
    this.#version = version;
    const now = this.#o.clock.now();
    if (meta.active !== undefined) {
      const der = Buffer.from(meta.active);
      const held = this.#pairs.get(fp(der));
      if (held !== this.#active) this.#maxSigned = 0;
      this.#active = held;
      this.#activeX509 = held?.x509 ?? new X509Certificate(der);
    }
    this.#next = meta.next === undefined ? undefined : new X509Certificate(Buffer.from(meta.next));
    const live = [this.#activeX509.raw, ...(this.#next ? [this.#next.raw] : [])];
    this.#retired = meta.retired
      .filter((r) => r.until > now && !live.some((x) => x.equals(Buffer.from(r.certificate))))
      .map((r) => {
        const der = Buffer.from(r.certificate);
        return { certificate: der, x509: new X509Certificate(der), until: r.until };
      });
    this.#sequence = meta.sequence;
    this.#wake();
  }

  #wake(): void {
    const ready = this.#waiters.filter((w) => w.sequence <= this.sequence);
    this.#waiters = this.#waiters.filter((w) => w.sequence > this.sequence);
    for (const w of ready) w.resolve();
  }

  /** Resolves once this replica has applied bundle sequence `sequence` (a change on any replica). */
  whenSequence(sequence: number): Promise<void> {
    if (sequence <= this.sequence) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ sequence, resolve }));
  }

  /**
   * One change of the shared CA state: `f` on the record read, written under its version with a
   * new bundle sequence when the root set changed, notified to every replica; on a conflict
   * `f` runs again on the fresh record.
   */
  async #change(f: (meta: BundleMeta | undefined) => BundleMeta): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const entry = await this.#o.store.getEntry<BundleMeta>(K.bundle);
      const next = f(entry?.value);
      // Fingerprints of the root set the new record describes (as #apply will see it).
      const now = this.#o.clock.now();
      const live = [next.active, next.next].filter((x): x is Uint8Array => x !== undefined).map((x) => fp(x));
      const prints = [
        ...live,
        ...next.retired
          .filter((r) => r.until > now && !live.includes(fp(r.certificate)))
          .map((r) => fp(r.certificate)),
      ];
      const same = entry !== undefined && entry.value.fingerprints.join() === prints.join();
      const record: BundleMeta = {
        ...next,
        fingerprints: prints,
        sequence: same ? entry.value.sequence : (entry?.value.sequence ?? 0) + 1,
      };
      if (entry !== undefined && same && unchanged(entry.value, record)) {
        this.#apply(entry.value, entry.version);
        return;
      }
      try {
        const { version } = await this.#o.store.batch([
          entry === undefined
            ? { type: 'absent', key: K.bundle }
            : { type: 'version', key: K.bundle, version: entry.version },
          { type: 'put', key: K.bundle, value: record },
          { type: 'notify', channel: CA_CHANNEL },
        ]);
        this.#apply(record, version);
        return;
      } catch (err) {
        if (!isEdgewardError(err) || err.code !== 'ERR_ISSUER_STORE_CONFLICT' || attempt >= ATTEMPTS)
          throw err;
      }
    }
  }

  #refreshLogged(): void {
    this.refresh().catch((e: unknown) => this.#log.warn('CA state refresh failed', { error: String(e) }));
  }

  #schedulePoll(): void {
    if (this.#closed) return;
    this.#timer = this.#o.clock.setTimer('issuer-ca-poll', this.#o.pollMs ?? CA_POLL_MS, () => {
      this.refresh()
        .catch((e: unknown) => this.#log.warn('CA state poll failed', { error: String(e) }))
        .finally(() => this.#schedulePoll());
    });
  }
}

const bytesEqual = (a: Uint8Array | undefined, b: Uint8Array | undefined): boolean =>
  a === undefined || b === undefined ? a === b : Buffer.from(a).equals(Buffer.from(b));

function unchanged(a: BundleMeta, b: BundleMeta): boolean {
  return (
    a.sequence === b.sequence &&
    bytesEqual(a.active, b.active) &&
    bytesEqual(a.next, b.next) &&
    a.retired.length === b.retired.length &&
    a.retired.every(
      (r, i) => r.until === b.retired[i]?.until && bytesEqual(r.certificate, b.retired[i]?.certificate),
    )
  );
}
