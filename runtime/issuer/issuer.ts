/**
 * The upstream issuer's logic, independent of HTTP: attestation (begin/finish) for tpm,
 * join-token and x509pop; renewal for a gateway that presents its current SVID; recovery by the
 * delegated CA key (`recover.ts`); the offline device-issuance log (`devices-issued.ts`); the
 * bundle; the revocation feed; firmware manifests; and the operator's registrations, join
 * tokens, offline budgets (`operator.ts`, `budget.ts`), disabling and revocations. Every refusal
 * is a typed error and an audit record; every issuance is one atomic batch (certificates'
 * records, gateway state, consumed token, next renewal session, audit event): nothing
 * half-written. This class only builds the `IssuerCore` (`core.ts`) and routes: each handler
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
import type { KeyObject, X509Certificate } from 'node:crypto';
import type { Clock, Timer } from '../core/clock.ts';
import { isEdgewardError } from '../core/error.ts';
import { type Logger, nullLogger } from '../core/logger.ts';
import type { Random } from '../core/random.ts';
import { IssuerError } from '../errors.ts';
import type { EndStagingResponse, StageResponse } from '../firmware/protocol.ts';
import type { CaKey } from '../svid/ca-key.ts';
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
import { type CaKeyPair, CaSet } from './ca.ts';
import type { CaStatus, SwitchRequest } from './ca-rotation.ts';
import type { IssuerCore, IssuerMethods, RequestContext } from './core.ts';
import { devicesIssued } from './devices-issued.ts';
import { addManifest, endFirmware, stageFirmware } from './firmware-staging.ts';
import { checkGatewayUsable, checkName } from './gateways.ts';
import * as inspect from './inspect.ts';
import { issueIdentity } from './issue.ts';
import { JwtKeySet, type JwtKeyStatus, jwtReadiness } from './jwt-keys.ts';
import { DEFAULT_JWT_SVID_TTL_MS, issueJwtSvid, type JwtSvidIssuing } from './jwt-svid.ts';
import * as operator from './operator.ts';
import { authenticateOperator } from './operator-auth.ts';
import { peerGateway } from './peer.ts';
import { prune } from './prune.ts';
import { RateLimiter } from './rate-limit.ts';
import { type ReadinessCheck, readiness } from './readiness.ts';
import type { AuditEvent, ManifestRecord } from './records.ts';
import { recoverBegin, recoverFinish } from './recover.ts';
import { renewBegin, renewFinish } from './renew.ts';
import { type RevocationFeedState, Revocations } from './revocations.ts';
import { revoke } from './revoke.ts';
import { DEFAULT_SERVER_NAME_POLICY, type ServerNamePolicy } from './server-names.ts';
import { newRenewSession, withSession } from './sessions.ts';
import type { IssuerStore } from './store.ts';

export interface IssuerOptions {
  readonly trustDomain: string;
  readonly store: IssuerStore;
  readonly ca: CaKeyPair;
  /** A prepared next CA: published in the bundle now, signs from the time `rotateCa()` records. */
  readonly nextCa?: CaKeyPair;
  /** Where `rotateCa()` gets a next CA when none is published or configured (a PKCS#11 token's generator). */
  readonly nextCaSource?: (active: X509Certificate) => Promise<CaKeyPair>;
  /** The key of a CA certificate seen in the store but not configured here (one generated in a shared token). */
  readonly caKeyFor?: (certificate: Uint8Array) => Promise<CaKeyPair | undefined>;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger?: Logger;
  readonly svidTtlMs?: number;
  /** The delegated CA's lifetime (default 7d); an operator may override it per gateway. */
  readonly offlineBudgetMs?: number;
  readonly sessionTtlMs?: number;
  readonly refreshHintSeconds?: number;
  readonly methods: IssuerMethods;
  readonly firmwareKeys?: readonly KeyObject[];
  /** Which broker host names a gateway SVID may carry (default: local names only). */
  readonly serverNames?: ServerNamePolicy;
  readonly rateLimit?: {
    readonly perAddress: number;
    readonly perGateway: number;
    readonly windowMs: number;
  };
  /** Told of every request's outcome (`code` 'ok' or the refusal's), for metrics (`metrics.ts`). */
  readonly observe?: (o: { op: string; method: string; code: string; ms: number }) => void;
  /** How often this replica tries to prune (default 60 s; one replica at a time does it). */
  readonly pruneIntervalMs?: number;
  /** Readiness checks of the composition root besides store, CA key and bundle (`readiness.ts`). */
  readonly readinessChecks?: readonly ReadinessCheck[];
  /** JWT-SVID signing (`jwt-keys.ts`, `jwt-svid.ts`): the key, a prepared next key, the token lifetime, requests per gateway per window (default 60). */
  readonly jwtSvid?: {
    readonly key?: CaKey;
    readonly next?: CaKey;
    readonly ttlMs?: number;
    readonly perGateway?: number;
  };
  /** Closed when the issuer closes: the PKCS#11 CA keys the composition root opened (`from-config.ts`). */
  readonly owned?: readonly { close(): Promise<void> }[];
}

export type { RequestContext } from './core.ts';

const HOUR = 3_600_000;
/** The requests that end in a signature by the active CA. */
const SIGNING_OPS = new Set(['attest.finish', 'renew.finish', 'recover.finish']);

export class Issuer {
  readonly #o: IssuerOptions;
  readonly #log: Logger;
  readonly #cas: CaSet;
  readonly #rev: Revocations;
  readonly #limits: RateLimiter;
  readonly #core: IssuerCore;
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
    const core: IssuerCore = {
      trustDomain: o.trustDomain,
      store: o.store,
      clock: o.clock,
      random: o.random,
      logger: this.#log,
      audit,
      sessionTtlMs: o.sessionTtlMs ?? 5 * 60_000,
      svidTtlMs: o.svidTtlMs ?? HOUR,
      offlineBudgetMs: o.offlineBudgetMs ?? DEFAULT_OFFLINE_BUDGET_MS,
      methods: o.methods,
      tpm: o.methods.tpm,
      serverNames: o.serverNames ?? DEFAULT_SERVER_NAME_POLICY,
      firmwareKeys: o.firmwareKeys ?? [],
      cas,
      revocations: rev,
      roots: () => cas.roots(),
      manifests: () => this.#manifests,
      setManifests: (list) => {
        this.#manifests = list;
      },
      isRevokedId: (id) => rev.isRevokedId(id),
      isRevokedSerial: (serial) => rev.isRevokedSerial(serial),
      checkGatewayUsable: (name) => checkGatewayUsable(core, name),
      withSession: (id, kind, fn, preread) => withSession(core, id, kind, fn, preread),
      newRenewSession: (gw, expiresAt) =>
        newRenewSession(o.random, o.methods.tpm?.pcrSelection, gw, expiresAt),
      limitGateway: (name) => this.#limitGateway(name),
      limits: this.#limits,
      checkName,
      issue: (...a) => issueIdentity(core, ...a),
    };
    this.#core = core;
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
    const cas = await CaSet.open({
      jwtKeys,
      trustDomain: o.trustDomain,
      active: o.ca,
      ...(o.nextCa === undefined ? {} : { next: o.nextCa }),
      ...(o.nextCaSource === undefined ? {} : { nextSource: o.nextCaSource }),
      ...(o.caKeyFor === undefined ? {} : { keyFor: o.caKeyFor }),
      store: o.store,
      clock: o.clock,
      random: o.random,
      maxTtlMs: Math.max(svidTtl, MAX_OFFLINE_BUDGET_MS),
      onSwitched: ({ active, at }) => {
        void audit
          .write({
            event: 'ca',
            detail: `CA ${active} signs from ${new Date(at).toISOString()} (scheduled switch)`,
          })
          .catch((e: unknown) => o.logger?.error('audit write failed', { error: String(e) }));
      },
      ...(o.logger === undefined ? {} : { logger: o.logger }),
      ...(o.refreshHintSeconds === undefined ? {} : { refreshHintSeconds: o.refreshHintSeconds }),
    }).catch(async (err: unknown) => {
      for (const k of o.owned ?? []) await k.close();
      throw err;
    });
    let rev: Revocations | undefined;
    try {
      rev = await Revocations.load(o.store, o.clock, { logger: o.logger ?? nullLogger });
      const issuer = new Issuer(o, cas, rev, audit);
      issuer.#jwt = {
        keys: jwtKeys,
        ttlMs: jwtTtlMs,
        limit: (name) => issuer.#limit(`j:${name}`, j?.perGateway ?? 60, `JWT-SVIDs for gateway ${name}`),
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
    }, [closed, ...jwtReadiness(this.#o.jwtSvid?.key, this.#jwt?.keys), ...(this.#o.readinessChecks ?? [])]);
  }

  /** The JWT-SVID keys as this replica sees them (published, active, whether it signs), for metrics. */
  jwtKeyStatus(): JwtKeyStatus | undefined {
    return this.#jwt?.keys.status();
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

  async #guard<T>(
    op: string,
    ctx: RequestContext,
    info: Partial<AuditEvent>,
    fn: () => Promise<T>,
  ): Promise<T> {
    const start = this.#o.clock.now();
    const observe = (code: string) =>
      this.#o.observe?.({ op, method: info.method ?? '', code, ms: this.#o.clock.now() - start });
    try {
      if (this.#closed) throw new IssuerError('ERR_ISSUER_CLOSED', 'issuer is closed');
      // A replica without the active CA's key (a rotation it was not given the next key for)
      // refuses a signing step before it consumes the session: the client retries it, session
      // and all, on a replica that can sign (503 ERR_ISSUER_CA_INVALID; /readyz says why).
      if (SIGNING_OPS.has(op)) this.#cas.activeKeyPair();
      // A request with a gateway SVID counts against that gateway (once: its handler does not
      // count it again), every other one against its client address.
      const gateway = peerGateway(this.#core, ctx);
      if (gateway !== undefined) await this.#limitGateway(gateway);
      else {
        const wait = await this.#limits.take(`a:${ctx.address}`, this.#o.rateLimit?.perAddress ?? 60);
        if (wait !== undefined)
          throw new IssuerError('ERR_ISSUER_RATE_LIMITED', 'too many requests from this address', {
            retryAfterMs: wait,
          });
      }
      const result = await fn();
      observe('ok');
      return result;
    } catch (err) {
      const code = isEdgewardError(err) ? err.code : 'ERR_ISSUER_INTERNAL';
      observe(code);
      if (!isEdgewardError(err)) this.#log.error('issuer internal error', { op, error: String(err) });
      await this.#core.audit
        .write({ ...info, event: 'refuse', code, address: ctx.address, detail: op })
        .catch((e: unknown) => this.#log.error('audit write failed', { error: String(e) }));
      throw err;
    }
  }

  async #limitGateway(name: string): Promise<void> {
    await this.#limit(`g:${name}`, this.#o.rateLimit?.perGateway ?? 10, `requests for gateway ${name}`);
  }

  async #limit(key: string, limit: number, what: string): Promise<void> {
    const wait = await this.#limits.take(key, limit);
    if (wait !== undefined)
      throw new IssuerError('ERR_ISSUER_RATE_LIMITED', `too many ${what}`, { retryAfterMs: wait });
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
