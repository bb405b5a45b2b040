/**
 * Idempotent attestation finish. A gateway whose `/v1/attest/finish` answer was lost (a client
 * timeout, a replica killed after its COMMIT, a connection reset) would otherwise be stranded: the
 * issuance batch consumed its session and its single-use join token, so its retry is a replay and
 * a person would have to make a new token. So the issuance batch also writes `done/<sessionId>`
 * (same transaction as the issuance: any replica, on PostgreSQL or LevelDB, sees both or neither),
 * holding a SHA-256 of the canonical request and the response it was answered with. A finish for
 * a session that is gone, whose request hashes the same, is answered that stored response again
 * (audited as `retry`): no second issuance, no second token consumption. A different request
 * (another CSR, another proof) is the usual replay refusal.
 *
 * Safe because the stored response is public material only (the gateway SVID and delegated CA
 * certificates, the trust bundle, the renewal session's id and nonce): the certificates are
 * useless without the CSRs' private keys and a renewal needs mTLS with the SVID key, and those
 * keys only the original caller holds. The record expires with the session TTL (`prune.ts`).
 */
import { createHash } from 'node:crypto';
import { IssuerError } from '../errors.ts';
import type { AttestFinishRequest, IssuedIdentity } from '../upstream/protocol.ts';
import type { AuditInfo, IssuerCore, RequestContext } from './core.ts';
import { sessionKey } from './sessions.ts';
import type { StoreOp } from './store.ts';

export interface DoneRecord {
  /** SHA-256 (hex) of the canonical finish request (`finishDigest`). */
  requestHash: string;
  /** The gateway the answer was issued to (for the retry's audit event). */
  gateway: string;
  expiresAt: number;
  response: IssuedIdentity;
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
 * SHA-256 (hex) of the validated finish request: every field (method, sessionId, csr, caCsr,
 * serverNames and the method's proof), sorted by name, each type-tagged and length-prefixed.
 */
export function finishDigest(req: AttestFinishRequest): string {
  const h = createHash('sha256');
  h.update('edgeward attest-finish v1\0');
  const r = req as unknown as Record<string, unknown>;
  for (const name of Object.keys(r).sort()) {
    if (r[name] === undefined) continue;
    field(h, name);
    field(h, r[name]);
  }
  return h.digest('hex');
}

/** The op remembering the answer of session `sessionId`'s finish, for the issuance batch. */
export function doneOp(
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
export function mayBeAnswered(err: unknown): boolean {
  return (
    err instanceof IssuerError &&
    (err.code === 'ERR_ISSUER_SESSION_UNKNOWN' || err.code === 'ERR_ISSUER_TOKEN_INVALID')
  );
}

/**
 * The stored answer of this exact finish, audited as a retry; undefined when there is none (never
 * answered, expired, or a different request for the session: the caller's refusal stands).
 */
export async function answeredBefore(
  core: IssuerCore,
  sessionId: string,
  requestHash: string,
  ctx: RequestContext,
  info: AuditInfo,
): Promise<IssuedIdentity | undefined> {
  if (sessionKey(sessionId) === undefined) return undefined;
  const done = await core.store.get<DoneRecord>(doneKey(sessionId));
  if (done === undefined || done.expiresAt <= core.clock.now() || done.requestHash !== requestHash)
    return undefined;
  info.gateway = done.gateway;
  await core.audit.write({
    ...info,
    event: 'retry',
    gateway: done.gateway,
    spiffeId: done.response.spiffeId,
    address: ctx.address,
    detail: 'attest finish answered again (its first answer was lost): nothing new issued',
  });
  return done.response;
}
