/**
 * The CA state all replicas share (`meta/bundle`) and its transitions, as pure functions of the
 * record and the time. A rotation is two steps in one record: `next` is published in the bundle
 * (`nextPublishedAt`), then scheduled to sign from `activateAt`; from that instant every replica,
 * reading the same record with its own clock, signs with `next` and keeps the old `active` in the
 * bundle as retired until `retireUntil` (everything it signed has expired by then). The switch
 * needs no write to happen: `effectiveAt` is what each replica applies, and the first replica past
 * the time writes the switched record down (a no-op for the others). The bundle's sequence moves
 * when a root comes (a next CA published) or goes (a retired one lapsed), and at the switch (the
 * roots stay, their order changes: the first is the signing one), where it is the record's + 1 on
 * every replica, written down or not.
 *
 * @example
 * ```ts
 * const now = clock.now();
 * const m = effectiveAt(record, now);       // who signs now
 * const changed = rootPrints(m, now).join() !== rootPrints(before, now).join();
 * ```
 */
import { createHash } from 'node:crypto';
import { IssuerError } from '../errors.ts';

/** `meta/bundle`: the CA state all replicas share. */
export interface BundleMeta {
  sequence: number;
  /** Fingerprints of the bundle's roots when written (sorted; older records: in role order). */
  fingerprints: string[];
  retired: { certificate: Uint8Array; until: number }[];
  /** The active CA's certificate (absent in a store written before replicas: the config's then). */
  active?: Uint8Array;
  next?: Uint8Array;
  /** When `next` was first published in the bundle (absent in records written before scheduling). */
  nextPublishedAt?: number;
  /** When `next` signs instead of `active`, on every replica by its own clock; absent: not scheduled. */
  activateAt?: number;
  /** Until when `active`, retired at `activateAt`, stays in the bundle. */
  retireUntil?: number;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
const isTime = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v) && v >= 0;
const isDer = (v: unknown): boolean => v instanceof Uint8Array && v.length > 0;
const optional = (v: unknown, ok: (x: unknown) => boolean): boolean => v === undefined || ok(v);

/**
 * `meta/bundle` as read from the store, checked as live input is: a record that is not the
 * state's shape (a damaged or hand-edited row) is ERR_ISSUER_CA_INVALID, never a crash in a
 * replica's view or a bundle built from a wrong answer. (The certificates are parsed where they
 * are used.)
 */
export function checkedBundle(v: unknown): BundleMeta {
  const ok =
    isObject(v) &&
    Number.isSafeInteger(v.sequence) &&
    (v.sequence as number) >= 0 &&
    Array.isArray(v.fingerprints) &&
    v.fingerprints.every((x: unknown) => typeof x === 'string') &&
    Array.isArray(v.retired) &&
    v.retired.every((r: unknown) => isObject(r) && isDer(r.certificate) && isTime(r.until)) &&
    optional(v.active, isDer) &&
    optional(v.next, isDer) &&
    optional(v.nextPublishedAt, isTime) &&
    optional(v.activateAt, isTime) &&
    optional(v.retireUntil, isTime);
  if (!ok)
    throw new IssuerError(
      'ERR_ISSUER_CA_INVALID',
      "the store's CA state (meta/bundle) is malformed: it is not used, nor written over",
    );
  return v as unknown as BundleMeta;
}

export const fingerprint = (der: Uint8Array): string => createHash('sha256').update(der).digest('hex');

/** The record as it stands at `now`: a switch whose time has come is applied. */
export function effectiveAt(meta: BundleMeta, now: number): BundleMeta {
  if (meta.next === undefined || meta.activateAt === undefined || now < meta.activateAt) return meta;
  const { next, activateAt, retireUntil, nextPublishedAt: _published, ...rest } = meta;
  return {
    ...rest,
    sequence: meta.sequence + 1,
    active: next,
    retired:
      meta.active === undefined
        ? meta.retired
        : [...meta.retired, { certificate: meta.active, until: retireUntil ?? activateAt }],
  };
}

/** The live roots of `meta` at `now` (a switch applied): active, next, retired not yet lapsed, no repeats. */
export function liveRoots(meta: BundleMeta, now: number): Uint8Array[] {
  const m = effectiveAt(meta, now);
  const live = [m.active, m.next].filter((x): x is Uint8Array => x !== undefined);
  const prints = live.map(fingerprint);
  for (const r of m.retired) {
    const p = fingerprint(r.certificate);
    if (r.until > now && !prints.includes(p)) {
      live.push(r.certificate);
      prints.push(p);
    }
  }
  return live;
}

/** The bundle's root set at `now`, as sorted fingerprints (what decides a new sequence). */
export function rootPrints(meta: BundleMeta, now: number): string[] {
  return liveRoots(meta, now).map(fingerprint).sort();
}

/** `prints` (sorted, or in any order in older records) names the same set as `other`. */
export const sameSet = (prints: readonly string[], other: readonly string[]): boolean =>
  [...prints].sort().join() === [...other].sort().join();

const bytesEqual = (a: Uint8Array | undefined, b: Uint8Array | undefined): boolean =>
  a === undefined || b === undefined ? a === b : Buffer.from(a).equals(Buffer.from(b));

/** Two records say the same (a write of `b` over `a` would change nothing). */
export function unchanged(a: BundleMeta, b: BundleMeta): boolean {
  return (
    a.sequence === b.sequence &&
    bytesEqual(a.active, b.active) &&
    bytesEqual(a.next, b.next) &&
    a.nextPublishedAt === b.nextPublishedAt &&
    a.activateAt === b.activateAt &&
    a.retireUntil === b.retireUntil &&
    a.retired.length === b.retired.length &&
    a.retired.every(
      (r, i) => r.until === b.retired[i]?.until && bytesEqual(r.certificate, b.retired[i]?.certificate),
    )
  );
}

/**
 * The record after a replica starts with CA `active` (and `next`) configured: the store's state
 * wins when it knows that CA (active, next or retired; this replica may lack the active key, it
 * will not sign then), with a configured next CA it has none of published; a CA the store does not
 * know at all (a first start, or a CA replaced by editing the configuration) becomes the active one.
 */
export function openedRecord(
  meta: BundleMeta | undefined,
  o: { active: Uint8Array; next?: Uint8Array; held: (print: string) => boolean; now: number },
): BundleMeta {
  const configured = fingerprint(o.active);
  const known = (der: Uint8Array | undefined) => der !== undefined && fingerprint(der) === configured;
  if (
    meta?.active !== undefined &&
    (o.held(fingerprint(meta.active)) || known(meta.next) || meta.retired.some((r) => known(r.certificate)))
  ) {
    if (meta.next === undefined && o.next !== undefined && fingerprint(o.next) !== fingerprint(meta.active))
      return { ...meta, next: Buffer.from(o.next), nextPublishedAt: o.now };
    return meta;
  }
  return {
    sequence: meta?.sequence ?? 0,
    fingerprints: meta?.fingerprints ?? [],
    retired: meta?.retired ?? [],
    active: Buffer.from(o.active),
    ...(o.next === undefined ? {} : { next: Buffer.from(o.next), nextPublishedAt: o.now }),
  };
}
