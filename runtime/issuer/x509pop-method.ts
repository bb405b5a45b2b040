/**
 * x509pop attestation, the issuer's side: begin verifies the factory chain (`x509pop.ts`) and
 * finds the gateway registered for its identity (or auto-registers it at finish when allowed);
 * finish checks the factory certificate is still valid and the proof of possession.
 */
import { X509Certificate } from 'node:crypto';
import { IssuerError } from '../errors.ts';
import { type IssuerCore, methodDisabled } from './core.ts';
import { K, type Registration, type SessionRecord } from './records.ts';
import { verifyFactoryChain, verifyPossession } from './x509pop.ts';

export async function x509popBegin(
  core: IssuerCore,
  chain: readonly Uint8Array[],
  session: SessionRecord,
): Promise<void> {
  const p = core.methods.x509pop;
  if (p === undefined) throw methodDisabled('x509pop');
  const { leaf, identity } = verifyFactoryChain(chain, p.roots, core.clock.now(), p.nameFrom);
  const reg = await core.store.get<Registration>(K.registration('x509', identity));
  if (reg === undefined && !p.autoRegister)
    throw new IssuerError('ERR_ISSUER_NOT_REGISTERED', `factory identity ${identity} is not registered`);
  session.gateway = reg?.name ?? identity;
  session.leaf = leaf.raw;
  if (reg === undefined) session.registerKey = K.registration('x509', identity);
}

export function x509popFinish(
  core: IssuerCore,
  s: SessionRecord,
  csrSpki: Uint8Array,
  signature: Uint8Array,
): void {
  if (core.methods.x509pop === undefined || s.leaf === undefined) throw methodDisabled('x509pop');
  const leaf = new X509Certificate(Buffer.from(s.leaf));
  if (core.clock.now() > Date.parse(leaf.validTo))
    throw new IssuerError('ERR_ISSUER_CHAIN_INVALID', 'factory certificate expired during attestation');
  verifyPossession(leaf, s.nonce, csrSpki, signature);
}
