/**
 * Idempotent finish, for attestation, renewal and recovery alike. A gateway whose
 * `/v1/{attest,renew,recover}/finish` answer was lost (a client timeout, a replica killed after
 * its COMMIT, a connection reset) would otherwise be stranded or set back: the issuance batch
 * consumed its session (and a join token), so its retry is a replay — a join-token gateway needs a
 * person to make a new token, a renewing one a new begin (and a TPM a fresh quote), a recovering
 * one may have no other way left. So the issuance batch also writes `done/<sessionId>` (same
 * transaction as the issuance: any replica, on PostgreSQL or LevelDB, sees both or neither),
 * holding a SHA-256 of the canonical request (its kind included) and the response it was
 * answered with. A finish for a session that is gone, whose request hashes the same, is answered
 * that stored response again (audited as `retry`): no second issuance, no second consumption. A
 * different request (another CSR, another proof, another kind, another gateway's SVID) is the
 * usual replay refusal.
 *
 * Safe because the stored response is public material only (the gateway SVID and delegated CA
 * certificates, the trust bundle, the renewal session's id and nonce): the certificates are
 * useless without the CSRs' private keys and a renewal needs mTLS with the SVID key, and those
 * keys only the original caller holds. The record expires with the session TTL (`prune.ts`).
 * A record read back malformed (not a `DoneRecord` with a well-formed answer) answers nothing:
 * it is logged and the replay refusal stands.
 *
 * @example
 * ```ts
 * return idempotentFinish(core, 'renew', req, ctx, info, (remember) =>
 *   core.withSession(req.sessionId, 'renew', async (s, consume) =>
 *     core.issue(gw, spki, caSpki, names, 'renew', consume, ctx, info, known, remember(s.gateway))),
 *   gw.name);
 * ```
 */
import { createHash } from 'node:crypto';
import { IssuerError } from '../errors.ts';
import type {
  AttestFinishRequest,
  IssuedIdentity,
  RecoverFinishRequest,
  RenewFinishRequest,
} from '../upstream/protocol.ts';
import type { AuditInfo, IssuerCore, RequestContext } from './core.ts';
import { sessionKey } from './sessions.ts';
import type { StoreOp } from './store.ts';

/** The finishes answered idempotently; the kind is hashed with the request. */
export type FinishKind = 'attest' | 'renew' | 'recover';

/** A validated finish request of any kind. */
export type FinishRequest = AttestFinishRequest | RenewFinishRequest | RecoverFinishRequest;

/** Builds the op remembering the answer, given the gateway it is issued to (`core.issue`'s `remember`). */
export type Remember = (gateway: string) => (issued: IssuedIdentity) => StoreOp;

export interface DoneRecord {
  /** SHA-256 (hex) of the canonical finish request (`finishDigest`). */
  requestHash: string;
  /** The gateway the answer was issued to (the retry's audit event; a renewal's caller must be it). */
  gateway: string;
  expiresAt: number;
  response: IssuedIdentity;
}

const isBytes = (v: unknown): v is Uint8Array => v instanceof Uint8Array;
const isBytesList = (v: unknown): v is Uint8Array[] => Array.isArray(v) && v.every(isBytes);

/** Whether `v`, read from the store, is a well-formed `DoneRecord` (its answer included). */
export function isDoneRecord(v: unknown): v is DoneRecord {
  if (typeof v !== 'object' || v === null) return false;
  const d = v as Record<string, unknown>;
  const r = d.response as Record<string, unknown> | null | undefined;
  return (
    typeof d.requestHash === 'string' &&
    typeof d.gateway === 'string' &&
    typeof d.expiresAt === 'number' &&
    typeof r === 'object' &&
    r !== null &&
    typeof r.spiffeId === 'string' &&
    isBytesList(r.svidChain) &&
    isBytesList(r.deviceCaChain) &&
    typeof r.bundle === 'string' &&
    typeof r.bundleSequence === 'number' &&
    isBytes(r.nextNonce) &&
    (r.nextSessionId === undefined || typeof r.nextSessionId === 'string')
  );
}

/** The store key of the answered finish of session `id`. */
export const doneKey = (id: string): string => `done/${id}`;

function field(h: ReturnType<typeof createHash>, v: unknown): void {
  const len = (n: number): void => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    h.update(b);
  };
  if (v instanceof Uint8Array) {
    h.update('b');
    len(v.length);
    h.update(v);
  } else if (typeof v === 'string') {
    const b = Buffer.from(v, 'utf8');
    h.update('s');
    len(b.length);
    h.update(b);
  } else if (Array.isArray(v)) {
    h.update('a');
    len(v.length);
    for (const x of v) field(h, x);
  } else if (v === undefined) {
    h.update('u');
  } else {
    throw new TypeError(`finish request field of unexpected type ${typeof v}`);
  }
}

/**
 * SHA-256 (hex) of the validated finish request of `kind`: every field (sessionId, csr, caCsr,
 * serverNames, the method's or the CA key's proof, the quote), sorted by name, each type-tagged
 * and length-prefixed, after a prefix naming the kind (so an attest request never matches a
 * renewal's record; the attest prefix is the one its records were first written with).
 */
export function finishDigest(kind: FinishKind, req: FinishRequest): string {
  const h = createHash('sha256');
  h.update(`edgeward ${kind}-finish v1\0`);
  const r = req as unknown as Record<string, unknown>;
  for (const name of Object.keys(r).sort()) {
    if (r[name] === undefined) continue;
    field(h, name);
    field(h, r[name]);
  }
  return h.digest('hex');
}

/** The op remembering the answer of session `sessionId`'s finish, for the issuance batch. */
function doneOp(
  sessionId: string,
  requestHash: string,
  gateway: string,
  expiresAt: number,
  response: IssuedIdentity,
): StoreOp {
  const value: DoneRecord = { requestHash, gateway, expiresAt, response };
  return { type: 'put', key: doneKey(sessionId), value };
}

/** Errors after which a finish may have been answered already (the session or token is gone). */
function mayBeAnswered(err: unknown): boolean {
  return (
    err instanceof IssuerError &&
    (err.code === 'ERR_ISSUER_SESSION_UNKNOWN' || err.code === 'ERR_ISSUER_TOKEN_INVALID')
  );
}

/**
 * The finish `req` of `kind`, made idempotent: `issue` runs it on its session, putting
 * `remember(gateway)` into its issuance batch; when that is refused because the session (or
 * token) is gone, and this very request was answered, that answer is given again (audited
 * `retry`), else the refusal stands. `caller`: the gateway authenticated by mTLS (renewal), which
 * must be the one the remembered answer went to.
 */
export async function idempotentFinish(
  core: IssuerCore,
  kind: FinishKind,
  req: FinishRequest,
  ctx: RequestContext,
  info: AuditInfo,
  issue: (remember: Remember) => Promise<IssuedIdentity>,
  caller?: string,
): Promise<IssuedIdentity> {
  const requestHash = finishDigest(kind, req);
  const remember: Remember = (gateway) => (issued) =>
    doneOp(req.sessionId, requestHash, gateway, core.clock.now() + core.sessionTtlMs, issued);
  try {
    return await issue(remember);
  } catch (err) {
    // The session or its token is gone: this very request may have been answered (a lost answer).
    if (!mayBeAnswered(err)) throw err;
    const again = await answeredBefore(core, kind, req.sessionId, requestHash, ctx, info, caller);
    if (again === undefined) throw err;
    return again;
  }
}

/**
 * The stored answer of this exact finish, audited as a retry; undefined when there is none (never
 * answered, expired, a different request for the session, another caller: the refusal stands).
 */
async function answeredBefore(
  core: IssuerCore,
  kind: FinishKind,
  sessionId: string,
  requestHash: string,
  ctx: RequestContext,
  info: AuditInfo,
  caller: string | undefined,
): Promise<IssuedIdentity | undefined> {
  if (sessionKey(sessionId) === undefined) return undefined;
  const done = await core.store.get<unknown>(doneKey(sessionId));
  if (done === undefined) return undefined;
  if (!isDoneRecord(done)) {
    // Read back from the store, it passes the checks live input would: a malformed record
    // answers nothing (the refusal stands), it never crashes the finish or is served.
    core.logger.warn('issuer: a malformed done record is ignored', { key: doneKey(sessionId) });
    return undefined;
  }
  if (
    done.expiresAt <= core.clock.now() ||
    done.requestHash !== requestHash ||
    (caller !== undefined && done.gateway !== caller)
  )
    return undefined;
  info.gateway = done.gateway;
  await core.audit.write({
    ...info,
    event: 'retry',
    gateway: done.gateway,
    spiffeId: done.response.spiffeId,
    address: ctx.address,
    detail: `${kind} finish answered again (its first answer was lost): nothing new issued`,
  });
  return done.response;
}
