/**
 * The operator's actions: join tokens, registrations, disabling, per-gateway offline budgets, CA
 * rotation (revocation is `revoke.ts`). Each is one atomic batch with its audit event, which
 * names who did it (`by`) when the caller knows.
 *
 * @example
 * ```ts
 * await setOfflineBudget(core, 'gw-1', 3 * 86_400_000); // audited as event 'budget'
 * ```
 */
import { createHash, createPublicKey } from 'node:crypto';
import { IssuerError } from '../errors.ts';
import { isPathSegment } from '../spiffe/id.ts';
import { checkBudgetOverride } from './budget.ts';
import type { CaKeyPair } from './ca.ts';
import type { CaStatus, SwitchRequest } from './ca-rotation.ts';
import type { IssuerCore } from './core.ts';
import { updateGateway } from './gateways.ts';
import { type GatewayRecord, type JoinTokenRecord, K, type Registration } from './records.ts';

const sha256hex = (s: string): string => createHash('sha256').update(s).digest('hex');
const who = (by: string | undefined): { by?: string } => (by === undefined ? {} : { by });

/** A one-time join token for gateway `name`; only its SHA-256 is stored. */
export async function createJoinToken(
  core: IssuerCore,
  name: string,
  ttlMs: number,
  by?: string,
): Promise<string> {
  core.checkName(name);
  if (!(ttlMs > 0)) throw new TypeError('token TTL must be positive');
  const token = `ewj1.${Buffer.from(core.random.bytes(32)).toString('base64url')}`;
  const now = core.clock.now();
  const rec: JoinTokenRecord = { name, expiresAt: now + ttlMs, createdAt: now };
  await core.store.batch([
    { type: 'put', key: K.token(sha256hex(token)), value: rec },
    core.audit.op({
      event: 'token',
      gateway: name,
      detail: `expires ${new Date(rec.expiresAt).toISOString()}`,
      ...who(by),
    }),
  ]);
  return token;
}

/** Register an EK (by SHA-256 of its TPMT_PUBLIC, hex) or a factory identity as gateway `name`. */
export async function register(
  core: IssuerCore,
  kind: 'ek' | 'x509',
  key: string,
  name: string,
  by?: string,
): Promise<void> {
  core.checkName(name);
  if (kind === 'ek' && !/^[0-9a-f]{64}$/.test(key))
    throw new IssuerError('ERR_ISSUER_BAD_REQUEST', 'EK hash must be 64 hex digits');
  if (kind === 'x509' && !isPathSegment(key))
    throw new IssuerError('ERR_ISSUER_BAD_REQUEST', 'bad factory identity');
  const reg: Registration = { name, createdAt: core.clock.now(), by: 'admin' };
  await core.store.batch([
    { type: 'put', key: K.registration(kind, key), value: reg },
    core.audit.op({ event: 'register', gateway: name, detail: `${kind}:${key}`, ...who(by) }),
  ]);
}

/** The gateway's record, or a new one for a gateway not seen yet (an operator may act first). */
function recordOf(core: IssuerCore, name: string, current: GatewayRecord | undefined): GatewayRecord {
  return (
    current ?? {
      name,
      disabled: false,
      method: 'join-token',
      createdAt: core.clock.now(),
      maxNotAfter: 0,
    }
  );
}

export async function setDisabled(
  core: IssuerCore,
  name: string,
  disabled: boolean,
  by?: string,
): Promise<void> {
  core.checkName(name);
  await updateGateway(core, name, (current) => ({
    record: { ...recordOf(core, name, current), disabled },
    ops: [core.audit.op({ event: disabled ? 'disable' : 'enable', gateway: name, ...who(by) })],
  }));
}

/**
 * Set (or, with `undefined`, clear) gateway `name`'s offline budget: the lifetime of the next
 * delegated CA issued to it (at attestation, renewal with a CA CSR, or recovery with one). The
 * CA it holds now keeps its NotAfter; shortening takes effect at its next CA renewal (at half-life)
 * — or at once with a revocation.
 */
export async function setOfflineBudget(
  core: IssuerCore,
  name: string,
  ms: number | undefined,
  by?: string,
): Promise<void> {
  core.checkName(name);
  if (ms !== undefined) checkBudgetOverride(ms, core.svidTtlMs);
  await updateGateway(core, name, (current) => {
    const { offlineBudgetMs: _previous, ...rest } = recordOf(core, name, current);
    return {
      record: { ...rest, ...(ms === undefined ? {} : { offlineBudgetMs: ms }) },
      ops: [
        core.audit.op({
          event: 'budget',
          gateway: name,
          detail: ms === undefined ? 'offline budget: the configured one' : `offline budget: ${ms} ms`,
          ...who(by),
        }),
      ],
    };
  });
}

/** Publish a next CA in the bundle now (it signs once a switch is scheduled: `rotateCa`). */
export async function prepareCa(core: IssuerCore, next: CaKeyPair, by?: string): Promise<void> {
  await core.cas.prepareNext(next);
  await core.audit.write({ event: 'ca', detail: 'next CA published in the bundle', ...who(by) });
}

/**
 * Rotate the CA: the next CA is published in the bundle (if not yet) and every replica signs
 * with it from the recorded time (`request.at`, default the earliest safe one; `immediate`: now).
 * The previous CA stays in the bundle until everything it signed has expired.
 */
export async function rotateCa(core: IssuerCore, request: SwitchRequest, by?: string): Promise<CaStatus> {
  const status = await core.cas.scheduleSwitch(request);
  const next = status.next;
  await core.audit.write({
    event: 'ca',
    detail:
      next === undefined
        ? `CA ${status.active.fingerprint} signs from now; previous kept until its certificates expire`
        : `next CA ${next.fingerprint} signs from ${next.activateAt} on every replica; previous kept until its certificates expire`,
    ...who(by),
  });
  return status;
}

/** Operator certificates live at most this long (default 8h): short-lived by design. */
export const MAX_OPERATOR_TTL_MS = 24 * 3_600_000;

/** `spiffe://<td>/operator/<name>`: the only identity the mTLS admin port admits. */
export const operatorId = (trustDomain: string, name: string): string =>
  `spiffe://${trustDomain}/operator/${name}`;

/**
 * An operator certificate for `name` over the given public key (SPKI DER), signed by the active
 * CA, valid `ttlMs`. It is an X.509-SVID for `spiffe://<td>/operator/<name>`; gateways never get
 * one (their IDs are under /gateway/), and the admin port refuses everything else.
 */
export async function createOperatorCertificate(
  core: IssuerCore,
  name: string,
  spki: Uint8Array,
  ttlMs: number,
  by?: string,
): Promise<{ spiffeId: string; certificate: Buffer; serial: string; notAfter: number }> {
  if (!isPathSegment(name) || name.length > 64)
    throw new IssuerError('ERR_ISSUER_BAD_REQUEST', 'operator name must be 1-64 of [A-Za-z0-9._-]');
  if (!(ttlMs > 0) || ttlMs > MAX_OPERATOR_TTL_MS)
    throw new IssuerError(
      'ERR_ISSUER_BAD_REQUEST',
      'operator certificate lifetime must be > 0 and at most 24h',
    );
  try {
    createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  } catch (cause) {
    throw new IssuerError('ERR_ISSUER_BAD_REQUEST', 'not a public key (SPKI DER)', {}, { cause });
  }
  const spiffeId = operatorId(core.trustDomain, name);
  const now = core.clock.now();
  const signed = await core.cas.signer.issue({
    profile: 'svid',
    spiffeId,
    spki,
    notBefore: now - 30_000,
    notAfter: now + ttlMs,
  });
  core.cas.noteSigned(signed.notAfter);
  await core.audit.write({
    event: 'operator',
    spiffeId,
    serials: [signed.serialHex],
    detail: `operator certificate until ${new Date(signed.notAfter).toISOString()}`,
    ...who(by),
  });
  return { spiffeId, certificate: signed.der, serial: signed.serialHex, notAfter: signed.notAfter };
}
