/**
 * What the issuer's handler modules (`recover.ts`, `devices-issued.ts`, `peer.ts`, budget
 * actions) use of the issuer: its store, clock, randomness, audit log and policies, and the
 * shared steps every issuance goes through (gateway usable, single-use session, per-gateway
 * rate limit, the atomic issuance batch). `Issuer` builds one and keeps everything else private,
 * so a handler is a function of (core, request) and `issuer.ts` only routes to it.
 */
import type { X509Certificate } from 'node:crypto';
import type { Clock } from '../core/clock.ts';
import type { Random } from '../core/random.ts';
import type { IssuedIdentity } from '../upstream/protocol.ts';
import type { AuditLog } from './audit.ts';
import type { AuditEvent, GatewayRecord, ManifestRecord, SessionRecord } from './records.ts';
import type { ServerNamePolicy } from './server-names.ts';
import type { IssuerStore, StoreOp } from './store.ts';
import type { TpmPolicy } from './tpm-method.ts';

/** Who is asking: the client address, and the TLS client certificate (DER) when one was presented. */
export interface RequestContext {
  readonly address: string;
  readonly peerCertificate?: Uint8Array;
}

export type AuditInfo = Partial<AuditEvent>;

export interface IssuerCore {
  readonly trustDomain: string;
  readonly store: IssuerStore;
  readonly clock: Clock;
  readonly random: Random;
  readonly audit: AuditLog;
  readonly sessionTtlMs: number;
  readonly svidTtlMs: number;
  readonly tpm: TpmPolicy | undefined;
  readonly serverNames: ServerNamePolicy;
  /** Every root a certificate we issued may chain to now (active, next, retired). */
  roots(): X509Certificate[];
  manifests(): readonly ManifestRecord[];
  isRevokedId(spiffeId: string): boolean;
  isRevokedSerial(serialHex: string): boolean;
  /** The gateway's record; refused when disabled or revoked. */
  checkGatewayUsable(name: string): Promise<GatewayRecord | undefined>;
  /** The session, deleted (single use); refused when unknown, of another kind, or expired. */
  consumeSession(id: string, kind: SessionRecord['kind']): Promise<SessionRecord>;
  limitGateway(name: string): void;
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
  ): Promise<IssuedIdentity>;
}
