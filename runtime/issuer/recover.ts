/**
 * Recovery without a person (issue 14 item 4): a gateway whose upstream SVID expired while its
 * delegated CA is still valid gets a new SVID by proving possession of the CA key, over TLS
 * server-auth only (it has no valid client certificate).
 *
 * begin: the CA certificate must chain to one of the issuer's CAs (current, next or retired and
 * still in the bundle), be valid now, carry exactly one URI SAN naming a gateway of this trust
 * domain, and have a serial this issuer recorded as a delegated CA of that very gateway (gateway
 * record and issued record); the serial must not be revoked; the gateway must be registered,
 * enabled and not revoked. The answer is a single-use nonce in a `recover` session bound to that
 * CA. finish: the session is consumed (a replay is `ERR_ISSUER_SESSION_UNKNOWN`), every check of
 * begin is made again (a revocation in between counts), the CA key's signature over
 * SHA-256("edgeward ca-pop v1" ‖ nonce ‖ CSR SPKI) must verify, and a tpm gateway must send a
 * fresh quote by its registered AK, checked against the PCR policy exactly as in renewal. The
 * issuance batch also remembers the answer: the same finish sent again after its answer was lost
 * gets that answer, not a replay refusal (`finish-done.ts`).
 *
 * @example
 * ```ts
 * const b = await issuer.recoverBegin({ caChain: [caDer] }, ctx);
 * const id = await issuer.recoverFinish({ sessionId: b.sessionId, csr, caSignature }, ctx);
 * ```
 */
import { verify, X509Certificate } from 'node:crypto';
import { IssuerError } from '../errors.ts';
import { gatewayId, parseSpiffeId } from '../spiffe/id.ts';
import { parseCertificate } from '../svid/certificate.ts';
import { parseCsr } from '../svid/csr.ts';
import { caPopSignedData } from '../svid/pop.ts';
import type { IssuedIdentity, RecoverBeginResponse, RecoverFinishRequest } from '../upstream/protocol.ts';
import { type AuditInfo, type IssuerCore, methodDisabled, type RequestContext } from './core.ts';
import { idempotentFinish, type Remember } from './finish-done.ts';
import { type GatewayRecord, type IssuedRecord, K, type SessionRecord } from './records.ts';
import { checkServerNames } from './server-names.ts';
import { tpmRenew } from './tpm-method.ts';
import * as shape from './validate.ts';

const b64url = (b: Uint8Array): string => Buffer.from(b).toString('base64url');

/** The delegated CA presented, checked; its gateway's record (usable) and its serial. */
async function checkCa(
  core: IssuerCore,
  der: Uint8Array,
  info: AuditInfo,
): Promise<{ gw: GatewayRecord; serial: string; cert: X509Certificate }> {
  let cert: X509Certificate;
  let parts: ReturnType<typeof parseCertificate>;
  try {
    cert = new X509Certificate(Buffer.from(der));
    parts = parseCertificate(der);
  } catch {
    throw new IssuerError('ERR_ISSUER_CHAIN_INVALID', 'the delegated CA certificate does not parse');
  }
  if (!core.roots().some((r) => cert.checkIssued(r) && cert.verify(r.publicKey)))
    throw new IssuerError('ERR_ISSUER_CHAIN_INVALID', 'the delegated CA was not signed by this issuer');
  const now = core.clock.now();
  if (now < parts.notBefore || now >= parts.notAfter)
    throw new IssuerError('ERR_ISSUER_CA_EXPIRED', 'the delegated CA is expired or not yet valid', {
      notAfter: parts.notAfter,
    });
  const unknown = (why: string): IssuerError =>
    new IssuerError('ERR_ISSUER_CA_UNKNOWN', `not a delegated CA this issuer issued to that gateway: ${why}`);
  if (!cert.ca || parts.uris.length !== 1) throw unknown('not a CA with one URI SAN');
  const spiffeId = parts.uris[0] as string;
  let id: ReturnType<typeof parseSpiffeId>;
  try {
    id = parseSpiffeId(spiffeId);
  } catch {
    throw unknown('its URI SAN is not a SPIFFE ID');
  }
  const [g0, name] = id.segments;
  if (
    id.trustDomain !== core.trustDomain ||
    id.segments.length !== 2 ||
    g0 !== 'gateway' ||
    name === undefined
  )
    throw unknown(`${spiffeId} is not a gateway ID of ${core.trustDomain}`);
  info.gateway = name;
  info.spiffeId = spiffeId;
  const issued = await core.store.get<IssuedRecord>(K.issued(parts.serialHex));
  if (issued === undefined || issued.kind !== 'device-ca')
    throw unknown(`serial ${parts.serialHex} is not recorded`);
  if (issued.gateway !== name || issued.spiffeId !== gatewayId(core.trustDomain, name))
    throw unknown(`serial ${parts.serialHex} belongs to another gateway`);
  if (core.isRevokedSerial(parts.serialHex))
    throw new IssuerError('ERR_ISSUER_REVOKED', `delegated CA ${parts.serialHex} is revoked`);
  // A revoked gateway is also disabled; as at attestation, 'disabled' is reported first.
  const gw = await core.checkGatewayUsable(name);
  if (gw === undefined)
    throw new IssuerError('ERR_ISSUER_NOT_REGISTERED', `gateway ${name} is not registered`);
  if (!(gw.deviceCas ?? []).some((c) => c.serial === parts.serialHex && c.notAfter > now))
    throw unknown(`serial ${parts.serialHex} is not among gateway ${name}'s delegated CAs`);
  info.method = gw.method;
  return { gw, serial: parts.serialHex, cert };
}

export async function recoverBegin(
  core: IssuerCore,
  body: unknown,
  info: AuditInfo,
): Promise<RecoverBeginResponse> {
  const req = shape.recoverBegin(body);
  const { gw, serial } = await checkCa(core, req.caChain[0] as Uint8Array, info);
  await core.limitGateway(gw.name);
  const tpm = gw.method === 'tpm' ? core.methods.tpm : undefined;
  if (gw.method === 'tpm' && tpm === undefined) throw methodDisabled('tpm');
  const session: SessionRecord = {
    id: b64url(core.random.bytes(18)),
    kind: 'recover',
    method: gw.method,
    nonce: core.random.bytes(32),
    expiresAt: core.clock.now() + core.sessionTtlMs,
    gateway: gw.name,
    caSerial: serial,
    caCertificate: req.caChain[0] as Uint8Array,
    ...(tpm === undefined ? {} : { pcrSelection: tpm.pcrSelection }),
  };
  await core.store.batch([{ type: 'put', key: K.session(session.id), value: session }]);
  return {
    sessionId: session.id,
    nonce: session.nonce,
    expiresAt: session.expiresAt,
    ...(session.pcrSelection === undefined ? {} : { pcrSelection: session.pcrSelection }),
  };
}

export async function recoverFinish(
  core: IssuerCore,
  body: unknown,
  ctx: RequestContext,
  info: AuditInfo,
): Promise<IssuedIdentity> {
  const req = shape.recoverFinish(body);
  const serverNames = checkServerNames(req.serverNames, core.serverNames);
  return idempotentFinish(core, 'recover', req, ctx, info, (remember) =>
    recoverOnSession(core, req, serverNames, remember, ctx, info),
  );
}

function recoverOnSession(
  core: IssuerCore,
  req: RecoverFinishRequest,
  serverNames: readonly string[],
  remember: Remember,
  ctx: RequestContext,
  info: AuditInfo,
): Promise<IssuedIdentity> {
  return core.withSession(req.sessionId, 'recover', async (s, consume) => {
    info.gateway = s.gateway;
    if (s.caCertificate === undefined)
      throw new IssuerError('ERR_ISSUER_SESSION_UNKNOWN', 'not a recovery session');
    // Everything begin checked, again: the CA may have expired or been revoked, the gateway disabled.
    const { gw, cert } = await checkCa(core, s.caCertificate, info);
    if (gw.name !== s.gateway)
      throw new IssuerError('ERR_ISSUER_SESSION_UNKNOWN', 'recovery session belongs to another gateway');
    await core.limitGateway(gw.name);
    const csr = parseCsr(req.csr);
    const caCsr = req.caCsr === undefined ? undefined : parseCsr(req.caCsr);
    let ok = false;
    try {
      ok = verify(
        'sha256',
        caPopSignedData(s.nonce, csr.spki),
        { key: cert.publicKey, dsaEncoding: 'der' },
        req.caSignature,
      );
    } catch {
      ok = false;
    }
    if (!ok)
      throw new IssuerError(
        'ERR_ISSUER_POP_INVALID',
        'the signature by the delegated CA key does not verify',
      );
    const next =
      gw.method === 'tpm' ? { ...gw, firmware: tpmRenew(core, gw, s, req, csr.spki, 'recover') } : gw;
    const done = remember(gw.name);
    return core.issue(
      next,
      csr.spki,
      caCsr?.spki,
      serverNames,
      'recover',
      consume,
      ctx,
      info,
      undefined,
      done,
    );
  });
}
