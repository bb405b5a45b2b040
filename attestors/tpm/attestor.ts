/**
 * The TPM attestor (ARCHITECTURE.md §3): the gateway side of TPM 2.0 attestation.
 *
 * - `begin()`: the EK public area and certificate (from NV, whichever of L-2/L-1/H-3 exist, in
 *   `ekPreference` order) and the AK public area (ECC P-256 restricted signing key, a primary in
 *   the endorsement hierarchy: recreated identically for every use, so renewals quote with the same
 *   AK after reboots without keeping a key blob).
 * - `answer()`: ActivateCredential on the issuer's challenge, then a quote of the requested PCRs with
 *   qualifying data SHA-256(nonce ‖ CSR SPKI DER).
 * - `quote()`: fresh evidence for renewal. `seal()`/`unseal()`: a ≤ 128-byte secret sealed under the
 *   ECC storage primary, optionally to sha256 PCR values.
 *
 * Every transient object and session it creates is flushed before the call returns.
 *
 * @example
 * ```ts
 * const attestor = new TpmAttestor({ transport: await openTransport('device:/dev/tpmrm0'), random });
 * await attestor.start();
 * const begin = await attestor.begin();
 * ```
 */
import type { Logger } from '../../runtime/core/logger.ts';
import { nullLogger } from '../../runtime/core/logger.ts';
import type { Random } from '../../runtime/core/random.ts';
import type { AttestBeginRequest, AttestBeginResponse } from '../../runtime/upstream/protocol.ts';
import {
  Attestor,
  type AttestorSupports,
  type AttestProof,
  type QuoteEvidence,
  type SealOptions,
} from '../attestor.ts';
import { AttestorError } from '../errors.ts';
import { activateCredential } from './activate.ts';
import { type EkInfo, findEk } from './ek.ts';
import { quotePcrs, withAk } from './quote.ts';
import { sealData, unsealData } from './seal.ts';
import { createSigningKey, TpmSigningKey } from './signing-key.ts';
import type { TpmTransport } from './transport/transport.ts';
import type { EkTemplateName } from './verify/ek-public.ts';
import { qualifyingData } from './verify/qualifying-data.ts';
import { parsePcrSelection } from './wire/pcr-selection.ts';

export interface TpmAttestorOptions {
  readonly transport: TpmTransport;
  /** Nonces for policy sessions. */
  readonly random: Random;
  /** Which certified EK to present, first found wins (default L-2, L-1, H-3). */
  readonly ekPreference?: readonly EkTemplateName[];
  /** PCRs quoted when the issuer does not say (default `sha256:0,1,2,3,4,5,6,7`). */
  readonly pcrSelection?: string;
  readonly logger?: Logger;
  /** Close the transport on `close()` (default true). */
  readonly ownsTransport?: boolean;
}

export class TpmAttestor extends Attestor {
  readonly method = 'tpm' as const;
  readonly supports: AttestorSupports = { pcrs: true, ekCertificate: true, sealing: true };
  readonly #o: TpmAttestorOptions;
  #ek: EkInfo | undefined;
  readonly #keys = new Set<TpmSigningKey>();
  #closed = false;

  constructor(options: TpmAttestorOptions) {
    super();
    parsePcrSelection(options.pcrSelection ?? 'sha256:0');
    this.#o = options;
  }

  get #t(): TpmTransport {
    return this.#o.transport;
  }

  /** The EK presented in `begin()` (after start). */
  get ek(): EkInfo | undefined {
    return this.#ek;
  }

  protected async _start(): Promise<void> {
    this.#ek = await findEk(this.#t, this.#o.ekPreference);
    (this.#o.logger ?? nullLogger).info('tpm attestor ready', {
      ek: this.#ek?.template,
      certified: this.#ek?.certificate !== undefined,
    });
  }

  #requireEk(): EkInfo {
    if (this.#ek === undefined) throw new AttestorError('ERR_TPM_EK_MISSING', 'no endorsement key');
    return this.#ek;
  }

  protected async _begin(): Promise<AttestBeginRequest> {
    const ek = this.#requireEk();
    const akPublic = await withAk(this.#t, async (ak) => ak.public);
    return {
      method: 'tpm',
      ekPublic: ek.public,
      ...(ek.certificate !== undefined ? { ekCertificate: ek.certificate } : {}),
      akPublic,
    };
  }

  protected async _answer(challenge: AttestBeginResponse, csrSpkiDer: Uint8Array): Promise<AttestProof> {
    const ek = this.#requireEk();
    const { credentialBlob, encryptedSecret } = challenge;
    if (credentialBlob === undefined || encryptedSecret === undefined)
      throw new AttestorError('ERR_ATTEST_CREDENTIAL', 'the challenge carries no credential to activate');
    const selection = parsePcrSelection(
      challenge.pcrSelection ?? this.#o.pcrSelection ?? 'sha256:0,1,2,3,4,5,6,7',
    );
    return withAk(this.#t, async (ak) => {
      const activatedSecret = await activateCredential(
        this.#t,
        ek,
        ak,
        credentialBlob,
        encryptedSecret,
        this.#o.random,
      );
      const q = await quotePcrs(this.#t, ak, qualifyingData(challenge.nonce, csrSpkiDer), selection);
      return {
        method: 'tpm',
        activatedSecret,
        quote: q.quote,
        signature: q.signature,
        pcrValues: q.pcrValues,
      };
    });
  }

  protected override async _quote(
    nonce: Uint8Array,
    csrSpkiDer: Uint8Array,
    selection: string,
  ): Promise<QuoteEvidence> {
    const sel = parsePcrSelection(selection);
    return withAk(this.#t, (ak) => quotePcrs(this.#t, ak, qualifyingData(nonce, csrSpkiDer), sel));
  }

  protected override _seal(data: Uint8Array, options: SealOptions): Promise<Uint8Array> {
    const pcrs = options.pcrs ?? [];
    if (pcrs.some((p) => !Number.isInteger(p) || p < 0 || p > 23))
      throw new AttestorError('ERR_ATTESTOR_INPUT', 'PCR indices must be 0..23');
    return sealData(this.#t, data, pcrs, options.expected);
  }

  protected override _unseal(blob: Uint8Array): Promise<Uint8Array> {
    return unsealData(this.#t, blob, this.#o.random);
  }

  /** A new TPM-resident ECDSA P-256 signing key under the storage primary: its blob (signing-key.ts). */
  async createSigningKey(): Promise<Buffer> {
    this.#assertOpen();
    return createSigningKey(this.#t);
  }

  /**
   * The signing key of a blob from `createSigningKey` (ERR_ATTESTOR_KEY_BLOB if it is not one):
   * loaded at first use, kept loaded, flushed by `close()` of the key or of this attestor.
   */
  signingKey(blob: Uint8Array): TpmSigningKey {
    this.#assertOpen();
    const key = new TpmSigningKey(this.#t, blob);
    this.#keys.add(key);
    return key;
  }

  #assertOpen(): void {
    if (this.#closed) throw new AttestorError('ERR_ATTESTOR_CLOSED', 'tpm attestor is closed');
  }

  protected async _close(): Promise<void> {
    this.#closed = true;
    for (const k of this.#keys) await k.close();
    this.#keys.clear();
    if (this.#o.ownsTransport !== false) await this.#t.close();
  }
}
