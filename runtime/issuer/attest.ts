/**
 * Attestation (begin/finish), routed to the method's module (`tpm-method.ts`,
 * `join-token-method.ts`, `x509pop-method.ts`). Begin stores a single-use session with a nonce;
 * finish checks the method's proof and issues the gateway SVID and delegated CA in one batch
 * together with the session's consumption and what the method consumes (the join token) or
 * registers (auto), and the answer itself under `done/<sessionId>` so that the same finish sent
 * again after its answer was lost gets that answer, not a replay refusal (`finish-done.ts`).
 */
import { IssuerError } from '../errors.ts';
import { parseCsr } from '../svid/csr.ts';
import type { AttestBeginResponse, AttestFinishRequest, IssuedIdentity } from '../upstream/protocol.ts';
import type { AuditInfo, IssuerCore, RequestContext } from './core.ts';
import { idempotentFinish, type Remember } from './finish-done.ts';
import { joinTokenBegin, joinTokenFinish } from './join-token-method.ts';
import { type GatewayRecord, K, type Registration, type SessionRecord } from './records.ts';
import { checkServerNames } from './server-names.ts';
import type { StoreOp } from './store.ts';
import { tpmBegin, tpmFinish } from './tpm-method.ts';
import * as shape from './validate.ts';
import { x509popBegin, x509popFinish } from './x509pop-method.ts';

const b64url = (b: Uint8Array): string => Buffer.from(b).toString('base64url');

export async function attestBegin(
  core: IssuerCore,
  body: unknown,
  info: AuditInfo,
): Promise<AttestBeginResponse> {
  const req = shape.attestBegin(body);
  info.method = req.method;
  const session: SessionRecord = {
    id: b64url(core.random.bytes(18)),
    kind: 'attest',
    method: req.method,
    nonce: core.random.bytes(32),
    expiresAt: core.clock.now() + core.sessionTtlMs,
    gateway: '',
  };
  let extra: Partial<AttestBeginResponse> = {};
  if (req.method === 'join-token') await joinTokenBegin(core, req.token, session);
  else if (req.method === 'x509pop') await x509popBegin(core, req.chain, session);
  else extra = await tpmBegin(core, req, session);
  info.gateway = session.gateway;
  await core.checkGatewayUsable(session.gateway);
  await core.store.batch([{ type: 'put', key: K.session(session.id), value: session }]);
  return { sessionId: session.id, nonce: session.nonce, expiresAt: session.expiresAt, ...extra };
}

export async function attestFinish(
  core: IssuerCore,
  body: unknown,
  ctx: RequestContext,
  info: AuditInfo,
): Promise<IssuedIdentity> {
  const req = shape.attestFinish(body);
  info.method = req.method;
  const serverNames = checkServerNames(req.serverNames, core.serverNames);
  return idempotentFinish(core, 'attest', req, ctx, info, (remember) =>
    issueOnSession(core, req, serverNames, remember, ctx, info),
  );
}

function issueOnSession(
  core: IssuerCore,
  req: AttestFinishRequest,
  serverNames: readonly string[],
  remember: Remember,
  ctx: RequestContext,
  info: AuditInfo,
): Promise<IssuedIdentity> {
  return core.withSession(req.sessionId, 'attest', async (s, consume) => {
    info.gateway = s.gateway;
    if (s.method !== req.method)
      throw new IssuerError('ERR_ISSUER_BAD_REQUEST', `session is for ${s.method}, not ${req.method}`);
    await core.limitGateway(s.gateway);
    const csr = parseCsr(req.csr);
    const caCsr = parseCsr(req.caCsr);
    const now = core.clock.now();
    const ops: StoreOp[] = [...consume];
    let firmware: string | undefined;
    if (req.method === 'join-token') ops.push(...(await joinTokenFinish(core, s)));
    else if (req.method === 'x509pop') x509popFinish(core, s, csr.spki, req.signature);
    else firmware = await tpmFinish(core, s, req, csr.spki);
    if (s.registerKey !== undefined) {
      const reg: Registration = { name: s.gateway, createdAt: now, by: 'auto' };
      ops.push({ type: 'put', key: s.registerKey, value: reg });
    }
    const prev = await core.checkGatewayUsable(s.gateway);
    const gw: GatewayRecord = {
      ...(prev ?? { name: s.gateway, disabled: false, createdAt: now, maxNotAfter: 0 }),
      method: req.method,
      ...(s.akPublic === undefined ? {} : { akPublic: s.akPublic }),
      ...(s.ekHash === undefined ? {} : { ekHash: s.ekHash }),
      ...(firmware === undefined ? {} : { firmware }),
    };
    const done = remember(s.gateway);
    return core.issue(gw, csr.spki, caCsr.spki, serverNames, 'issue', ops, ctx, info, undefined, done);
  });
}
