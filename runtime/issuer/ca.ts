/**
 * The issuer's CAs and the trust bundle they make. One CA signs (`active`); a `next` CA can be
 * prepared, which publishes it in the bundle before it signs anything; a rotation schedules the
 * switch to it at a time recorded in the store (`activateAt`, `ca-state.ts`), and from then the
 * old one is retired, staying in the bundle until everything it signed has expired. The bundle's
 * `spiffe_sequence` goes up with every change of the root set, and at a switch.
 *
 * With replicas, the CA state is the store's (`meta/bundle`, followed by `ca-record.ts`), never
 * each process's own; every replica signs with the key pair (from its own configuration, never
 * from the store) whose certificate the record says is active at this instant. A scheduled switch
 * happens on every replica at the recorded time by its own clock (a timer, and a check before
 * each signature), not at a restart. A replica that does not hold the active CA's key refuses to
 * sign (ERR_ISSUER_CA_INVALID, 503, not ready); each writes a heartbeat with the keys it holds
 * (`ca-replicas.ts`), and a switch is scheduled only when every live replica holds the next key.
 *
 * @example
 * ```ts
 * const cas = await CaSet.open({ trustDomain, active: { certificate, key }, store, clock, random });
 * await cas.signer.issue({...});  cas.bundleJson();  await cas.prepareNext(next);  await cas.activateNext();
 * ```
 */
import { type KeyObject, X509Certificate } from 'node:crypto';
import { type Clock, sleep, type Timer } from '../core/clock.ts';
import { type Logger, nullLogger } from '../core/logger.ts';
import type { Random } from '../core/random.ts';
import { IssuerError } from '../errors.ts';
import { encodeBundle } from '../svid/bundle.ts';
import { type CaKey, softwareCaKey } from '../svid/ca-key.ts';
import { type AsyncSvidSigner, createCaSigner } from '../svid/signer.ts';
import { storeCaForExpired } from './ca-expired.ts';
import { CA_POLL_MS, CaRecord } from './ca-record.ts';
import { dropBeat, listBeats, liveBeats, pruneBeats, REPLICA_LIVE_POLLS, writeBeat } from './ca-replicas.ts';
import {
  type CaStatus,
  caStatus,
  checkReplicasHold,
  iso,
  planSwitch,
  type SwitchRequest,
  scheduledRecord,
} from './ca-rotation.ts';
import { type BundleMeta, effectiveAt, fingerprint as fp, openedRecord } from './ca-state.ts';
import type { JwtKeySet } from './jwt-keys.ts';
import type { IssuerStore } from './store.ts';

export { CA_CHANNEL, CA_POLL_MS } from './ca-record.ts';

/**
 * A CA certificate and its key behind the signing seam (`CaKey`: a PKCS#11 token key,
 * `runtime/issuer/pkcs11/`), or a file key as a `KeyObject` (signed through `softwareCaKey`).
 */
export type CaKeyPair =
  | { readonly certificate: Uint8Array; readonly key: CaKey }
  | { readonly certificate: Uint8Array; readonly privateKey: KeyObject };

/** The signing seam of a pair: its `CaKey`, or its file key wrapped as one. */
export function caKeyOf(pair: CaKeyPair): CaKey {
  return 'key' in pair ? pair.key : softwareCaKey(pair.privateKey);
}

interface Retired {
  readonly certificate: Buffer;
  readonly x509: X509Certificate;
  /** Everything it signed has expired by then. */
  readonly until: number;
}

/**
 * The least time between publishing a next CA in the bundle and its first signature when no
 * bundle refresh hint is configured: five polls of the agents' default 60 s bundle poll.
 */
export const DEFAULT_SWITCH_DELAY_MS = 5 * 60_000;

export interface CaSetOptions {
  readonly trustDomain: string;
  readonly active: CaKeyPair;
  readonly next?: CaKeyPair;
  /**
   * Where a next CA comes from when a rotation finds none published and none configured (a key
   * generated in a shared PKCS#11 token); without it, `ca.next` must be configured on every replica.
   */
  readonly nextSource?: (active: X509Certificate) => Promise<CaKeyPair>;
  /**
   * The key of a CA certificate this replica sees in the store but was not configured with (a
   * key another replica generated in a shared PKCS#11 token); undefined when it has none.
   */
  readonly keyFor?: (certificate: Uint8Array) => Promise<CaKeyPair | undefined>;
  readonly store: IssuerStore;
  readonly clock: Clock;
  readonly random: Random;
  readonly refreshHintSeconds?: number;
  /** The longest lifetime the issuer gives anything (bounds how long a retired CA stays). */
  readonly maxTtlMs: number;
  readonly logger?: Logger;
  readonly pollMs?: number;
  /** Told once, by the replica that wrote it down, that the scheduled switch to CA `active` happened at `at` (audit). */
  readonly onSwitched?: (o: { active: string; at: number }) => void;
  /** JWT-SVID signing keys published in the bundle (`jwt-keys.ts`); the bundle sequence is the sum of both. */
  readonly jwtKeys?: JwtKeySet;
}

function signerFor(o: CaSetOptions, pair: CaKeyPair): Signing {
  try {
    const key = caKeyOf(pair);
    const signer = createCaSigner({
      certificate: pair.certificate,
      key,
      trustDomain: o.trustDomain,
      random: o.random,
    });
    return { signer, key, x509: new X509Certificate(Buffer.from(pair.certificate)), pair };
  } catch (cause) {
    throw new IssuerError('ERR_ISSUER_CA_INVALID', `CA unusable: ${(cause as Error).message}`, {}, { cause });
  }
}

/** A CA this replica can sign with: its template signer over its `CaKey` (file or PKCS#11). */
export type Signing = { signer: AsyncSvidSigner; key: CaKey; x509: X509Certificate; pair: CaKeyPair };

export class CaSet {
  readonly #o: CaSetOptions;
  readonly #log: Logger;
  /** Every key pair this process holds (configured, or prepared through it), by certificate fingerprint. */
  readonly #pairs = new Map<string, Signing>();
  /** This process among the replicas (its heartbeat's key). */
  readonly #instance: string;
  #active: Signing | undefined;
  /** The active certificate when this replica lacks its key. */
  #activeX509: X509Certificate;
  #maxSigned = 0;
  #next: X509Certificate | undefined;
  #retired: Retired[] = [];
  #sequence = 0;
  /** The encoded bundle, kept while the record applied and the number of live roots stay the same. */
  #bundle: { json: string; roots: number; sequence: number } | undefined;
  readonly #rec: CaRecord;
  #closed = false;
  /** The store record applied last, as read (a scheduled switch not yet applied in it), and its version. */
  #record: BundleMeta | undefined;
  #version: number | undefined;
  /** A scheduled switch still to come: its time, and the timer that applies it. */
  #switchAt: number | undefined;
  #switchTimer: Timer | undefined;
  #committing = false;
  /** Certificates whose key `keyFor` is being asked for. */
  readonly #resolving = new Set<string>();
  #waiters: { sequence: number; resolve: () => void }[] = [];

  private constructor(o: CaSetOptions) {
    this.#o = o;
    this.#log = o.logger ?? nullLogger;
    this.#instance = o.random.bytes(8).toString('hex');
    this.#rec = new CaRecord({
      store: o.store,
      clock: o.clock,
      logger: this.#log,
      ...(o.pollMs === undefined ? {} : { pollMs: o.pollMs }),
      apply: (meta, version) => this.#apply(meta, version),
      onPoll: () => this.#beat(),
      switched: (m) => o.onSwitched?.({ active: fp(m.next as Uint8Array), at: m.activateAt as number }),
    });
    const a = this.#hold(o.active);
    if (o.next !== undefined) this.#hold(o.next);
    this.#active = a;
    this.#activeX509 = a.x509;
  }

  static async open(o: CaSetOptions): Promise<CaSet> {
    const set = new CaSet(o);
    const now = o.clock.now();
    // An expired configured CA: start on the store's newer active CA when this replica holds it.
    if ((set.#active as Signing).signer.notAfter <= now) {
      const pair = await storeCaForExpired({
        store: o.store,
        configured: (set.#active as Signing).x509,
        now,
        held: (print) => set.#pairs.has(print),
        ...(o.keyFor === undefined ? {} : { keyFor: o.keyFor }),
      });
      if (pair !== undefined) set.#hold(pair);
    }
    await set.#rec.change((meta) =>
      openedRecord(meta, {
        active: o.active.certificate,
        ...(o.next === undefined ? {} : { next: o.next.certificate }),
        held: (print) => set.#pairs.has(print),
        now,
      }),
    );
    o.jwtKeys?.onChange(() => set.#wake());
    await set.#rec.start();
    await set.#beat();
    return set;
  }

  /** The CA that signs now (ERR_ISSUER_CA_INVALID when this replica lacks the active CA's key). */
  get signer(): AsyncSvidSigner {
    return this.activeKeyPair().signer;
  }

  /** The active CA's key pair and signer, as held by this replica. */
  activeKeyPair(): Signing {
    this.#catchUp();
    if (this.#active === undefined)
      throw new IssuerError(
        'ERR_ISSUER_CA_INVALID',
        `this replica does not hold the key of the active CA (${this.#activeX509.subject.replace(/\n/g, ', ')}, sha256 ${fp(this.#activeX509.raw)}): configure it as ca or ca.next and restart; other replicas sign`,
      );
    return this.#active;
  }

  /** The active CA's certificate (whether or not this replica holds its key). */
  get activeCertificate(): X509Certificate {
    this.#catchUp();
    return this.#activeX509;
  }

  /** The bundle's `spiffe_sequence`: the CA state's plus the JWT key state's (each only goes up). */
  get sequence(): number {
    this.#catchUp();
    return this.#fullSequence;
  }

  get #fullSequence(): number {
    return this.#sequence + (this.#o.jwtKeys?.sequence ?? 0);
  }

  /** Every root a verifier must accept now: active, next, and retired ones still covering issued certificates. */
  roots(): X509Certificate[] {
    this.#catchUp();
    const now = this.#o.clock.now();
    return [
      this.#activeX509,
      ...(this.#next ? [this.#next] : []),
      ...this.#retired.filter((r) => r.until > now).map((r) => r.x509),
    ];
  }

  /** Remember the latest NotAfter the active CA signed (how long it must stay in the bundle). */
  noteSigned(notAfter: number): void {
    if (notAfter > this.#maxSigned) this.#maxSigned = notAfter;
  }

  /** The bundle JSON, encoded once per root set (every GET /v1/bundle and issuance serves it). */
  bundleJson(): string {
    const roots = this.roots().map((r) => r.raw);
    const jwtKeys = this.#o.jwtKeys?.authorities() ?? [];
    const sequence = this.#fullSequence;
    const count = roots.length + jwtKeys.length;
    // The key set changes through the store (a record applied: the cache is dropped; a JWT key
    // change: a new sequence) or by a retired key lapsing before prune (one key fewer).
    let cached = this.#bundle;
    if (cached === undefined || cached.roots !== count || cached.sequence !== sequence) {
      cached = {
        json: encodeBundle({
          roots,
          jwtKeys,
          sequence,
          ...(this.#o.refreshHintSeconds === undefined
            ? {}
            : { refreshHintSeconds: this.#o.refreshHintSeconds }),
        }),
        roots: count,
        sequence,
      };
      this.#bundle = cached;
    }
    return cached.json;
  }

  /** Publish `next` in the bundle; it signs nothing until a switch is scheduled (`scheduleSwitch`). */
  async prepareNext(next: CaKeyPair): Promise<void> {
    const n = this.#hold(next);
    await this.#beat();
    const now = this.#o.clock.now();
    await this.#rec.change((meta) => {
      const m = meta as BundleMeta;
      if (m.next !== undefined && Buffer.from(m.next).equals(n.x509.raw)) return m;
      const { activateAt: _a, retireUntil: _r, ...rest } = m;
      return { ...rest, next: n.x509.raw, nextPublishedAt: now };
    });
  }

  /** The least time from publishing a next CA to its first signature (the bundle's refresh hint, or 5 min). */
  get switchDelayMs(): number {
    const hint = this.#o.refreshHintSeconds;
    return hint === undefined ? DEFAULT_SWITCH_DELAY_MS : hint * 1000;
  }

  /**
   * Schedule the switch to the next CA: published now if it is not yet (the one prepared, else
   * the configured `ca.next`, else one from `nextSource`), signing on every replica from `at`
   * (default and minimum: its publication + `switchDelayMs`, so verifiers fetch the bundle with it
   * first; `immediate`: now, for a compromised or expiring CA). Refused unless every live replica
   * holds the next key (ERR_ISSUER_CA_KEY_MISSING, naming them). Rescheduling moves the time.
   */
  async scheduleSwitch(request: SwitchRequest): Promise<CaStatus> {
    const now = this.#o.clock.now();
    await this.refresh();
    const record = effectiveAt(this.#record as BundleMeta, now);
    let next = record.next;
    let made = false;
    // The time is checked before a next CA is made for it (a refused request leaves no key behind).
    planSwitch({ record, now, delayMs: this.switchDelayMs, next, request });
    if (next === undefined) {
      const own = this.#o.next;
      if (own !== undefined && !this.#activeX509.raw.equals(Buffer.from(own.certificate)))
        next = own.certificate;
      else if (this.#o.nextSource !== undefined) {
        next = this.#hold(await this.#o.nextSource(this.#activeX509)).x509.raw;
        made = true;
      } else
        throw new IssuerError(
          'ERR_ISSUER_CA_INVALID',
          'no next CA: create one and configure it as ca.next on every replica (then restart them), or prepare one',
        );
    }
    const print = fp(next);
    const der = Buffer.from(next);
    const { at, publishedAt } = planSwitch({ record, now, delayMs: this.switchDelayMs, next, request });
    // In the bundle at once, whether or not the switch can be scheduled yet (the next `ca rotate`
    // finds it there, counted from this publication, and makes no other).
    if (record.next === undefined)
      await this.#rec.change((meta) =>
        (meta as BundleMeta).next === undefined
          ? { ...(meta as BundleMeta), next: der, nextPublishedAt: now }
          : (meta as BundleMeta),
      );
    await this.#beat();
    if (made) await this.#awaitHolders(now, print);
    await checkReplicasHold(this.#o.store, now, this.#liveWindow(), print);
    // What any replica signed with the old CA expires within the longest TTL from the switch.
    const signedUntil = Math.max(this.#maxSigned, at + this.#o.maxTtlMs);
    await this.#rec.change((meta) =>
      scheduledRecord(meta as BundleMeta, { next: der, publishedAt, at, signedUntil }),
    );
    this.#log.info('CA switch scheduled', { next: print, activateAt: iso(at) });
    return this.status();
  }

  /** Switch to the prepared CA now (a compromised or expiring CA; `scheduleSwitch` otherwise). */
  async activateNext(): Promise<void> {
    await this.scheduleSwitch({ immediate: true });
  }

  /** The shared CA state as the store has it now (re-read), with the replicas' heartbeats. */
  async status(): Promise<CaStatus> {
    await this.refresh();
    const active = this.activeCertificate;
    return caStatus({
      store: this.#o.store,
      record: this.#record as BundleMeta,
      now: this.#o.clock.now(),
      windowMs: this.#liveWindow(),
      self: this.#instance,
      sequence: this.#sequence,
      active,
      next: this.#next,
      retired: this.#retired,
    });
  }

  /** Drop retired CAs whose certificates have all expired, and gone replicas' heartbeats; true when the bundle changed. */
  async prune(): Promise<boolean> {
    const now = this.#o.clock.now();
    await pruneBeats(this.#o.store, now);
    if (!this.#retired.some((r) => r.until <= now)) return false;
    await this.#rec.change((meta) => {
      const m = meta as BundleMeta;
      return { ...m, retired: m.retired.filter((r) => r.until > now) };
    });
    return true;
  }

  /** Re-read the CA state from the store (what the notification, a resync and the poll do). */
  refresh(): Promise<void> {
    return this.#rec.refresh();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#switchTimer?.cancel();
    await this.#rec.close();
    await dropBeat(this.#o.store, this.#instance).catch(() => {});
  }

  #hold(pair: CaKeyPair): Signing {
    const key = fp(pair.certificate);
    const have = this.#pairs.get(key);
    if (have !== undefined) return have;
    const s = signerFor(this.#o, pair);
    this.#pairs.set(key, s);
    return s;
  }

  /**
   * A next CA just made in a shared token: the other replicas find its key there (`keyFor`) once
   * they read the record (notified at once; at the latest their next poll). Their heartbeats are
   * re-read every 250 ms until all hold it, for at most one poll (and 10 s: the admin client's wait).
   */
  async #awaitHolders(now: number, print: string): Promise<void> {
    const until = this.#o.clock.now() + Math.min(this.#o.pollMs ?? CA_POLL_MS, 10_000);
    while (this.#o.clock.now() < until) {
      const beats = liveBeats(await listBeats(this.#o.store), now, this.#liveWindow());
      if (beats.every((b) => b.holds.includes(print))) return;
      await sleep(this.#o.clock, 250);
    }
  }

  #liveWindow(): number {
    return REPLICA_LIVE_POLLS * (this.#o.pollMs ?? CA_POLL_MS);
  }

  /** This replica's heartbeat: the keys it holds. */
  #beat(): Promise<void> {
    return writeBeat(this.#o.store, this.#instance, {
      at: this.#o.clock.now(),
      holds: [...this.#pairs.keys()],
    });
  }

  /** A scheduled switch whose time has come is applied now (before a signature, a bundle, a status). */
  #catchUp(): void {
    if (this.#switchAt !== undefined && this.#o.clock.now() >= this.#switchAt && this.#record !== undefined)
      this.#apply(this.#record, this.#version);
  }

  /** This replica's view from the store's record, at this instant. */
  #apply(meta: BundleMeta, version: number | undefined): void {
    this.#version = version;
    this.#record = meta;
    const now = this.#o.clock.now();
    const m = effectiveAt(meta, now);
    if (m.active !== undefined) {
      const der = Buffer.from(m.active);
      const held = this.#pairs.get(fp(der));
      const switched = !this.#activeX509.raw.equals(der);
      if (held !== this.#active) this.#maxSigned = 0;
      this.#active = held;
      this.#activeX509 = held?.x509 ?? new X509Certificate(der);
      if (switched)
        this.#log[held === undefined ? 'error' : 'info'](
          held === undefined ? 'CA switched to one whose key this replica lacks: not signing' : 'CA switched',
          { active: fp(der), ...(m !== meta ? { activateAt: iso(meta.activateAt as number) } : {}) },
        );
    }
    this.#next = m.next === undefined ? undefined : new X509Certificate(Buffer.from(m.next));
    for (const der of [m.active, m.next]) if (der !== undefined) this.#resolve(Buffer.from(der));
    const live = [this.#activeX509.raw, ...(this.#next ? [this.#next.raw] : [])];
    this.#retired = m.retired
      .filter((r) => r.until > now && !live.some((x) => x.equals(Buffer.from(r.certificate))))
      .map((r) => {
        const der = Buffer.from(r.certificate);
        return { certificate: der, x509: new X509Certificate(der), until: r.until };
      });
    this.#sequence = m.sequence;
    this.#bundle = undefined;
    this.#armSwitch(m === meta ? meta.activateAt : undefined);
    if (m !== meta) this.#commitSwitch();
    this.#wake();
  }

  #wake(): void {
    const ready = this.#waiters.filter((w) => w.sequence <= this.#fullSequence);
    this.#waiters = this.#waiters.filter((w) => w.sequence > this.#fullSequence);
    for (const w of ready) w.resolve();
  }

  /** Ask `keyFor` for the key of `der` when this replica lacks it; held (and reported) when found. */
  #resolve(der: Buffer): void {
    const print = fp(der);
    if (this.#o.keyFor === undefined || this.#pairs.has(print) || this.#resolving.has(print) || this.#closed)
      return;
    this.#resolving.add(print);
    this.#o
      .keyFor(der)
      .then(async (pair) => {
        if (pair === undefined || !Buffer.from(pair.certificate).equals(der)) return;
        this.#hold(pair);
        if (this.#record !== undefined) this.#apply(this.#record, this.#version);
        await this.#beat();
      })
      .catch((e: unknown) => this.#log.warn('CA key lookup failed', { ca: print, error: String(e) }))
      .finally(() => this.#resolving.delete(print));
  }

  /** A timer at the scheduled switch (this replica's clock), or none. */
  #armSwitch(at: number | undefined): void {
    if (at === this.#switchAt) return;
    this.#switchTimer?.cancel();
    this.#switchTimer = undefined;
    this.#switchAt = at;
    if (at === undefined || this.#closed) return;
    if (this.#next !== undefined && !this.#pairs.has(fp(this.#next.raw)))
      this.#log.warn('a CA switch is scheduled to a CA whose key this replica lacks', {
        next: fp(this.#next.raw),
        activateAt: iso(at),
      });
    this.#switchTimer = this.#o.clock.setTimer('issuer-ca-switch', at - this.#o.clock.now(), () =>
      this.#catchUp(),
    );
  }

  /** Write the switch down (the first replica past its time does; for the others nothing changes). */
  #commitSwitch(): void {
    if (this.#committing || this.#closed) return;
    this.#committing = true;
    this.#rec
      .change((meta) => meta as BundleMeta)
      .catch((e: unknown) => this.#log.warn('CA switch not written down yet', { error: String(e) }))
      .finally(() => {
        this.#committing = false;
      });
  }

  /** Resolves once this replica has applied bundle sequence `sequence` (a change on any replica). */
  whenSequence(sequence: number): Promise<void> {
    if (sequence <= this.#fullSequence) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ sequence, resolve }));
  }
}
