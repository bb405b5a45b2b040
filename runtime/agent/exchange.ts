/**
 * One identity exchange with one upstream endpoint, in three ways:
 * - `attest`: first boot, or when nothing else is left (a fresh attestation, always a new CA);
 * - `renew`: mTLS with the current SVID, a fresh quote on the same AK when the attestor quotes;
 * - `recover`: the upstream SVID has expired but the delegated CA is still valid — proof of
 *   possession of the CA key (`/v1/recover/begin|finish`, ECDSA over "edgeward ca-pop v1" ‖ nonce
 *   ‖ CSR SPKI), with a fresh quote when the attestor quotes (the PCR policy is never bypassed).
 *
 * A fresh key for the SVID is made for every exchange, and one for the delegated CA when it is due
 * (in the TPM when the attestor is one, see ca-keys.ts; always on attestation; on renewal and recovery when the agent says so — otherwise the current
 * CA and its key carry over and the issuer, sent no caCsr, re-signs only the SVID). The private
 * keys stay in memory until the agent commits the whole record in one store batch. The `onStep`
 * hook marks the points where a power cut matters (kill -9 tests): after key generation and after
 * the issuer answered; the agent adds `stored` after its batch.
 *
 * A finish whose answer did not arrive (any of the three) is kept and sent again first, unchanged,
 * on the next endpoint or attempt (`PendingFinish`): the issuer answers the same finish again
 * (runtime/issuer/finish-done.ts), so a lost answer costs neither a join token, nor a new begin
 * and a fresh quote, nor a second issuance.
 *
 * @example
 * ```ts
 * const got = await exchange({ mode: 'renew', current }, endpoint, { attestor, trustDomain, newKey, now });
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
import { caPopSignedData } from '../svid/pop.ts';
import { spkiOf } from '../svid/signer.ts';
import { shouldFailOver } from '../upstream/failover.ts';
import {
  type AttestBeginResponse,
  type AttestFinishRequest,
  type IssuedIdentity,
  PATHS,
  type RecoverBeginRequest,
  type RecoverBeginResponse,
  type RecoverFinishRequest,
  type RenewBeginResponse,
  type RenewFinishRequest,
} from '../upstream/protocol.ts';
import type { CallOptions, UpstreamEndpoint } from '../upstream/types.ts';
import { type CaKeyBackend, type CaKeys, caKeysFor } from './ca-keys.ts';
import { checkIssued, type LiveIdentity, liveIdentity } from './identity.ts';

export type RotationStep = 'keys-generated' | 'issuer-answered' | 'stored';
export type ExchangeMode = 'attest' | 'renew' | 'recover';

/** What an exchange starts from: nothing (attest), a valid SVID (renew), a valid CA (recover). */
export type ExchangePlan =
  | { readonly mode: 'attest' }
  | { readonly mode: 'renew'; readonly current: LiveIdentity; readonly renewCa: boolean }
  | { readonly mode: 'recover'; readonly current: LiveIdentity; readonly renewCa: boolean };

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
   * Where a finish whose answer did not arrive is kept for the next try (the rotation owns one):
   * without it, a lost answer would be followed by a new begin (a spent join token, a fresh quote,
   * a second issuance).
   */
  readonly pendingFinish?: PendingFinish;
}

export interface ExchangeResult {
  readonly record: GatewayRecord;
  readonly live: LiveIdentity;
  readonly bundle: DecodedBundle & { json: string };
}

/** The fresh SVID key and its CSR. */
interface SvidKeys {
  readonly svidKey: KeyObject;
  readonly csr: Buffer;
  readonly spki: Uint8Array;
}

/**
 * A new delegated CA key, made only when the issuer has answered the begin step (not for every
 * attempt while it is away: a TPM key costs a TPM2_Create and an object slot), and released when
 * the exchange fails after making it.
 */
class NewCaKey {
  readonly #caKeys: CaKeys;
  #made: { key: CaKey; backend: CaKeyBackend; stored: Uint8Array; csr: Buffer } | undefined;

  constructor(caKeys: CaKeys) {
    this.#caKeys = caKeys;
  }

  get made():
    | { readonly key: CaKey; readonly backend: CaKeyBackend; readonly stored: Uint8Array }
    | undefined {
    return this.#made;
  }

  /** Make the key (once; in the TPM when the attestor is one) and give its CSR. */
  async csr(): Promise<Buffer> {
    if (this.#made === undefined) {
      const ca = await this.#caKeys.create();
      this.#made = { ...ca, backend: this.#caKeys.backend, csr: await createCaCsr(ca.key) };
    }
    return this.#made.csr;
  }

  /** The exchange failed: release the key it made (a TPM key is flushed). */
  async discard(): Promise<void> {
    await this.#made?.key.close().catch(() => {});
  }
}

/** The delegated CA of an exchange: the current one kept, or a new one. */
type CaPlan = { readonly kept: LiveIdentity } | { readonly fresh: NewCaKey };

/** A finish sent but not answered, with the keys and CA plan its answer goes with. */
interface HeldFinish {
  readonly mode: ExchangeMode;
  readonly path: string;
  readonly body: AttestFinishRequest | RenewFinishRequest | RecoverFinishRequest;
  /** The client SVID a renewal finish went with (mTLS): sent again with it. */
  readonly options?: CallOptions;
  readonly svid: SvidKeys;
  readonly ca: CaPlan;
}

/**
 * A finish sent but not answered (timeout, reset, 5xx, a replica gone after its COMMIT): the
 * issuer may have issued and consumed the session (and a join token). The next attempt of the
 * same way, on this endpoint or the next, sends the very same finish first (same session, same
 * CSRs, same proof or quote, the same client SVID): the issuer answers a finish it already
 * answered with the same identity (runtime/issuer/finish-done.ts). Only when that is refused (the
 * session is gone and was never answered, or expired), or the way changed (the SVID expired
 * meanwhile: renew gave way to recover), does the agent start over with a new begin. The keys
 * stay in memory only.
 */
export class PendingFinish {
  #held: HeldFinish | undefined;

  get held(): HeldFinish | undefined {
    return this.#held;
  }

  hold(h: HeldFinish): void {
    this.#held = h;
  }

  /** Forget the held finish; with `discard`, release its new CA key (a TPM key is flushed). */
  async drop(discard: boolean): Promise<void> {
    const h = this.#held;
    this.#held = undefined;
    if (discard && h !== undefined && 'fresh' in h.ca) await h.ca.fresh.discard();
  }
}

/** The fields of a quote, when the attestor quotes and the issuer asked for one. */
type QuoteFields = Pick<RenewFinishRequest, 'quote' | 'signature' | 'pcrValues'>;

export async function exchange(
  plan: ExchangePlan,
  ep: UpstreamEndpoint,
  deps: ExchangeDeps,
): Promise<ExchangeResult> {
  const caKeys = deps.caKeys ?? caKeysFor(deps.attestor, deps.newKey);
  const pending = deps.pendingFinish;
  const held = pending?.held;
  // Another way now (the SVID expired meanwhile): the held finish cannot be asked for again.
  if (held !== undefined && held.mode !== plan.mode) await pending?.drop(true);
  else if (held !== undefined && pending !== undefined) {
    const again = await retryFinish(ep, held, pending);
    if (again !== undefined) {
      try {
        const out = await assemble(again, held.svid, held.ca, held.mode, deps, caKeys);
        await pending.drop(false);
        return out;
      } catch (err) {
        await pending.drop(true);
        throw err;
      }
    }
  }
  const svid = newSvidKeys(deps);
  const ca: CaPlan =
    plan.mode === 'attest' || plan.renewCa ? { fresh: new NewCaKey(caKeys) } : { kept: plan.current };
  await deps.onStep?.('keys-generated');
  try {
    const issued =
      plan.mode === 'attest'
        ? await attest(ep, deps, svid, ca, pending)
        : plan.mode === 'renew'
          ? await renew(ep, deps, svid, ca, plan.current, pending)
          : await recover(ep, deps, svid, ca, plan.current, pending);
    await pending?.drop(false);
    return await assemble(issued, svid, ca, plan.mode, deps, caKeys);
  } catch (err) {
    // A finish whose answer may yet come again is kept, keys and all, for the next try.
    if (pending?.held !== undefined && shouldFailOver(err)) throw err;
    await pending?.drop(false);
    if ('fresh' in ca) await ca.fresh.discard();
    throw err;
  }
}

/**
 * The held finish sent again. Its answer, or undefined when the issuer refused it (never
 * answered, expired: start over); a failure another try may not share is thrown, still held.
 */
async function retryFinish(
  ep: UpstreamEndpoint,
  held: HeldFinish,
  pending: PendingFinish,
): Promise<IssuedIdentity | undefined> {
  try {
    return await ep.post<IssuedIdentity>(held.path, held.body, held.options);
  } catch (err) {
    if (shouldFailOver(err)) throw err;
    await pending.drop(true);
    return undefined;
  }
}

function newSvidKeys(deps: ExchangeDeps): SvidKeys {
  const svidKey = deps.newKey();
  return { svidKey, csr: createCsr(svidKey), spki: spkiOf(svidKey) };
}

const caCsrOf = async (ca: CaPlan): Promise<{ caCsr?: Buffer }> =>
  'fresh' in ca ? { caCsr: await ca.fresh.csr() } : {};

const namesOf = (deps: ExchangeDeps): { serverNames?: string[] } =>
  deps.serverNames !== undefined && deps.serverNames.length > 0 ? { serverNames: [...deps.serverNames] } : {};

async function attest(
  ep: UpstreamEndpoint,
  deps: ExchangeDeps,
  keys: SvidKeys,
  ca: CaPlan,
  pending: PendingFinish | undefined,
): Promise<IssuedIdentity> {
  if (!('fresh' in ca)) throw new TypeError('attestation always obtains a new delegated CA');
  const beginReq = await deps.attestor.begin();
  const challenge = await ep.post<AttestBeginResponse>(PATHS.attestBegin, beginReq);
  checkShape(challenge, ['sessionId', 'nonce'], 'attest/begin');
  const proof = await deps.attestor.answer(challenge, keys.spki);
  const finish: AttestFinishRequest = {
    sessionId: challenge.sessionId,
    csr: keys.csr,
    caCsr: await ca.fresh.csr(),
    ...namesOf(deps),
    ...proof,
  };
  pending?.hold({ mode: 'attest', path: PATHS.attestFinish, body: finish, svid: keys, ca });
  return ep.post<IssuedIdentity>(PATHS.attestFinish, finish);
}

async function renew(
  ep: UpstreamEndpoint,
  deps: ExchangeDeps,
  keys: SvidKeys,
  ca: CaPlan,
  current: LiveIdentity,
  pending: PendingFinish | undefined,
): Promise<IssuedIdentity> {
  const auth = { clientSvid: current.svid };
  const begin = await ep.post<RenewBeginResponse>(PATHS.renewBegin, {}, auth);
  checkShape(begin, ['sessionId', 'nonce'], 'renew/begin');
  const req: RenewFinishRequest = {
    sessionId: begin.sessionId,
    csr: keys.csr,
    ...(await caCsrOf(ca)),
    ...namesOf(deps),
    ...(await quoteFields(deps.attestor, begin, keys.spki)),
  };
  pending?.hold({ mode: 'renew', path: PATHS.renewFinish, body: req, options: auth, svid: keys, ca });
  return ep.post<IssuedIdentity>(PATHS.renewFinish, req, auth);
}

/** Renewal of an expired SVID by proof of possession of the still-valid delegated CA key. */
async function recover(
  ep: UpstreamEndpoint,
  deps: ExchangeDeps,
  keys: SvidKeys,
  ca: CaPlan,
  current: LiveIdentity,
  pending: PendingFinish | undefined,
): Promise<IssuedIdentity> {
  const beginReq: RecoverBeginRequest = { caChain: [...current.ca.chainDer] };
  const begin = await ep.post<RecoverBeginResponse>(PATHS.recoverBegin, beginReq);
  checkShape(begin, ['sessionId', 'nonce'], 'recover/begin');
  // DER ECDSA-SHA256 through the CA key seam (TPM2_Sign when the CA key is in the TPM).
  const caSignature = await current.ca.key.sign(caPopSignedData(begin.nonce, keys.spki));
  const req: RecoverFinishRequest = {
    sessionId: begin.sessionId,
    csr: keys.csr,
    ...(await caCsrOf(ca)),
    ...namesOf(deps),
    caSignature,
    ...(await quoteFields(deps.attestor, begin, keys.spki)),
  };
  pending?.hold({ mode: 'recover', path: PATHS.recoverFinish, body: req, svid: keys, ca });
  return ep.post<IssuedIdentity>(PATHS.recoverFinish, req);
}

async function quoteFields(
  attestor: Attestor,
  begin: { readonly nonce: Uint8Array; readonly pcrSelection?: string },
  spki: Uint8Array,
): Promise<QuoteFields> {
  if (!attestor.supports.pcrs || begin.pcrSelection === undefined) return {};
  const evidence = await attestor.quote(begin.nonce, spki, begin.pcrSelection);
  return { quote: evidence.quote, signature: evidence.signature, pcrValues: evidence.pcrValues };
}

/** Check the issuer's answer and build the record and identity to commit. */
async function assemble(
  issued: IssuedIdentity,
  keys: SvidKeys,
  ca: CaPlan,
  mode: ExchangeMode,
  deps: ExchangeDeps,
  caKeys: CaKeys,
): Promise<ExchangeResult> {
  checkShape(issued, ['spiffeId', 'svidChain', 'deviceCaChain', 'bundle'], 'issued identity');
  const kept = 'kept' in ca ? ca.kept : undefined;
  // Kept CA: the current chain and key carry over into the new record unchanged.
  const caFields = caRecordFields(ca, issued);
  const gotCa = Array.isArray(issued.deviceCaChain) && issued.deviceCaChain.length > 0;
  if (gotCa === (kept !== undefined))
    throw new AgentError(
      'ERR_UPSTREAM_PROTOCOL',
      kept !== undefined
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
    svidKey: keys.svidKey.export({ format: 'der', type: 'pkcs8' }),
    ...caFields,
    obtainedAt: now,
    via: mode,
    nextNonce: issued.nextNonce ?? new Uint8Array(0),
  };
  const live = liveIdentity(record, caKeys.open);
  checkIssued(live, { trustDomain: deps.trustDomain, roots: bundle.roots, now });
  return { record, live, bundle: { ...bundle, json: issued.bundle } };
}

/** The delegated CA part of the record: the kept one unchanged, or the new key with its chain. */
function caRecordFields(
  ca: CaPlan,
  issued: IssuedIdentity,
): Pick<GatewayRecord, 'caChain' | 'caKeyBackend' | 'caKey'> {
  if ('kept' in ca) {
    const { caChain, caKeyBackend, caKey } = ca.kept.record;
    return { caChain, caKeyBackend, caKey };
  }
  const made = ca.fresh.made;
  if (made === undefined) throw new TypeError('the exchange asked for a new CA but made no key');
  return { caChain: issued.deviceCaChain, caKeyBackend: made.backend, caKey: made.stored };
}

function checkShape(v: unknown, fields: readonly string[], what: string): void {
  if (v === null || typeof v !== 'object')
    throw new AgentError('ERR_UPSTREAM_PROTOCOL', `${what}: answer is not a map`);
  for (const f of fields)
    if ((v as Record<string, unknown>)[f] === undefined)
      throw new AgentError('ERR_UPSTREAM_PROTOCOL', `${what}: answer lacks ${f}`);
}
