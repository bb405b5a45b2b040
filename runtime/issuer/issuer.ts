/**
 * The upstream issuer's logic, independent of HTTP: attestation (begin/finish) for tpm,
 * join-token and x509pop; renewal for a gateway that presents its current SVID; recovery by the
 * delegated CA key (`recover.ts`); the offline device-issuance log (`devices-issued.ts`); the
 * bundle; the revocation feed; firmware manifests; and the operator's registrations, join
 * tokens, offline budgets (`operator.ts`, `budget.ts`), disabling and revocations. Every refusal
 * is a typed error and an audit record; every issuance is one atomic batch (certificates'
 * records, gateway state, consumed token, next renewal session, audit event): nothing
 * half-written. The handler modules work on an `IssuerCore` (`core.ts`) this class builds.
 *
 * @example
 * ```ts
 * const issuer = await Issuer.create({ trustDomain, store, ca, clock, random, methods: { joinToken: { enabled: true } } });
 * const token = await issuer.createJoinToken('gw-1', 600_000);
 * const begin = await issuer.attestBegin({ method: 'join-token', token }, { address: '10.0.0.5' });
 * ```
 */
import { createHash, type KeyObject, X509Certificate } from 'node:crypto';
import type { Clock, Timer } from '../core/clock.ts';
import { isEdgewardError } from '../core/error.ts';
import { type Logger, nullLogger } from '../core/logger.ts';
import type { Random } from '../core/random.ts';
import { IssuerError } from '../errors.ts';
import type { EndStagingResponse, StageResponse } from '../firmware/protocol.ts';
import { gatewayId, isPathSegment, parseSpiffeId } from '../spiffe/id.ts';
import { parseCsr } from '../svid/csr.ts';
import type {
  AttestBeginResponse,
  DevicesIssuedResponse,
  IssuedIdentity,
  RecoverBeginResponse,
  RenewBeginResponse,
  RevocationFeed,
} from '../upstream/protocol.ts';
import { AuditLog } from './audit.ts';
import { budgetFor, DEFAULT_OFFLINE_BUDGET_MS, MAX_OFFLINE_BUDGET_MS, withDeviceCa } from './budget.ts';
import { type CaKeyPair, CaSet } from './ca.ts';
import type { IssuerCore, RequestContext } from './core.ts';
import { devicesIssued } from './devices-issued.ts';
import { commitStaged, manifestsFor, retractStaged, stageVersion } from './firmware.ts';
import { acceptManifest } from './manifests.ts';
import * as operator from './operator.ts';
import { authenticatePeer } from './peer.ts';
import { RateLimiter } from './rate-limit.ts';
import {
  type AuditEvent,
  type GatewayRecord,
  type IssuedRecord,
  type JoinTokenRecord,
  K,
  type ManifestRecord,
  type Registration,
  type SessionRecord,
} from './records.ts';
import { recoverBegin, recoverFinish } from './recover.ts';
import { Revocations } from './revocations.ts';
import { checkServerNames, DEFAULT_SERVER_NAME_POLICY, type ServerNamePolicy } from './server-names.ts';
import type { IssuerStore, StoreOp } from './store.ts';
import { checkActivatedSecret, checkQuote, ekHash, type TpmPolicy, tpmChallenge } from './tpm-method.ts';
import * as shape from './validate.ts';
import { verifyFactoryChain, verifyPossession } from './x509pop.ts';

export interface IssuerOptions {
  readonly trustDomain: string;
  readonly store: IssuerStore;
  readonly ca: CaKeyPair;
  /** A prepared next CA: published in the bundle now, signs after `rotateCa()`. */
  readonly nextCa?: CaKeyPair;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger?: Logger;
  readonly svidTtlMs?: number;
  /** The delegated CA's lifetime (default 7d); an operator may override it per gateway. */
  readonly offlineBudgetMs?: number;
  readonly sessionTtlMs?: number;
  readonly refreshHintSeconds?: number;
  readonly methods: {
    readonly joinToken?: { readonly enabled: boolean };
    readonly x509pop?: {
      readonly roots: readonly X509Certificate[];
      readonly nameFrom: 'cn' | 'serial';
      readonly autoRegister: boolean;
    };
    readonly tpm?: TpmPolicy;
  };
  readonly firmwareKeys?: readonly KeyObject[];
  /** Which broker host names a gateway SVID may carry (default: local names only). */
  readonly serverNames?: ServerNamePolicy;
  readonly rateLimit?: {
    readonly perAddress: number;
    readonly perGateway: number;
    readonly windowMs: number;
  };
}

export type { RequestContext } from './core.ts';

const HOUR = 3_600_000;
const b64url = (b: Uint8Array): string => Buffer.from(b).toString('base64url');
const sha256hex = (s: string | Uint8Array): string => createHash('sha256').update(s).digest('hex');

export class Issuer {
  readonly #o: IssuerOptions;
  readonly #store: IssuerStore;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #audit: AuditLog;
  readonly #cas: CaSet;
  readonly #rev: Revocations;
  readonly #limits: RateLimiter;
  readonly #svidTtl: number;
  readonly #budget: number;
  readonly #sessionTtl: number;
  readonly #core: IssuerCore;
  readonly #inFlight = new Set<string>();
  #manifests: ManifestRecord[] = [];
  #pruneTimer: Timer | undefined;
  #closed = false;

  private constructor(o: IssuerOptions, cas: CaSet, rev: Revocations) {
    this.#o = o;
    this.#store = o.store;
    this.#clock = o.clock;
    this.#log = o.logger ?? nullLogger;
    this.#audit = new AuditLog(o.store, o.clock, this.#log);
    this.#cas = cas;
    this.#rev = rev;
    this.#limits = new RateLimiter(o.clock, o.rateLimit?.windowMs ?? 60_000);
    this.#svidTtl = o.svidTtlMs ?? HOUR;
    this.#budget = o.offlineBudgetMs ?? DEFAULT_OFFLINE_BUDGET_MS;
    this.#sessionTtl = o.sessionTtlMs ?? 5 * 60_000;
    this.#core = {
      trustDomain: o.trustDomain,
      store: o.store,
      clock: o.clock,
      random: o.random,
      audit: this.#audit,
      sessionTtlMs: this.#sessionTtl,
      svidTtlMs: this.#svidTtl,
      tpm: o.methods.tpm,
      serverNames: o.serverNames ?? DEFAULT_SERVER_NAME_POLICY,
      roots: () => this.#cas.roots(),
      manifests: () => this.#manifests,
      isRevokedId: (id) => this.#rev.isRevokedId(id),
      isRevokedSerial: (serial) => this.#rev.isRevokedSerial(serial),
      checkGatewayUsable: (name) => this.#checkGatewayUsable(name),
      consumeSession: (id, kind) => this.#consumeSession(id, kind),
      limitGateway: (name) => this.#limitGateway(name),
      checkName: (name) => this.#checkName(name),
      issue: (...a) => this.#issue(...a),
    };
  }

  static async create(o: IssuerOptions): Promise<Issuer> {
    const svidTtl = o.svidTtlMs ?? HOUR;
    const budget = o.offlineBudgetMs ?? DEFAULT_OFFLINE_BUDGET_MS;
    // The config's bounds (runtime/config/issuer-bounds.ts) keep these from a file; this is misuse.
    if (!(svidTtl > 0) || !(budget > 0) || budget > MAX_OFFLINE_BUDGET_MS)
      throw new TypeError('TTLs must be positive and the offline budget at most 30d');
    const cas = await CaSet.open({
      trustDomain: o.trustDomain,
      active: o.ca,
      ...(o.nextCa === undefined ? {} : { next: o.nextCa }),
      store: o.store,
      clock: o.clock,
      random: o.random,
      maxTtlMs: Math.max(svidTtl, MAX_OFFLINE_BUDGET_MS),
      ...(o.refreshHintSeconds === undefined ? {} : { refreshHintSeconds: o.refreshHintSeconds }),
    });
    const issuer = new Issuer(o, cas, await Revocations.load(o.store, o.clock));
    issuer.#manifests = (await o.store.list<ManifestRecord>('manifest/')).map(([, v]) => v);
    issuer.#schedulePrune();
    return issuer;
  }

  get trustDomain(): string {
    return this.#o.trustDomain;
  }

  /** The active CA certificate (DER). */
  get caCertificate(): Buffer {
    return this.#cas.signer.certificate;
  }

  roots(): X509Certificate[] {
    return this.#cas.roots();
  }

  // ---- attestation ---------------------------------------------------------------------

  async attestBegin(body: unknown, ctx: RequestContext): Promise<AttestBeginResponse> {
    const info: Partial<AuditEvent> = {};
    return this.#guard('attest.begin', ctx, info, async () => {
      const req = shape.attestBegin(body);
      info.method = req.method;
      const now = this.#clock.now();
      const session: SessionRecord = {
        id: b64url(this.#o.random.bytes(18)),
        kind: 'attest',
        method: req.method,
        nonce: this.#o.random.bytes(32),
        expiresAt: now + this.#sessionTtl,
        gateway: '',
      };
      const extra: Partial<AttestBeginResponse> = {};
      if (req.method === 'join-token') {
        if (this.#o.methods.joinToken?.enabled !== true) throw disabled(req.method);
        const hash = sha256hex(req.token);
        const t = await this.#store.get<JoinTokenRecord>(K.token(hash));
        if (t === undefined || t.expiresAt <= now)
          throw new IssuerError('ERR_ISSUER_TOKEN_INVALID', 'join token unknown, used or expired');
        session.gateway = t.name;
        session.tokenHash = hash;
      } else if (req.method === 'x509pop') {
        const p = this.#o.methods.x509pop;
        if (p === undefined) throw disabled(req.method);
        const { leaf, identity } = verifyFactoryChain(req.chain, p.roots, now, p.nameFrom);
        const reg = await this.#store.get<Registration>(K.registration('x509', identity));
        if (reg === undefined && !p.autoRegister)
          throw new IssuerError(
            'ERR_ISSUER_NOT_REGISTERED',
            `factory identity ${identity} is not registered`,
          );
        session.gateway = reg?.name ?? identity;
        session.leaf = leaf.raw;
        if (reg === undefined) session.registerKey = K.registration('x509', identity);
      } else {
        const p = this.#o.methods.tpm;
        if (p === undefined) throw disabled(req.method);
        const hash = ekHash(req.ekPublic);
        const reg = await this.#store.get<Registration>(K.registration('ek', hash));
        const ch = tpmChallenge(req, p, reg !== undefined, now, this.#o.random);
        if (reg === undefined && !p.autoRegister)
          throw new IssuerError('ERR_ISSUER_NOT_REGISTERED', `EK ${hash.slice(0, 16)}… is not registered`);
        session.gateway = reg?.name ?? `tpm-${hash.slice(0, 16)}`;
        if (reg === undefined) session.registerKey = K.registration('ek', hash);
        session.credentialHash = createHash('sha256').update(ch.credential).digest();
        session.akPublic = req.akPublic;
        session.ekHash = hash;
        session.pcrSelection = p.pcrSelection;
        extra.credentialBlob = ch.credentialBlob;
        extra.encryptedSecret = ch.encryptedSecret;
        extra.pcrSelection = p.pcrSelection;
      }
      info.gateway = session.gateway;
      await this.#checkGatewayUsable(session.gateway);
      await this.#store.batch([{ type: 'put', key: K.session(session.id), value: session }]);
      return { sessionId: session.id, nonce: session.nonce, expiresAt: session.expiresAt, ...extra };
    });
  }

  async attestFinish(body: unknown, ctx: RequestContext): Promise<IssuedIdentity> {
    const info: Partial<AuditEvent> = {};
    return this.#guard('attest.finish', ctx, info, async () => {
      const req = shape.attestFinish(body);
      info.method = req.method;
      const serverNames = checkServerNames(
        req.serverNames,
        this.#o.serverNames ?? DEFAULT_SERVER_NAME_POLICY,
      );
      const s = await this.#consumeSession(req.sessionId, 'attest');
      info.gateway = s.gateway;
      if (s.method !== req.method)
        throw new IssuerError('ERR_ISSUER_BAD_REQUEST', `session is for ${s.method}, not ${req.method}`);
      this.#limitGateway(s.gateway);
      const csr = parseCsr(req.csr);
      const caCsr = parseCsr(req.caCsr);
      const now = this.#clock.now();
      const ops: StoreOp[] = [];
      let firmware: string | undefined;
      if (req.method === 'join-token') {
        const key = K.token(s.tokenHash ?? '');
        const t = await this.#store.get<JoinTokenRecord>(key);
        if (t === undefined || t.expiresAt <= now)
          throw new IssuerError('ERR_ISSUER_TOKEN_INVALID', 'join token unknown, used or expired');
        ops.push({ type: 'del', key });
      } else if (req.method === 'x509pop') {
        const p = this.#o.methods.x509pop;
        if (p === undefined || s.leaf === undefined) throw disabled(req.method);
        const leaf = new X509Certificate(Buffer.from(s.leaf));
        if (now > Date.parse(leaf.validTo))
          throw new IssuerError('ERR_ISSUER_CHAIN_INVALID', 'factory certificate expired during attestation');
        verifyPossession(leaf, s.nonce, csr.spki, req.signature);
      } else {
        const p = this.#o.methods.tpm;
        if (p === undefined || s.credentialHash === undefined || s.akPublic === undefined)
          throw disabled(req.method);
        checkActivatedSecret(s.credentialHash, req.activatedSecret);
        firmware = checkQuote(
          { akPublic: s.akPublic, nonce: s.nonce, csrSpki: csr.spki, ...req },
          p,
          manifestsFor(await this.#store.get<GatewayRecord>(K.gateway(s.gateway)), this.#manifests),
        );
      }
      if (s.registerKey !== undefined) {
        const reg: Registration = { name: s.gateway, createdAt: now, by: 'auto' };
        ops.push({ type: 'put', key: s.registerKey, value: reg });
      }
      const prev = await this.#checkGatewayUsable(s.gateway);
      const gw: GatewayRecord = {
        ...(prev ?? { name: s.gateway, disabled: false, createdAt: now, maxNotAfter: 0 }),
        method: req.method,
        ...(s.akPublic === undefined ? {} : { akPublic: s.akPublic }),
        ...(s.ekHash === undefined ? {} : { ekHash: s.ekHash }),
        ...(firmware === undefined ? {} : { firmware }),
      };
      return this.#issue(gw, csr.spki, caCsr.spki, serverNames, 'issue', ops, ctx, info);
    });
  }

  // ---- renewal (mTLS) ------------------------------------------------------------------

  async renewBegin(ctx: RequestContext): Promise<RenewBeginResponse> {
    const info: Partial<AuditEvent> = {};
    return this.#guard('renew.begin', ctx, info, async () => {
      const gw = await authenticatePeer(this.#core, ctx, info);
      const s = this.#newRenewSession(gw, this.#clock.now() + this.#sessionTtl);
      await this.#store.batch([{ type: 'put', key: K.session(s.id), value: s }]);
      return {
        sessionId: s.id,
        nonce: s.nonce,
        expiresAt: s.expiresAt,
        ...(s.pcrSelection === undefined ? {} : { pcrSelection: s.pcrSelection }),
      };
    });
  }

  async renewFinish(body: unknown, ctx: RequestContext): Promise<IssuedIdentity> {
    const info: Partial<AuditEvent> = {};
    return this.#guard('renew.finish', ctx, info, async () => {
      const gw = await authenticatePeer(this.#core, ctx, info);
      const req = shape.renewFinish(body);
      const serverNames = checkServerNames(
        req.serverNames,
        this.#o.serverNames ?? DEFAULT_SERVER_NAME_POLICY,
      );
      const s = await this.#consumeSession(req.sessionId, 'renew');
      if (s.gateway !== gw.name)
        throw new IssuerError('ERR_ISSUER_SESSION_UNKNOWN', 'renewal session belongs to another gateway');
      this.#limitGateway(gw.name);
      const csr = parseCsr(req.csr);
      const caCsr = req.caCsr === undefined ? undefined : parseCsr(req.caCsr);
      let next = gw;
      if (gw.method === 'tpm') {
        const p = this.#o.methods.tpm;
        if (p === undefined) throw disabled('tpm');
        if (
          gw.akPublic === undefined ||
          req.quote === undefined ||
          req.signature === undefined ||
          req.pcrValues === undefined
        )
          throw new IssuerError(
            'ERR_ISSUER_QUOTE_INVALID',
            'a tpm gateway must renew with a fresh quote on its AK',
          );
        const firmware = checkQuote(
          {
            akPublic: gw.akPublic,
            nonce: s.nonce,
            csrSpki: csr.spki,
            quote: req.quote,
            signature: req.signature,
            pcrValues: req.pcrValues,
          },
          p,
          manifestsFor(gw, this.#manifests),
        );
        next = { ...gw, firmware };
      }
      return this.#issue(next, csr.spki, caCsr?.spki, serverNames, 'renew', [], ctx, info);
    });
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

  // ---- bundle, revocations, manifests -------------------------------------------------

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

  async addManifest(body: unknown, ctx: RequestContext): Promise<{ version: string }> {
    const info: Partial<AuditEvent> = {};
    return this.#guard('manifest', ctx, info, async () => {
      const record = acceptManifest(body, this.#o.firmwareKeys ?? [], this.#clock.now());
      await this.#store.batch([
        { type: 'put' as const, key: K.manifest(record.bank, record.version), value: record },
        this.#audit.op({ event: 'manifest', detail: record.version, address: ctx.address }),
      ]);
      this.#manifests = [
        ...this.#manifests.filter((x) => !(x.version === record.version && x.bank === record.bank)),
        record,
      ];
      return { version: record.version };
    });
  }

  // ---- per-gateway firmware staging (runtime/firmware/protocol.ts, firmware.ts) ---------

  /** post-install, over mTLS with the gateway's SVID: stage `version` for this gateway. */
  async stageFirmware(body: unknown, ctx: RequestContext): Promise<StageResponse> {
    const info: Partial<AuditEvent> = {};
    return this.#guard('firmware.stage', ctx, info, async () => {
      const gw = await authenticatePeer(this.#core, ctx, info);
      const version = (body as { version?: unknown } | null)?.version;
      if (typeof version !== 'string' || version.length === 0 || version.length > 64)
        throw new IssuerError('ERR_ISSUER_BAD_REQUEST', 'firmware stage: body must be { version }');
      const ticket = this.#o.random.bytes(32);
      const next = stageVersion(
        gw,
        version,
        this.#manifests,
        createHash('sha256').update(ticket).digest(),
        this.#clock.now(),
      );
      await this.#saveFirmwareState(next, ctx, `stage ${version}`);
      return { gateway: gw.name, version, ticket };
    });
  }

  /** commit or rollback of the gateway's staged firmware, authorised by the staging ticket. */
  async endFirmware(
    kind: 'commit' | 'retract',
    body: unknown,
    ctx: RequestContext,
  ): Promise<EndStagingResponse> {
    const info: Partial<AuditEvent> = {};
    return this.#guard(`firmware.${kind}`, ctx, info, async () => {
      const b = body as { gateway?: unknown; ticket?: unknown } | null;
      if (typeof b?.gateway !== 'string' || !(b.ticket instanceof Uint8Array))
        throw new IssuerError('ERR_ISSUER_BAD_REQUEST', `firmware ${kind}: body must be { gateway, ticket }`);
      this.#checkName(b.gateway);
      info.gateway = b.gateway;
      const gw = await this.#store.get<GatewayRecord>(K.gateway(b.gateway));
      if (gw === undefined)
        throw new IssuerError('ERR_ISSUER_FIRMWARE_TICKET', 'no firmware staged with this ticket');
      const next = kind === 'commit' ? commitStaged(gw, b.ticket) : retractStaged(gw, b.ticket);
      await this.#saveFirmwareState(next, ctx, `${kind} ${gw.firmwareStaged?.version}`);
      return {
        gateway: gw.name,
        ...(next.firmwareAccepted === undefined ? {} : { accepted: next.firmwareAccepted }),
      };
    });
  }

  /** The gateway's firmware staging state changed: store it with its audit event. */
  async #saveFirmwareState(gw: GatewayRecord, ctx: RequestContext, detail: string): Promise<void> {
    await this.#store.batch([
      { type: 'put', key: K.gateway(gw.name), value: gw },
      this.#audit.op({ event: 'manifest', gateway: gw.name, address: ctx.address, detail }),
    ]);
  }

  // ---- operator actions ----------------------------------------------------------------

  /** A one-time join token for gateway `name`; only its SHA-256 is stored. */
  createJoinToken(name: string, ttlMs: number): Promise<string> {
    return operator.createJoinToken(this.#core, name, ttlMs);
  }

  /** Register an EK (by SHA-256 of its TPMT_PUBLIC, hex) or a factory identity as gateway `name`. */
  register(kind: 'ek' | 'x509', key: string, name: string): Promise<void> {
    return operator.register(this.#core, kind, key, name);
  }

  setDisabled(name: string, disabled: boolean): Promise<void> {
    return operator.setDisabled(this.#core, name, disabled);
  }

  /** An operator's offline budget for gateway `name` (undefined: back to the configured one). */
  setOfflineBudget(name: string, ms: number | undefined): Promise<void> {
    return operator.setOfflineBudget(this.#core, name, ms);
  }

  /**
   * Revoke a SPIFFE ID (a gateway: also disabled; a device under a gateway) or a serial. The
   * entry stays in the feed until everything it affects has expired.
   */
  async revoke(kind: 'spiffe-id' | 'serial', value: string): Promise<{ sequence: number; until: number }> {
    const now = this.#clock.now();
    const ops: StoreOp[] = [];
    let until: number;
    let gateway: string | undefined;
    if (kind === 'serial') {
      if (!/^[0-9a-f]{1,40}$/.test(value) || (value.length > 1 && value.startsWith('0')))
        throw new IssuerError('ERR_ISSUER_BAD_REQUEST', 'serial must be lowercase hex without leading zeros');
      const issued = await this.#store.get<IssuedRecord>(K.issued(value));
      // A serial we neither signed nor were told of is a device's: bounded by the longest budget.
      until = issued?.notAfter ?? now + MAX_OFFLINE_BUDGET_MS;
      gateway = issued?.gateway;
    } else {
      const id = parseSpiffeId(value);
      const [g0, name, d0, device] = id.segments;
      if (id.trustDomain !== this.#o.trustDomain || g0 !== 'gateway' || name === undefined)
        throw new IssuerError(
          'ERR_ISSUER_BAD_REQUEST',
          `${value} is not a gateway or device ID of ${this.#o.trustDomain}`,
        );
      if (id.segments.length !== 2 && !(id.segments.length === 4 && d0 === 'device' && device !== undefined))
        throw new IssuerError('ERR_ISSUER_BAD_REQUEST', `${value} is not a gateway or device ID`);
      gateway = name;
      const gw = await this.#store.get<GatewayRecord>(K.gateway(name));
      // Device SVIDs never outlive the gateway's delegated CA: its latest NotAfter bounds both.
      until = gw?.maxNotAfter ?? 0;
      if (until <= now) until = now + MAX_OFFLINE_BUDGET_MS;
      if (id.segments.length === 2 && gw !== undefined)
        ops.push({ type: 'put', key: K.gateway(name), value: { ...gw, disabled: true } });
    }
    const { record, ops: revOps } = this.#rev.prepare(kind, value, until);
    await this.#store.batch([
      ...ops,
      ...revOps,
      this.#audit.op({
        event: 'revoke',
        ...(gateway === undefined ? {} : { gateway }),
        detail: `${kind}:${value}`,
      }),
    ]);
    this.#rev.commit(record);
    return { sequence: record.sequence, until };
  }

  /** Publish a next CA in the bundle now (it signs after `rotateCa`). */
  async prepareCa(next: CaKeyPair): Promise<void> {
    await this.#cas.prepareNext(next);
    await this.#audit.write({ event: 'ca', detail: 'next CA published in the bundle' });
  }

  async rotateCa(): Promise<void> {
    await this.#cas.activateNext();
    await this.#audit.write({
      event: 'ca',
      detail: 'next CA activated; previous kept until its certificates expire',
    });
  }

  auditEvents(since = 0, limit = 1000): Promise<AuditEvent[]> {
    return this.#audit.list(since, limit);
  }

  /** Record a refusal that happened before the request reached the issuer (HTTP layer). */
  async refuse(code: string, ctx: RequestContext, detail: string): Promise<void> {
    await this.#audit.write({ event: 'refuse', code, address: ctx.address, detail });
  }

  /** Drop expired sessions, tokens, revocations and retired CAs. */
  async prune(): Promise<void> {
    const now = this.#clock.now();
    const del: StoreOp[] = [];
    for (const [k, s] of await this.#store.list<SessionRecord>('session/'))
      if (s.expiresAt <= now) del.push({ type: 'del', key: k });
    for (const [k, t] of await this.#store.list<JoinTokenRecord>('token/'))
      if (t.expiresAt <= now) del.push({ type: 'del', key: k });
    for (const [k, r] of await this.#store.list<IssuedRecord>('issued/'))
      if (r.notAfter <= now) del.push({ type: 'del', key: k });
    await this.#store.batch(del);
    await this.#rev.prune();
    await this.#cas.prune();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#pruneTimer?.cancel();
  }

  // ---- internals -----------------------------------------------------------------------

  async #guard<T>(
    op: string,
    ctx: RequestContext,
    info: Partial<AuditEvent>,
    fn: () => Promise<T>,
  ): Promise<T> {
    try {
      if (this.#closed) throw new IssuerError('ERR_ISSUER_CLOSED', 'issuer is closed');
      const wait = this.#limits.take(`a:${ctx.address}`, this.#o.rateLimit?.perAddress ?? 60);
      if (wait !== undefined)
        throw new IssuerError('ERR_ISSUER_RATE_LIMITED', 'too many requests from this address', {
          retryAfterMs: wait,
        });
      return await fn();
    } catch (err) {
      const code = isEdgewardError(err) ? err.code : 'ERR_ISSUER_INTERNAL';
      if (!isEdgewardError(err)) this.#log.error('issuer internal error', { op, error: String(err) });
      await this.#audit
        .write({ ...info, event: 'refuse', code, address: ctx.address, detail: op })
        .catch((e: unknown) => this.#log.error('audit write failed', { error: String(e) }));
      throw err;
    }
  }

  #limitGateway(name: string): void {
    const wait = this.#limits.take(`g:${name}`, this.#o.rateLimit?.perGateway ?? 10);
    if (wait !== undefined)
      throw new IssuerError('ERR_ISSUER_RATE_LIMITED', `too many requests for gateway ${name}`, {
        retryAfterMs: wait,
      });
  }

  #checkName(name: string): void {
    if (!isPathSegment(name) || name.length > 64)
      throw new IssuerError(
        'ERR_ISSUER_BAD_REQUEST',
        `gateway name '${String(name).slice(0, 80)}' must be 1-64 of [A-Za-z0-9._-]`,
      );
  }

  async #checkGatewayUsable(name: string): Promise<GatewayRecord | undefined> {
    const gw = await this.#store.get<GatewayRecord>(K.gateway(name));
    if (gw?.disabled === true)
      throw new IssuerError('ERR_ISSUER_GATEWAY_DISABLED', `gateway ${name} is disabled`);
    if (this.#rev.isRevokedId(gatewayId(this.#o.trustDomain, name)))
      throw new IssuerError('ERR_ISSUER_REVOKED', `gateway ${name} is revoked`);
    return gw;
  }

  async #consumeSession(id: string, kind: SessionRecord['kind']): Promise<SessionRecord> {
    if (this.#inFlight.has(id))
      throw new IssuerError('ERR_ISSUER_SESSION_UNKNOWN', 'session already in use (replay)');
    this.#inFlight.add(id);
    try {
      const key = K.session(id);
      const s = await this.#store.get<SessionRecord>(key);
      if (s === undefined || s.kind !== kind)
        throw new IssuerError('ERR_ISSUER_SESSION_UNKNOWN', 'unknown or already used session (replay)');
      await this.#store.batch([{ type: 'del', key }]);
      if (s.expiresAt <= this.#clock.now())
        throw new IssuerError('ERR_ISSUER_SESSION_EXPIRED', 'session expired');
      return s;
    } finally {
      this.#inFlight.delete(id);
    }
  }

  #newRenewSession(gw: GatewayRecord, expiresAt: number): SessionRecord {
    const p = this.#o.methods.tpm;
    return {
      id: b64url(this.#o.random.bytes(18)),
      kind: 'renew',
      method: gw.method,
      nonce: this.#o.random.bytes(32),
      expiresAt,
      gateway: gw.name,
      ...(gw.method === 'tpm' && p !== undefined ? { pcrSelection: p.pcrSelection } : {}),
    };
  }

  async #issue(
    gw: GatewayRecord,
    spki: Buffer,
    /** Undefined on a renewal without caCsr: the delegated CA is not re-signed. */
    caSpki: Buffer | undefined,
    serverNames: readonly string[],
    event: 'issue' | 'renew' | 'recover',
    extraOps: StoreOp[],
    ctx: RequestContext,
    info: Partial<AuditEvent>,
  ): Promise<IssuedIdentity> {
    const now = this.#clock.now();
    const spiffeId = gatewayId(this.#o.trustDomain, gw.name);
    const signer = this.#cas.signer;
    const notBefore = now - 30_000;
    const budget = budgetFor(gw, this.#budget);
    const sp = signer.issue({
      profile: 'svid',
      spiffeId,
      spki,
      notBefore,
      // The gateway SVID never outlives the budget (an override is never shorter than svidTtl
      // when set, but svidTtl may have grown since).
      notAfter: now + Math.min(this.#svidTtl, budget),
      serverNames,
    });
    const dp =
      caSpki === undefined
        ? undefined
        : signer.issue({
            profile: 'device-ca',
            spiffeId,
            spki: caSpki,
            notBefore,
            notAfter: now + budget,
            permittedServerNames: serverNames,
          });
    this.#cas.noteSigned(Math.max(sp.notAfter, dp?.notAfter ?? 0));
    const renewal = this.#newRenewSession(gw, sp.notAfter);
    const record: GatewayRecord = {
      ...gw,
      maxNotAfter: Math.max(gw.maxNotAfter, sp.notAfter, dp?.notAfter ?? 0),
      lastIssuedAt: now,
      deviceCas: withDeviceCa(gw, dp && { serial: dp.serialHex, notAfter: dp.notAfter }, now),
    };
    const issued = (kind: IssuedRecord['kind'], notAfter: number): IssuedRecord => ({
      spiffeId,
      gateway: gw.name,
      kind,
      notAfter,
    });
    await this.#store.batch([
      ...extraOps,
      { type: 'put', key: K.gateway(gw.name), value: record },
      { type: 'put', key: K.issued(sp.serialHex), value: issued('svid', sp.notAfter) },
      ...(dp === undefined
        ? []
        : [{ type: 'put' as const, key: K.issued(dp.serialHex), value: issued('device-ca', dp.notAfter) }]),
      { type: 'put', key: K.session(renewal.id), value: renewal },
      this.#audit.op({
        ...info,
        event,
        method: gw.method,
        gateway: gw.name,
        spiffeId,
        serials: dp === undefined ? [sp.serialHex] : [sp.serialHex, dp.serialHex],
        address: ctx.address,
        ...(gw.firmware === undefined ? {} : { detail: `firmware ${gw.firmware}` }),
      }),
    ]);
    const bundle = this.bundle();
    return {
      spiffeId,
      svidChain: [sp.der],
      deviceCaChain: dp === undefined ? [] : [dp.der],
      bundle: bundle.json,
      bundleSequence: bundle.sequence,
      nextNonce: renewal.nonce,
      nextSessionId: renewal.id,
    };
  }

  #schedulePrune(): void {
    if (this.#closed) return;
    this.#pruneTimer = this.#clock.setTimer('issuer-prune', 60_000, () => {
      this.prune()
        .catch((err: unknown) => this.#log.error('issuer prune failed', { error: String(err) }))
        .finally(() => this.#schedulePrune());
    });
  }
}

function disabled(method: string): IssuerError {
  return new IssuerError(
    'ERR_ISSUER_METHOD_DISABLED',
    `attestation method ${method} is not enabled on this issuer`,
  );
}
