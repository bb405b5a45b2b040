/**
 * The attestor contract, shared by the TPM, join-token and x509pop attestors (STYLE.md rule 9).
 *
 * An attestor is the gateway side of an attestation method. The agent drives it:
 *
 * ```ts
 * await attestor.start();
 * const begin = await attestor.begin();                 // → POST /v1/attest/begin
 * const proof = await attestor.answer(challenge, csrSpkiDer); // → POST /v1/attest/finish
 * const fresh = await attestor.quote(nonce, csrSpkiDer, selection); // renewal evidence (tpm)
 * const blob = await attestor.seal(dataKey);            // only when supports.sealing
 * await attestor.close();
 * ```
 *
 * The public methods check state and inputs, then call the `_impl` methods that each attestor
 * provides. `close()` is idempotent; every call after it (or before `start()`, or a second
 * `start()`) fails with `ERR_ATTESTOR_CLOSED`; an argument out of contract with `ERR_ATTESTOR_INPUT`.
 * The conformance suite in `test/conformance/attestor.ts` runs against every implementation, with
 * feature tests switched on from `supports`.
 */
import type {
  AttestBeginRequest,
  AttestBeginResponse,
  AttestMethod,
  AttestProof,
} from '../runtime/upstream/protocol.ts';
import { AttestorError } from './errors.ts';

/** The method-specific part of `AttestFinishRequest` (without sessionId and CSRs), defined by the protocol. */
export type { AttestProof };

/** What an attestor can do beyond the basic begin/answer exchange. */
export interface AttestorSupports {
  /** Quotes PCRs (renewal carries fresh evidence). */
  readonly pcrs: boolean;
  /** Presents an EK certificate from the TPM's NV. */
  readonly ekCertificate: boolean;
  /** Can seal and unseal a 32-byte data key (optionally to PCR values). */
  readonly sealing: boolean;
}

/** A fresh quote for renewal (tpm only). */
export interface QuoteEvidence {
  readonly quote: Uint8Array;
  readonly signature: Uint8Array;
  readonly pcrValues: Uint8Array[];
}

/** Options for sealing: bind to the current values of these PCRs (sha256 bank), or not at all. */
export interface SealOptions {
  readonly pcrs?: readonly number[];
  /**
   * Seal to these expected sha256 values of `pcrs` (index → digest) instead of the current ones:
   * before a firmware update, the values the new firmware's signed manifest promises.
   */
  readonly expected?: Readonly<Record<number, Uint8Array>>;
}

export abstract class Attestor {
  abstract readonly method: AttestMethod;
  abstract readonly supports: AttestorSupports;
  #state: 'new' | 'started' | 'closed' = 'new';

  async start(): Promise<void> {
    this.#check('start', 'new');
    await this._start();
    this.#state = 'started';
  }

  /** The begin request for this method. */
  async begin(): Promise<AttestBeginRequest> {
    this.#check('begin');
    return this._begin();
  }

  /** Answer the issuer's challenge; the quote (tpm) binds `csrSpkiDer` through the qualifying data. */
  async answer(challenge: AttestBeginResponse, csrSpkiDer: Uint8Array): Promise<AttestProof> {
    this.#check('answer');
    if (challenge.nonce.length < 16)
      throw new AttestorError('ERR_ATTESTOR_INPUT', 'challenge nonce must be at least 16 bytes');
    return this._answer(challenge, csrSpkiDer);
  }

  /** Fresh evidence for renewal, bound to `nonce` and `csrSpkiDer`. */
  async quote(nonce: Uint8Array, csrSpkiDer: Uint8Array, selection: string): Promise<QuoteEvidence> {
    this.#check('quote');
    if (!this.supports.pcrs)
      throw new AttestorError('ERR_ATTESTOR_UNSUPPORTED', `${this.method} attestor does not quote`);
    return this._quote(nonce, csrSpkiDer, selection);
  }

  /** Seal `data` (≤ 128 bytes) so that only this device (and optionally these PCR values) can unseal it. */
  async seal(data: Uint8Array, options: SealOptions = {}): Promise<Uint8Array> {
    this.#check('seal');
    if (!this.supports.sealing)
      throw new AttestorError('ERR_ATTESTOR_UNSUPPORTED', `${this.method} attestor cannot seal`);
    if (data.length === 0 || data.length > 128)
      throw new AttestorError('ERR_ATTESTOR_INPUT', 'sealed data must be 1 to 128 bytes');
    return this._seal(data, options);
  }

  async unseal(blob: Uint8Array): Promise<Uint8Array> {
    this.#check('unseal');
    if (!this.supports.sealing)
      throw new AttestorError('ERR_ATTESTOR_UNSUPPORTED', `${this.method} attestor cannot seal`);
    return this._unseal(blob);
  }

  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    const wasStarted = this.#state === 'started';
    this.#state = 'closed';
    if (wasStarted) await this._close();
  }

  #check(op: string, want: 'new' | 'started' = 'started'): void {
    if (this.#state === 'closed')
      throw new AttestorError('ERR_ATTESTOR_CLOSED', `${this.method} attestor: ${op} after close`);
    if (this.#state !== want)
      throw new AttestorError(
        'ERR_ATTESTOR_CLOSED',
        `${this.method} attestor: ${op} called while ${this.#state}`,
      );
  }

  protected abstract _start(): Promise<void>;
  protected abstract _begin(): Promise<AttestBeginRequest>;
  protected abstract _answer(challenge: AttestBeginResponse, csrSpkiDer: Uint8Array): Promise<AttestProof>;
  protected _quote(_nonce: Uint8Array, _csrSpkiDer: Uint8Array, _selection: string): Promise<QuoteEvidence> {
    throw new AttestorError('ERR_ATTESTOR_UNSUPPORTED', `${this.method} attestor does not quote`);
  }
  protected _seal(_data: Uint8Array, _options: SealOptions): Promise<Uint8Array> {
    throw new AttestorError('ERR_ATTESTOR_UNSUPPORTED', `${this.method} attestor cannot seal`);
  }
  protected _unseal(_blob: Uint8Array): Promise<Uint8Array> {
    throw new AttestorError('ERR_ATTESTOR_UNSUPPORTED', `${this.method} attestor cannot seal`);
  }
  protected abstract _close(): Promise<void>;
}
