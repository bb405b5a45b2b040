/**
 * The rules of a scheduled CA switch, apart from the state machine that applies it (`ca.ts`):
 * when it may happen (`planSwitch`: not before the next CA has been in the bundle for the
 * propagation delay, unless the operator switches at once), who must be able to follow it
 * (`checkReplicasHold`: every live replica holds the next key, by its heartbeat), and what an
 * operator sees (`caStatus`, printed by `edgeward issuer ca show`).
 *
 * @example
 * ```ts
 * const { at } = planSwitch({ record, now, delayMs: 300_000, next, request: {} });
 * await checkReplicasHold(store, now, windowMs, fingerprint(next));
 * ```
 */
import { X509Certificate } from 'node:crypto';
import { IssuerError } from '../errors.ts';
import type { CaKey } from '../svid/ca-key.ts';
import { listBeats, liveBeats } from './ca-replicas.ts';
import { type BundleMeta, effectiveAt, fingerprint } from './ca-state.ts';
import type { IssuerStore } from './store.ts';

export interface SwitchRequest {
  /** When the next CA signs (ms); default: the earliest safe time. */
  readonly at?: number;
  /** Or that long from now. */
  readonly afterMs?: number;
  /** Now, without waiting for verifiers to fetch the bundle (a compromised or expiring CA). */
  readonly immediate?: boolean;
}

export interface CaView {
  readonly fingerprint: string;
  readonly subject: string;
  readonly notAfter: string;
}

/** What `ca show` prints: the shared state as this replica sees it now. */
export interface CaStatus {
  readonly sequence: number;
  readonly active: CaView;
  readonly next?: CaView & { publishedAt?: string; activateAt?: string };
  readonly retired: (CaView & { until: string })[];
  /** Replicas heard from lately, and whether each holds the active and the next key. */
  readonly replicas: {
    id: string;
    seenAt: string;
    holdsActive: boolean;
    holdsNext?: boolean;
    self: boolean;
  }[];
}

export const iso = (ms: number): string => new Date(ms).toISOString();

export const caView = (x: X509Certificate): CaView => ({
  fingerprint: fingerprint(x.raw),
  subject: x.subject.replace(/\n/g, ', '),
  notAfter: iso(Date.parse(x.validTo)),
});

/**
 * When the switch to `next` happens: `request.at` (or `afterMs` from now), or the earliest safe time (its publication in
 * the bundle + `delayMs`; publication is now when it is not in the record yet); `immediate`: now.
 * ERR_ISSUER_BAD_REQUEST for a time before the earliest or past the next CA's NotAfter.
 */
export function planSwitch(o: {
  record: BundleMeta;
  now: number;
  delayMs: number;
  /** The next CA (its NotAfter is checked); undefined: only the time is planned (none made yet). */
  next: Uint8Array | undefined;
  request: SwitchRequest;
}): { at: number; publishedAt: number } {
  const { record, now, request } = o;
  const publishedAt = record.next === undefined ? now : (record.nextPublishedAt ?? now);
  const earliest = publishedAt + o.delayMs;
  const at =
    request.immediate === true
      ? now
      : (request.at ?? (request.afterMs === undefined ? Math.max(earliest, now) : now + request.afterMs));
  if (request.immediate !== true && at < earliest)
    throw new IssuerError(
      'ERR_ISSUER_BAD_REQUEST',
      `too early: verifiers may not have the bundle with the next CA before ${iso(earliest)} (published ${iso(publishedAt)} + ${o.delayMs / 1000} s); choose a later time, or switch at once (--now)`,
    );
  if (o.next === undefined) return { at, publishedAt };
  const x = new X509Certificate(Buffer.from(o.next));
  if (at >= Date.parse(x.validTo))
    throw new IssuerError('ERR_ISSUER_BAD_REQUEST', `the next CA expires (${x.validTo}) before ${iso(at)}`);
  return { at, publishedAt };
}

/**
 * The record with the switch to `next` scheduled at `at`; the active CA, retired then, stays in
 * the bundle until `signedUntil` (at most its own NotAfter). ERR_ISSUER_STORE_CONFLICT when
 * another next CA was published meanwhile.
 */
export function scheduledRecord(
  m: BundleMeta,
  o: { next: Uint8Array; publishedAt: number; at: number; signedUntil: number },
): BundleMeta {
  if (m.next !== undefined && !Buffer.from(m.next).equals(Buffer.from(o.next)))
    throw new IssuerError('ERR_ISSUER_STORE_CONFLICT', 'another next CA was published meanwhile; try again');
  const active = m.active === undefined ? undefined : new X509Certificate(Buffer.from(m.active));
  return {
    ...m,
    next: Buffer.from(o.next),
    nextPublishedAt: m.next === undefined ? o.publishedAt : (m.nextPublishedAt ?? o.publishedAt),
    activateAt: o.at,
    retireUntil: active === undefined ? o.signedUntil : Math.min(o.signedUntil, Date.parse(active.validTo)),
  };
}

/**
 * What to do about replicas lacking the next key: with file keys, configure it (`ca.next`) and
 * restart them; with keys in a shared PKCS#11 token (`inToken`: replicas look keys up there
 * themselves), make the token reachable from them (no ca.next, no restart: they look again at
 * their next CA poll).
 */
export function missingKeyAdvice(o: { inToken: boolean; key?: CaKey | undefined }): string {
  if (!o.inToken) return 'configure ca.next there and restart them (or stop them) first';
  const uri = (o.key as { uri?: unknown } | undefined)?.uri;
  return `the key is in the token${typeof uri === 'string' ? ` (${uri})` : ''}, where they look for it themselves (no ca.next, no restart): make that token reachable through their ca.pkcs11 module and PIN (they look again at their next CA poll, at most once a minute) or stop them, then run ca rotate again`;
}

/** ERR_ISSUER_CA_KEY_MISSING naming every live replica whose heartbeat lacks the key `print`. */
export async function checkReplicasHold(
  store: IssuerStore,
  now: number,
  windowMs: number,
  print: string,
  advice: { inToken: boolean; key?: CaKey | undefined } = { inToken: false },
): Promise<void> {
  const lacking = liveBeats(await listBeats(store), now, windowMs).filter((b) => !b.holds.includes(print));
  if (lacking.length > 0)
    throw new IssuerError(
      'ERR_ISSUER_CA_KEY_MISSING',
      `replicas without the next CA key (sha256 ${print}): ${lacking.map((b) => `${b.id} (seen ${iso(b.at)})`).join(', ')}; ${missingKeyAdvice(advice)}`,
    );
}

/** The operator's view of the CA state (`record` as last read, seen at `now` by replica `self`). */
export async function caStatus(o: {
  store: IssuerStore;
  record: BundleMeta;
  now: number;
  windowMs: number;
  self: string;
  sequence: number;
  active: X509Certificate;
  next: X509Certificate | undefined;
  retired: readonly { x509: X509Certificate; until: number }[];
}): Promise<CaStatus> {
  const pending = effectiveAt(o.record, o.now) === o.record ? o.record : undefined;
  const active = fingerprint(o.active.raw);
  const next = o.next === undefined ? undefined : fingerprint(o.next.raw);
  const beats = liveBeats(await listBeats(o.store), o.now, o.windowMs);
  return {
    sequence: o.sequence,
    active: caView(o.active),
    ...(o.next === undefined
      ? {}
      : {
          next: {
            ...caView(o.next),
            ...(pending?.nextPublishedAt === undefined ? {} : { publishedAt: iso(pending.nextPublishedAt) }),
            ...(pending?.activateAt === undefined ? {} : { activateAt: iso(pending.activateAt) }),
          },
        }),
    retired: o.retired
      .filter((r) => r.until > o.now)
      .map((r) => ({ ...caView(r.x509), until: iso(r.until) })),
    replicas: beats.map((b) => ({
      id: b.id,
      seenAt: iso(b.at),
      holdsActive: b.holds.includes(active),
      ...(next === undefined ? {} : { holdsNext: b.holds.includes(next) }),
      self: b.id === o.self,
    })),
  };
}
