/**
 * What the issuer's handler modules (`recover.ts`, `devices-issued.ts`, `peer.ts`, budget
 * actions) use of the issuer: its store, clock, randomness, audit log and policies, and the
 * shared steps every issuance goes through (gateway usable, single-use session, per-gateway
 * rate limit, the atomic issuance batch). `Issuer` builds one and keeps everything else private,
 * so a handler is a function of (core, request) and `issuer.ts` only routes to it.
 */
import type { KeyObject, X509Certificate } from 'node:crypto';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/logger.ts';
import type { Random } from '../core/random.ts';
import { IssuerError } from '../errors.ts';
import type { IssuedIdentity } from '../upstream/protocol.ts';
import type { AuditLog } from './audit.ts';
import type { CaSet } from './ca.ts';
import type { RateLimiter } from './rate-limit.ts';
import type { AuditEvent, GatewayRecord, ManifestRecord, SessionRecord } from './records.ts';
import type { Revocations } from './revocations.ts';
import type { ServerNamePolicy } from './server-names.ts';
import type { IssuerStore, StoreEntry, StoreOp } from './store.ts';
import type { TpmPolicy } from './tpm-method.ts';

/** Who is asking: the client address, and the TLS client certificate (DER) when one was presented. */
export interface RequestContext {
  readonly address: string;
  readonly peerCertificate?: Uint8Array;
  /** The same certificate as TLS parsed it (`getPeerX509Certificate`), so it is not parsed again. */
  readonly peerX509?: X509Certificate;
}

export type AuditInfo = Partial<AuditEvent>;

/** The attestation methods this issuer accepts (absent: refused with ERR_ISSUER_METHOD_DISABLED). */
export interface IssuerMethods {
  readonly joinToken?: { readonly enabled: boolean };
  readonly x509pop?: {
    readonly roots: readonly X509Certificate[];
    readonly nameFrom: 'cn' | 'serial';
    readonly autoRegister: boolean;
  };
  readonly tpm?: TpmPolicy;
}

export interface IssuerCore {
  readonly trustDomain: string;
  readonly store: IssuerStore;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  readonly audit: AuditLog;
  readonly sessionTtlMs: number;
  readonly svidTtlMs: number;
  /** The configured offline budget (the delegated CA's lifetime unless overridden per gateway). */
  readonly offlineBudgetMs: number;
  readonly methods: IssuerMethods;
  readonly serverNames: ServerNamePolicy;
  readonly firmwareKeys: readonly KeyObject[];
  /** The CA set: the signer, the bundle, rotation (`ca.ts`). */
  readonly cas: CaSet;
  /** The revocation index and feed (`revocations.ts`). */
  readonly revocations: Revocations;
  /** Every root a certificate we issued may chain to now (active, next, retired). */
  roots(): X509Certificate[];
  manifests(): readonly ManifestRecord[];
  /** Replace the in-memory manifest list after a committed change. */
  setManifests(list: readonly ManifestRecord[]): void;
  isRevokedId(spiffeId: string): boolean;
  isRevokedSerial(serialHex: string): boolean;
  /** The gateway's record; refused when disabled or revoked. */
  checkGatewayUsable(name: string): Promise<GatewayRecord | undefined>;
  /**
   * Session `id` for `fn`, with the ops that consume it (to go into `fn`'s issuance batch); refused
   * when unknown, of another kind, or expired; deleted on its own when `fn` refuses (`sessions.ts`).
   */
  withSession<T>(
    id: string,
    kind: SessionRecord['kind'],
    fn: (s: SessionRecord, consume: StoreOp[]) => Promise<T>,
    preread?: { readonly entry: StoreEntry<unknown> | undefined },
  ): Promise<T>;
  /** A renewal session for `gw` (the next renewal's nonce), valid until `expiresAt`; not stored. */
  newRenewSession(gw: GatewayRecord, expiresAt: number): SessionRecord;
  /**
   * Count a request for gateway `name` against its rate limit (ERR_ISSUER_RATE_LIMITED); requests
   * with the gateway's SVID are counted by the issuer's guard already (`peer.ts` peerGateway).
   */
  limitGateway(name: string): Promise<void>;
  /** The rate limiter (pruned with the rest). */
  readonly limits: RateLimiter;
  checkName(name: string): void;
  /** Sign the gateway SVID (and the delegated CA when `caSpki` is given) and commit it all at once. */
  issue(
    gw: GatewayRecord,
    spki: Buffer,
    caSpki: Buffer | undefined,
    serverNames: readonly string[],
    event: 'issue' | 'renew' | 'recover',
    extraOps: StoreOp[],
    ctx: RequestContext,
    info: AuditInfo,
    /** The gateway record as the caller read it: the first attempt's precondition, not read again. */
    known?: StoreEntry<GatewayRecord>,
    /** An op to put into the issuance batch that remembers the response (finish-done.ts). */
    remember?: (issued: IssuedIdentity) => StoreOp,
  ): Promise<IssuedIdentity>;
}

export function methodDisabled(method: string): IssuerError {
  return new IssuerError(
    'ERR_ISSUER_METHOD_DISABLED',
    `attestation method ${method} is not enabled on this issuer`,
  );
}
