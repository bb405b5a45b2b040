/**
 * TEST ONLY: the smallest attestor (join-token style, no TPM) for the rotation logic tests; the
 * integration tests use the real TPM attestor against the simulator or swtpm.
 */
import { Attestor, type AttestorSupports, type AttestProof } from '../../../../attestors/attestor.ts';
import type { AttestBeginRequest } from '../../../../runtime/upstream/protocol.ts';

export class TestTokenAttestor extends Attestor {
  readonly method = 'join-token' as const;
  readonly supports: AttestorSupports = { pcrs: false, ekCertificate: false, sealing: false };
  begins = 0;
  readonly #token: string;

  constructor(token = 'test-token') {
    super();
    this.#token = token;
  }
  protected async _start(): Promise<void> {}
  protected async _begin(): Promise<AttestBeginRequest> {
    this.begins++;
    return { method: 'join-token', token: this.#token };
  }
  protected async _answer(): Promise<AttestProof> {
    return { method: 'join-token' };
  }
  protected async _close(): Promise<void> {}
}
