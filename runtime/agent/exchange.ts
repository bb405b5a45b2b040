/**
 * One identity exchange with one upstream endpoint: attestation (first boot, or after a refusal)
 * or renewal (mTLS with the current SVID, fresh quote on the same AK when the attestor quotes).
 *
 * A fresh key for the SVID is made for every exchange, and one for the delegated CA when it is due
 * (in the TPM when the attestor is one, see ca-keys.ts; always on attestation; on renewal when the agent says so — otherwise the current CA and its key
 * carry over and the issuer, sent no caCsr, re-signs only the SVID). The private keys stay
 * in memory until the agent commits the whole record in one store batch. The `onStep` hook marks
 * the points where a power cut matters (kill -9 tests): after key generation and after the issuer
 * answered; the agent adds `stored` after its batch.
 *
 * @example
 * ```ts
 * const got = await exchange('renew', endpoint, { attestor, trustDomain, newKey, now }, current);
 * await store.batch([{ type: 'put', name: 'gateway', value: got.record }, ...]);
 * ```
 */
import type { KeyObject } from 'node:crypto';
import type { Attestor } from '../../attestors/attestor.ts';
import { AgentError } from '../errors.ts';
import type { GatewayRecord } from '../store/records.ts';
import { type DecodedBundle, decodeBundle } from '../svid/bundle.ts';
import { type CaKey, createCaCsr } from '../svid/ca-key.ts';
import { createCsr } from '../svid/csr.ts';
import { spkiOf } from '../svid/signer.ts';
import {
  type AttestBeginResponse,
  type AttestFinishRequest,
  type IssuedIdentity,
  PATHS,
  type RenewBeginResponse,
  type RenewFinishRequest,
} from '../upstream/protocol.ts';
import type { UpstreamEndpoint } from '../upstream/types.ts';
import { type CaKeys, caKeysFor } from './ca-keys.ts';
import { checkIssued, type LiveIdentity, liveIdentity } from './identity.ts';

export type RotationStep = 'keys-generated' | 'issuer-answered' | 'stored';
export type ExchangeMode = 'attest' | 'renew';

export interface ExchangeDeps {
  readonly attestor: Attestor;
  readonly trustDomain: string;
  /** A fresh EC P-256 private key for the SVID (injected: entropy comes from the composition root). */
  readonly newKey: () => KeyObject;
  /**
   * Where a new delegated CA key is made and a stored one opened (ca-keys.ts). Default
   * `caKeysFor(attestor, newKey)`: in the TPM when the attestor is a TPM, software otherwise.
   */
  readonly caKeys?: CaKeys;
  /** Current time for validity checks (the time floor applies). */
  readonly now: () => number;
  readonly onStep?: ((step: RotationStep) => void | Promise<void>) | undefined;
  /** Broker host names for DNS/IP SANs on the gateway SVID (see AttestFinishRequest). */
  readonly serverNames?: readonly string[] | undefined;
  /**
   * Renewal only: false keeps the current delegated CA (no caCsr sent; the CA renews at its own
   * half-life, not with every SVID). Attestation always obtains a new CA.
   */
  readonly renewCa?: boolean;
}

export interface ExchangeResult {
  readonly record: GatewayRecord;
  readonly live: LiveIdentity;
  readonly bundle: DecodedBundle & { json: string };
}

export async function exchange(
  mode: ExchangeMode,
  ep: UpstreamEndpoint,
  deps: ExchangeDeps,
  current?: LiveIdentity,
): Promise<ExchangeResult> {
  const keepCa = mode === 'renew' && deps.renewCa === false && current !== undefined;
  const svidKey = deps.newKey();
  const caKeys = deps.caKeys ?? caKeysFor(deps.attestor, deps.newKey);
  const ca: { key: CaKey; stored: Uint8Array } | undefined = keepCa ? undefined : await caKeys.create();
  const csr = createCsr(svidKey);
  const caCsr = ca === undefined ? undefined : await createCaCsr(ca.key);
  const spki = spkiOf(svidKey);
  await deps.onStep?.('keys-generated');
  const names =
    deps.serverNames !== undefined && deps.serverNames.length > 0
      ? { serverNames: [...deps.serverNames] }
      : {};
  let issued: IssuedIdentity;
  if (mode === 'attest') {
    const beginReq = await deps.attestor.begin();
    const challenge = await ep.post<AttestBeginResponse>(PATHS.attestBegin, beginReq);
    checkShape(challenge, ['sessionId', 'nonce'], 'attest/begin');
    const proof = await deps.attestor.answer(challenge, spki);
    // keepCa is renew-only: attestation always brings a CA key, so caCsr is set here.
    const finish: AttestFinishRequest = {
      sessionId: challenge.sessionId,
      csr,
      caCsr: caCsr as Buffer,
      ...names,
      ...proof,
    };
    issued = await ep.post<IssuedIdentity>(PATHS.attestFinish, finish);
  } else {
    if (current === undefined) throw new TypeError('renewal needs the current identity');
    const auth = { clientSvid: current.svid };
    const begin = await ep.post<RenewBeginResponse>(PATHS.renewBegin, {}, auth);
    checkShape(begin, ['sessionId', 'nonce'], 'renew/begin');
    const req: RenewFinishRequest = {
      sessionId: begin.sessionId,
      csr,
      ...(caCsr === undefined ? {} : { caCsr }),
      ...names,
    };
    if (deps.attestor.supports.pcrs && begin.pcrSelection !== undefined) {
      const evidence = await deps.attestor.quote(begin.nonce, spki, begin.pcrSelection);
      Object.assign(req, {
        quote: evidence.quote,
        signature: evidence.signature,
        pcrValues: evidence.pcrValues,
      });
    }
    issued = await ep.post<IssuedIdentity>(PATHS.renewFinish, req, auth);
  }
  checkShape(issued, ['spiffeId', 'svidChain', 'deviceCaChain', 'bundle'], 'issued identity');
  const gotCa = Array.isArray(issued.deviceCaChain) && issued.deviceCaChain.length > 0;
  if (gotCa === keepCa)
    throw new AgentError(
      'ERR_UPSTREAM_PROTOCOL',
      keepCa
        ? 'issuer re-signed a delegated CA that was not asked for'
        : 'issued identity lacks the device CA',
    );
  await deps.onStep?.('issuer-answered');
  let bundle: DecodedBundle;
  try {
    bundle = decodeBundle(issued.bundle);
  } catch (cause) {
    throw new AgentError('ERR_UPSTREAM_PROTOCOL', 'issued bundle does not decode', {}, { cause });
  }
  const now = deps.now();
  const record: GatewayRecord = {
    spiffeId: issued.spiffeId,
    svidChain: issued.svidChain,
    svidKey: svidKey.export({ format: 'der', type: 'pkcs8' }),
    // Kept CA: the current chain and key carry over into the new record unchanged.
    caChain: ca === undefined ? (current as LiveIdentity).record.caChain : issued.deviceCaChain,
    caKeyBackend: ca === undefined ? (current as LiveIdentity).record.caKeyBackend : ca.key.backend,
    caKey: ca === undefined ? (current as LiveIdentity).record.caKey : ca.stored,
    obtainedAt: now,
    via: mode,
    nextNonce: issued.nextNonce ?? new Uint8Array(0),
  };
  const live = liveIdentity(record, caKeys.open);
  checkIssued(live, { trustDomain: deps.trustDomain, roots: bundle.roots, now });
  return { record, live, bundle: { ...bundle, json: issued.bundle } };
}

function checkShape(v: unknown, fields: readonly string[], what: string): void {
  if (v === null || typeof v !== 'object')
    throw new AgentError('ERR_UPSTREAM_PROTOCOL', `${what}: answer is not a map`);
  for (const f of fields)
    if ((v as Record<string, unknown>)[f] === undefined)
      throw new AgentError('ERR_UPSTREAM_PROTOCOL', `${what}: answer lacks ${f}`);
}
