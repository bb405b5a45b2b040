/**
 * Renewal over mTLS: the gateway presents its current SVID (`peer.ts`); begin hands out a
 * single-use session with a nonce (pcrSelection for tpm); finish takes it (or the session handed
 * out with the last issuance), re-checks a tpm gateway's quote (`tpm-method.ts`) and issues a new
 * SVID (and a new delegated CA when the agent sent a CA CSR), consuming the session in the
 * issuance batch. The batch also remembers the answer, so the same finish sent again by the same
 * gateway after its answer was lost gets that answer, not a replay refusal (`finish-done.ts`).
 */
import { IssuerError } from '../errors.ts';
import { parseCsr } from '../svid/csr.ts';
import type { IssuedIdentity, RenewBeginResponse } from '../upstream/protocol.ts';
import type { AuditInfo, IssuerCore, RequestContext } from './core.ts';
import { idempotentFinish, type Remember } from './finish-done.ts';
import { authenticatePeer, authenticatePeerWith } from './peer.ts';
import { K } from './records.ts';
import { checkServerNames } from './server-names.ts';
import { sessionKey } from './sessions.ts';
import { tpmRenew } from './tpm-method.ts';
import * as shape from './validate.ts';

export async function renewBegin(
  core: IssuerCore,
  ctx: RequestContext,
  info: AuditInfo,
): Promise<RenewBeginResponse> {
  const gw = await authenticatePeer(core, ctx, info);
  const s = core.newRenewSession(gw, core.clock.now() + core.sessionTtlMs);
  await core.store.batch([{ type: 'put', key: K.session(s.id), value: s }]);
  return {
    sessionId: s.id,
    nonce: s.nonce,
    expiresAt: s.expiresAt,
    ...(s.pcrSelection === undefined ? {} : { pcrSelection: s.pcrSelection }),
  };
}

export async function renewFinish(
  core: IssuerCore,
  body: unknown,
  ctx: RequestContext,
  info: AuditInfo,
): Promise<IssuedIdentity> {
  // One round trip reads the SVID's issued record, the gateway record and the session.
  const key = sessionKey((body as { sessionId?: unknown } | null)?.sessionId);
  const peer = await authenticatePeerWith(core, ctx, info, key === undefined ? [] : [key]);
  const gw = peer.gw;
  const req = shape.renewFinish(body);
  const serverNames = checkServerNames(req.serverNames, core.serverNames);
  const preread = sessionKey(req.sessionId) === key ? { entry: peer.also[0] } : undefined;
  const issue = (remember: Remember): Promise<IssuedIdentity> =>
    core.withSession(
      req.sessionId,
      'renew',
      async (s, consume) => {
        if (s.gateway !== gw.name)
          throw new IssuerError('ERR_ISSUER_SESSION_UNKNOWN', 'renewal session belongs to another gateway');
        const csr = parseCsr(req.csr);
        const caCsr = req.caCsr === undefined ? undefined : parseCsr(req.caCsr);
        const next = gw.method === 'tpm' ? { ...gw, firmware: tpmRenew(core, gw, s, req, csr.spki) } : gw;
        const done = remember(gw.name);
        return core.issue(
          next,
          csr.spki,
          caCsr?.spki,
          serverNames,
          'renew',
          consume,
          ctx,
          info,
          peer.entry,
          done,
        );
      },
      preread,
    );
  return idempotentFinish(core, 'renew', req, ctx, info, issue, gw.name);
}
