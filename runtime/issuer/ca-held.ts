/**
 * The CA key pairs one replica holds (`ca.ts`), by certificate fingerprint: the configured ones,
 * those prepared through it, and those `keyFor` finds (a key another replica generated in a
 * shared PKCS#11 token). Its heartbeat in the store says which (`ca-replicas.ts`), and a rotation
 * that made a next key in a shared token waits here until every live replica reports holding it.
 *
 * @example
 * ```ts
 * const held = new HeldKeys({ trustDomain, random, store, clock, logger, instance, keyFor, closed });
 * const s = held.hold(pair);  held.resolve(der, () => reapply());  await held.beat();
 * ```
 */
import { type KeyObject, X509Certificate } from 'node:crypto';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/logger.ts';
import type { Random } from '../core/random.ts';
import { IssuerError } from '../errors.ts';
import { type CaKey, softwareCaKey } from '../svid/ca-key.ts';
import { type AsyncSvidSigner, createCaSigner } from '../svid/signer.ts';
import { CA_POLL_MS } from './ca-record.ts';
import { BEAT_CHANNEL, listBeats, liveBeats, REPLICA_LIVE_POLLS, writeBeat } from './ca-replicas.ts';
import { fingerprint as fp } from './ca-state.ts';
import type { IssuerStore } from './store.ts';

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

/** A CA this replica can sign with: its template signer over its `CaKey` (file or PKCS#11). */
export type Signing = { signer: AsyncSvidSigner; key: CaKey; x509: X509Certificate; pair: CaKeyPair };

function signerFor(o: { trustDomain: string; random: Random }, pair: CaKeyPair): Signing {
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

export interface HeldKeysOptions {
  readonly trustDomain: string;
  readonly random: Random;
  readonly store: IssuerStore;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly pollMs?: number;
  /** This process among the replicas (its heartbeat's key). */
  readonly instance: string;
  /** The key of a CA certificate this replica was not configured with (`CaSetOptions.keyFor`). */
  readonly keyFor?: (certificate: Uint8Array) => Promise<CaKeyPair | undefined>;
  /** The CA set is closed: look nothing up any more. */
  readonly closed: () => boolean;
}

export class HeldKeys {
  readonly #o: HeldKeysOptions;
  /** Every key pair this process holds (configured, or prepared through it), by certificate fingerprint. */
  readonly #pairs = new Map<string, Signing>();
  /** Certificates whose key `keyFor` is being asked for. */
  readonly #resolving = new Set<string>();

  constructor(o: HeldKeysOptions) {
    this.#o = o;
  }

  has(print: string): boolean {
    return this.#pairs.has(print);
  }

  get(print: string): Signing | undefined {
    return this.#pairs.get(print);
  }

  hold(pair: CaKeyPair): Signing {
    const key = fp(pair.certificate);
    const have = this.#pairs.get(key);
    if (have !== undefined) return have;
    const s = signerFor(this.#o, pair);
    this.#pairs.set(key, s);
    return s;
  }

  /**
   * Stop holding the keys of CAs `retired` (they sign no more) and close them: a PKCS#11 key's
   * sessions and handles are released in this process (its objects stay in the token). A
   * signature under way finishes first (`CaKey.close`). Such a CA coming back as active or next
   * is looked up again (`resolve`).
   */
  release(retired: readonly Uint8Array[]): void {
    for (const der of retired) {
      const print = fp(der);
      const s = this.#pairs.get(print);
      if (s === undefined) continue;
      this.#pairs.delete(print);
      s.key
        .close()
        .catch((e: unknown) =>
          this.#o.logger.warn('retired CA key close failed', { ca: print, error: String(e) }),
        );
    }
  }

  /** Ask `keyFor` for the key of `der` when this replica lacks it; held (and reported) when found. */
  resolve(der: Buffer, found: () => void): void {
    const print = fp(der);
    if (
      this.#o.keyFor === undefined ||
      this.#pairs.has(print) ||
      this.#resolving.has(print) ||
      this.#o.closed()
    )
      return;
    this.#resolving.add(print);
    this.#o
      .keyFor(der)
      .then(async (pair) => {
        if (pair === undefined || !Buffer.from(pair.certificate).equals(der)) return;
        this.hold(pair);
        found();
        await this.beat();
      })
      .catch((e: unknown) => this.#o.logger.warn('CA key lookup failed', { ca: print, error: String(e) }))
      .finally(() => this.#resolving.delete(print));
  }

  /**
   * A next CA just made in a shared token: the other replicas find its key there (`keyFor`) once
   * they read the record (notified at once; at the latest their next poll) and write a heartbeat
   * saying so, which notifies `BEAT_CHANNEL`. The heartbeats are re-read at each notification
   * until every live one holds it, for at most one poll (and 10 s: the admin client's wait).
   */
  async awaitHolders(now: number, print: string): Promise<void> {
    let wake = () => {};
    let changed = false;
    let over = false;
    const sub = await this.#o.store.subscribe(BEAT_CHANNEL, () => {
      changed = true;
      wake();
    });
    const timer = this.#o.clock.setTimer(
      'issuer-ca-holders',
      Math.min(this.#o.pollMs ?? CA_POLL_MS, 10_000),
      () => {
        over = true;
        wake();
      },
    );
    try {
      while (!over) {
        changed = false;
        const beats = liveBeats(await listBeats(this.#o.store), now, this.liveWindow());
        if (beats.every((b) => b.holds.includes(print))) return;
        // A heartbeat written while they were read is read again at once.
        if (!changed && !over)
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
      }
    } finally {
      timer.cancel();
      await sub.close();
    }
  }

  liveWindow(): number {
    return REPLICA_LIVE_POLLS * (this.#o.pollMs ?? CA_POLL_MS);
  }

  /** This replica's heartbeat: the keys it holds. */
  beat(): Promise<void> {
    return writeBeat(this.#o.store, this.#o.instance, {
      at: this.#o.clock.now(),
      holds: [...this.#pairs.keys()],
    });
  }
}
