/**
 * Reassembling one TPM response from a byte stream (brief §1.3): read at least the 10-byte header,
 * take `responseSize` from offset 2, keep reading until that many bytes arrived. A size below the
 * header or above `MAX_RESPONSE_BYTES`, or bytes beyond the declared size, are malformed: no
 * response is ever guessed at.
 */
import { AttestorError } from '../../errors.ts';

/** No TPM answers more than this (swtpm 4096, hardware ≤ 4096; a generous bound). */
export const MAX_RESPONSE_BYTES = 16 * 1024;
export const HEADER_BYTES = 10;

export class ResponseAssembler {
  #chunks: Buffer[] = [];
  #have = 0;

  /** Add received bytes; returns the complete response once it is all there. */
  push(chunk: Uint8Array): Buffer | undefined {
    this.#chunks.push(Buffer.from(chunk));
    this.#have += chunk.length;
    if (this.#have < HEADER_BYTES) return undefined;
    const all = Buffer.concat(this.#chunks);
    this.#chunks = [all];
    const size = all.readUInt32BE(2);
    if (size < HEADER_BYTES || size > MAX_RESPONSE_BYTES)
      throw new AttestorError('ERR_TPM_MALFORMED', `TPM response declares an impossible size ${size}`);
    if (this.#have > size)
      throw new AttestorError(
        'ERR_TPM_MALFORMED',
        `TPM sent ${this.#have} bytes for a response of declared size ${size}`,
      );
    if (this.#have < size) return undefined;
    this.reset();
    return all;
  }

  reset(): void {
    this.#chunks = [];
    this.#have = 0;
  }
}

/** Refuse commands a TPM could never accept before they are written anywhere. */
export function checkCommand(command: Uint8Array): void {
  const b = Buffer.from(command.buffer, command.byteOffset, command.byteLength);
  if (b.length < HEADER_BYTES || b.readUInt32BE(2) !== b.length)
    throw new TypeError('a TPM command must be whole: commandSize must equal its length');
}
