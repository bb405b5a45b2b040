/**
 * The upstream issuer's logic, independent of HTTP: attestation (begin/finish) for tpm,
 * join-token and x509pop; renewal for a gateway that presents its current SVID; recovery by the
 * delegated CA key (`recover.ts`); the offline device-issuance log (`devices-issued.ts`); the
 * bundle; the revocation feed; firmware manifests; and the operator's registrations, join
 * tokens, offline budgets (`operator.ts`, `budget.ts`), disabling and revocations. Every refusal
 * is a typed error and an audit record; every issuance is one atomic batch (certificates'
 * records, gateway state, consumed token, next renewal session, audit event): nothing
 * half-written. This class only builds the `IssuerCore` (`core.ts`, from `issuer-options.ts`
 * by `issuer-parts.ts`) and routes, every request behind `request-guard.ts`: each handler
 * lives in the module named after what it does — `attest.ts` (with `tpm-method.ts`,
 * `join-token-method.ts`, `x509pop-method.ts`), `renew.ts`, `issue.ts` and `device-ca.ts`,
 * `sessions.ts`, `revoke.ts`, `firmware-staging.ts`, `operator.ts`, `prune.ts` — so a store
 * change touches one place.
 *
 * @example
 * ```ts
 * const issuer = await Issuer.create({ trustDomain, store, ca, clock, random, methods: { joinToken: { enabled: true } } });
 * const token = await issuer.createJoinToken('gw-1', 600_000);
 * const begin = await issuer.attestBegin({ method: 'join-token', token }, { address: '10.0.0.5' });
 * ```
 */
import type { X509Certificate } from 'node:crypto';
import type { Timer } from '../core/clock.ts';
import { type Logger, nullLogger } from '../core/logger.ts';
import { IssuerError } from '../errors.ts';
import type { EndStagingResponse, StageResponse } from '../firmware/protocol.ts';
import type {
  AttestBeginResponse,
  DevicesIssuedResponse,
  IssuedIdentity,
  JwtSvidResponse,
  RecoverBeginResponse,
  RenewBeginResponse,
  RevocationFeed,
} from '../upstream/protocol.ts';
import { attestBegin, attestFinish } from './attest.ts';
import { AuditLog } from './audit.ts';
import { DEFAULT_OFFLINE_BUDGET_MS, MAX_OFFLINE_BUDGET_MS } from './budget.ts';
import type { CaKeyPair, CaSet } from './ca.ts';
import type { CaStatus, SwitchRequest } from './ca-rotation.ts';
import type { IssuerCore, RequestContext } from './core.ts';
import { devicesIssued } from './devices-issued.ts';
import { addManifest, endFirmware, stageFirmware } from './firmware-staging.ts';
import * as inspect from './inspect.ts';
import type { IssuerOptions } from './issuer-options.ts';
import { buildCore, HOUR, openCaSet } from './issuer-parts.ts';
import { JwtKeySet } from './jwt-keys.ts';
import { DEFAULT_JWT_SVID_TTL_MS, issueJwtSvid, type JwtSvidIssuing } from './jwt-svid.ts';
import * as operator from './operator.ts';
import { authenticateOperator } from './operator-auth.ts';
import { prune } from './prune.ts';
import { RateLimiter } from './rate-limit.ts';
import { type ReadinessCheck, readiness } from './readiness.ts';
import type { AuditEvent, ManifestRecord } from './records.ts';
import { recoverBegin, recoverFinish } from './recover.ts';
import { renewBegin, renewFinish } from './renew.ts';
import { type GuardState, guard, limit } from './request-guard.ts';
import { type RevocationFeedState, Revocations } from './revocations.ts';
import { revoke } from './revoke.ts';

export type { RequestContext } from './core.ts';
export type { IssuerOptions } from './issuer-options.ts';

export class Issuer {
  readonly #o: IssuerOptions;
  readonly #log: Logger;
  readonly #cas: CaSet;
  readonly #rev: Revocations;
  readonly #limits: RateLimiter;
  readonly #core: IssuerCore;
  readonly #guardState: GuardState;
  #manifests: readonly ManifestRecord[] = [];
  #jwt: JwtSvidIssuing | undefined;
  #pruneTimer: Timer | undefined;
  #closed = false;

  private constructor(o: IssuerOptions, cas: CaSet, rev: Revocations, audit: AuditLog) {
    this.#o = o;
    this.#log = o.logger ?? nullLogger;
    this.#cas = cas;
    this.#rev = rev;
    // One process counts in memory; replicas on a shared store count through it (rate-limit.ts).
    this.#limits = new RateLimiter(
      o.clock,
      o.rateLimit?.windowMs ?? 60_000,
      o.store.kind === 'postgres' ? o.store : undefined,
    );
    const core = buildCore(o, this.#log, audit, cas, rev, this.#limits, {
      get: () => this.#manifests,
      set: (list) => {
        this.#manifests = list;
      },
    });
    this.#core = core;
    this.#guardState = {
      o,
      log: this.#log,
      cas,
      limits: this.#limits,
      core,
      closed: () => this.#closed,
    };
  }

  static async create(o: IssuerOptions): Promise<Issuer> {
    const svidTtl = o.svidTtlMs ?? HOUR;
    const budget = o.offlineBudgetMs ?? DEFAULT_OFFLINE_BUDGET_MS;
    // The config's bounds (runtime/config/issuer-bounds.ts) keep these from a file; this is misuse.
    if (!(svidTtl > 0) || !(budget > 0) || budget > MAX_OFFLINE_BUDGET_MS)
      throw new TypeError('TTLs must be positive and the offline budget at most 30d');
    const j = o.jwtSvid;
    const jwtTtlMs = j?.ttlMs ?? DEFAULT_JWT_SVID_TTL_MS;
    const jwtKeys = await JwtKeySet.open({
      ...(j?.key === undefined ? {} : { active: j.key }),
      ...(j?.next === undefined ? {} : { next: j.next }),
      store: o.store,
      clock: o.clock,
      ttlMs: jwtTtlMs,
      ...(o.logger === undefined ? {} : { logger: o.logger }),
    });
    const audit = new AuditLog(o.store, o.clock, o.logger ?? nullLogger, o.random);
    const cas = await openCaSet(o, jwtKeys, audit, svidTtl);
    let rev: Revocations | undefined;
    try {
      rev = await Revocations.load(o.store, o.clock, { logger: o.logger ?? nullLogger });
      const issuer = new Issuer(o, cas, rev, audit);
      issuer.#jwt = {
        keys: jwtKeys,
        ttlMs: jwtTtlMs,
        limit: (name) =>
          limit(issuer.#limits, `j:${name}`, j?.perGateway ?? 60, `JWT-SVIDs for gateway ${name}`),
      };
      issuer.#manifests = (await o.store.list<ManifestRecord>('manifest/')).map(([, v]) => v);
      issuer.#schedulePrune();
      return issuer;
    } catch (err) {
      // Nothing keeps listening or polling for an issuer that did not start.
      await rev?.close();
      await cas.close();
      await jwtKeys.close();
      for (const k of o.owned ?? []) await k.close();
      throw err;
    }
  }

  get trustDomain(): string {
    return this.#o.trustDomain;
  }

  /** The active CA certificate (DER). */
  get caCertificate(): Buffer {
    return this.#cas.activeCertificate.raw;
  }

  roots(): X509Certificate[] {
    return this.#cas.roots();
  }

  // ---- attestation (attest.ts), renewal (renew.ts) -------------------------------------

  attestBegin(body: unknown, ctx: RequestContext): Promise<AttestBeginResponse> {
    const info: Partial<AuditEvent> = {};
    return this.#guard('attest.begin', ctx, info, () => attestBegin(this.#core, body, info));
  }

  attestFinish(body: unknown, ctx: RequestContext): Promise<IssuedIdentity> {
    const info: Partial<AuditEvent> = {};
    return this.#guard('attest.finish', ctx, info, () => attestFinish(this.#core, body, ctx, info));
  }

  renewBegin(ctx: RequestContext): Promise<RenewBeginResponse> {
    const info: Partial<AuditEvent> = {};
    return this.#guard('renew.begin', ctx, info, () => renewBegin(this.#core, ctx, info));
  }

  renewFinish(body: unknown, ctx: RequestContext): Promise<IssuedIdentity> {
    const info: Partial<AuditEvent> = {};
    return this.#guard('renew.finish', ctx, info, () => renewFinish(this.#core, body, ctx, info));
  }

  /** A JWT-SVID for one of the calling gateway's workloads (`jwt-svid.ts`). */
  jwtSvid(body: unknown, ctx: RequestContext): Promise<JwtSvidResponse> {
    const info: Partial<AuditEvent> = {};
    return this.#guard('jwt-svid', ctx, info, () =>
      issueJwtSvid(this.#core, this.#jwt as JwtSvidIssuing, body, ctx, info),
    );
  }

  /** Make the next JWT-SVID key the signer on every replica (`jwt-keys.ts`). */
  async rotateJwtKey(by?: string): Promise<{ kid: string; retired: string }> {
    const r = await (this.#jwt as JwtSvidIssuing).keys.rotate();
    await this.#core.audit.write({
      event: 'jwt',
      detail: `JWT-SVID key ${r.kid} activated; ${r.retired || 'none'} kept until its tokens expire`,
      ...(by === undefined ? {} : { by }),
    });
    return r;
  }

  // ---- recovery by the delegated CA key (recover.ts), offline issuance log -------------

  recoverBegin(body: unknown, ctx: RequestContext): Promise<RecoverBeginResponse> {
    const info: Partial<AuditEvent> = {};
    return this.#guard('recover.begin', ctx, info, () => recoverBegin(this.#core, body, info));
  }

  recoverFinish(body: unknown, ctx: RequestContext): Promise<IssuedIdentity> {
    const info: Partial<AuditEvent> = {};
    return this.#guard('recover.finish', ctx, info, () => recoverFinish(this.#core, body, ctx, info));
  }

  devicesIssued(body: unknown, ctx: RequestContext): Promise<DevicesIssuedResponse> {
    const info: Partial<AuditEvent> = {};
    return this.#guard('devices.issued', ctx, info, () => devicesIssued(this.#core, body, ctx, info));
  }

  // ---- bundle, revocations, manifests, firmware staging (firmware-staging.ts) ----------

  bundle(): { json: string; sequence: number } {
    return { json: this.#cas.bundleJson(), sequence: this.#cas.sequence };
  }

  revocationFeed(since: number): RevocationFeed {
    return this.#rev.feed(since);
  }

  isRevoked(spiffeId: string, serialHex?: string): boolean {
    return (
      this.#rev.isRevokedId(spiffeId) || (serialHex !== undefined && this.#rev.isRevokedSerial(serialHex))
    );
  }

  addManifest(body: unknown, ctx: RequestContext): Promise<{ version: string }> {
    return this.#guard('manifest', ctx, {}, () => addManifest(this.#core, body, ctx));
  }

  /** post-install, over mTLS with the gateway's SVID: stage `version` for this gateway. */
  stageFirmware(body: unknown, ctx: RequestContext): Promise<StageResponse> {
    const info: Partial<AuditEvent> = {};
    return this.#guard('firmware.stage', ctx, info, () => stageFirmware(this.#core, body, ctx, info));
  }

  /** commit or rollback of the gateway's staged firmware, authorised by the staging ticket. */
  endFirmware(kind: 'commit' | 'retract', body: unknown, ctx: RequestContext): Promise<EndStagingResponse> {
    const info: Partial<AuditEvent> = {};
    return this.#guard(`firmware.${kind}`, ctx, info, () => endFirmware(this.#core, kind, body, ctx, info));
  }

  // ---- operator actions (operator.ts, revoke.ts); `by` names who, for the audit ---------

  /** A one-time join token for gateway `name`; only its SHA-256 is stored. */
  createJoinToken(name: string, ttlMs: number, by?: string): Promise<string> {
    return operator.createJoinToken(this.#core, name, ttlMs, by);
  }

  /** Register an EK (by SHA-256 of its TPMT_PUBLIC, hex) or a factory identity as gateway `name`. */
  register(kind: 'ek' | 'x509', key: string, name: string, by?: string): Promise<void> {
    return operator.register(this.#core, kind, key, name, by);
  }

  setDisabled(name: string, disabled: boolean, by?: string): Promise<void> {
    return operator.setDisabled(this.#core, name, disabled, by);
  }

  /** An operator's offline budget for gateway `name` (undefined: back to the configured one). */
  setOfflineBudget(name: string, ms: number | undefined, by?: string): Promise<void> {
    return operator.setOfflineBudget(this.#core, name, ms, by);
  }

  /**
   * Revoke a SPIFFE ID (a gateway: also disabled; a device under a gateway) or a serial. The
   * entry stays in the feed until everything it affects has expired.
   */
  revoke(
    kind: 'spiffe-id' | 'serial',
    value: string,
    by?: string,
  ): Promise<{ sequence: number; until: number }> {
    return revoke(this.#core, kind, value, by);
  }

  /** Publish a next CA in the bundle now (it signs once `rotateCa` schedules it). */
  prepareCa(next: CaKeyPair, by?: string): Promise<void> {
    return operator.prepareCa(this.#core, next, by);
  }

  /**
   * Switch every replica to the next CA at a time recorded in the store: `request.at`, by default
   * the earliest safe one (the next CA in the bundle for the propagation delay); `immediate`: now.
   */
  rotateCa(by?: string, request: SwitchRequest = { immediate: true }): Promise<CaStatus> {
    return operator.rotateCa(this.#core, request, by);
  }

  /** The CA state: active, next and when it signs, retired, the replicas and the keys they hold. */
  caStatus(): Promise<CaStatus> {
    return this.#cas.status();
  }

  /** An operator certificate (`spiffe://<td>/operator/<name>`) for the key `spki` (DER). */
  createOperatorCertificate(name: string, spki: Uint8Array, ttlMs: number, by?: string) {
    return operator.createOperatorCertificate(this.#core, name, spki, ttlMs, by);
  }

  /** The operator behind an admin mTLS client certificate (its SPIFFE ID), or ERR_ISSUER_ADMIN_FORBIDDEN. */
  authenticateOperator(der: Uint8Array | undefined): string {
    return authenticateOperator(this.#core, der);
  }

  // ---- what an operator looks at (inspect.ts), readiness (readiness.ts) ----------------

  listGateways(after = '', limit = 1000): Promise<inspect.GatewayView[]> {
    return inspect.listGateways(this.#core, after, limit);
  }

  showGateway(name: string): Promise<inspect.GatewayView> {
    return inspect.showGateway(this.#core, name);
  }

  listTokens(limit = 1000) {
    return inspect.listTokens(this.#core, limit);
  }

  listRevocations(limit = 1000) {
    return inspect.listRevocations(this.#core, limit);
  }

  /** Why this issuer is not ready to serve; empty when it is. */
  readiness(): Promise<string[]> {
    const closed: ReadinessCheck = {
      name: 'issuer',
      check: async () => {
        if (this.#closed) throw new IssuerError('ERR_ISSUER_CLOSED', 'issuer is closed');
      },
    };
    return readiness(this.#core, () => {
      const held = this.#cas.activeKeyPair();
      return { certificate: held.pair.certificate, key: held.key };
    }, [closed, ...(this.#o.readinessChecks ?? [])]);
  }

  /** NotAfter of the active CA (ms), for metrics; known also on a replica without its key. */
  get caNotAfter(): number {
    return Date.parse(this.#cas.activeCertificate.validTo);
  }

  /** The latest revocation sequence this issuer knows. */
  get revocationSequence(): number {
    return this.#rev.sequence;
  }

  /** The revocation feed's state, for metrics: what the store holds against what this replica applied. */
  revocationFeedState(): Promise<RevocationFeedState> {
    return this.#rev.state();
  }

  /** When this replica last read the store's revocations successfully (clock ms). */
  get revocationsRefreshedAt(): number | undefined {
    return this.#rev.refreshedAt;
  }

  auditEvents(since = 0, limit = 1000): Promise<AuditEvent[]> {
    return this.#core.audit.list(since, limit);
  }

  /** Record a refusal that happened before the request reached the issuer (HTTP layer). */
  async refuse(code: string, ctx: RequestContext, detail: string): Promise<void> {
    await this.#core.audit.write({ event: 'refuse', code, address: ctx.address, detail });
  }

  /**
   * Drop expired sessions, tokens, revocations, rate-limit rows and retired CAs, unless another
   * replica is doing it (the store's `prune` lock): `false` then.
   */
  prune(): Promise<boolean> {
    return prune(this.#core);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#pruneTimer?.cancel();
    await this.#rev.close();
    await this.#cas.close();
    await this.#jwt?.keys.close();
    for (const o of this.#o.owned ?? []) await o.close();
  }

  /** Resolves once this replica has applied bundle sequence `sequence` (a CA change on any replica). */
  whenBundleSequence(sequence: number): Promise<void> {
    return this.#cas.whenSequence(sequence);
  }

  /** Resolves once this replica knows revocation `sequence` (committed by any replica). */
  whenRevocationSeen(sequence: number): Promise<void> {
    return this.#rev.whenSeen(sequence);
  }

  // ---- internals -----------------------------------------------------------------------

  #guard<T>(op: string, ctx: RequestContext, info: Partial<AuditEvent>, fn: () => Promise<T>): Promise<T> {
    return guard(this.#guardState, op, ctx, info, fn);
  }

  #schedulePrune(): void {
    if (this.#closed) return;
    this.#pruneTimer = this.#o.clock.setTimer('issuer-prune', this.#o.pruneIntervalMs ?? 60_000, () => {
      this.prune()
        .catch((err: unknown) => this.#log.error('issuer prune failed', { error: String(err) }))
        .finally(() => this.#schedulePrune());
    });
  }
}
