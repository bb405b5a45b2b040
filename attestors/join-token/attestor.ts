/**
 * The join-token attestor: for gateways without a TPM. An operator provisions a one-time token
 * (issued by `edgeward device`/the issuer) into a 0600 file; `begin()` presents it and the issuer
 * consumes it. A bearer token proves nothing about the hardware and binds no key: the issuer must
 * make it single use and short lived, and the gateway then seals its store with a key file.
 *
 * @example
 * ```ts
 * const a = new JoinTokenAttestor({ tokenFile: '/etc/edgeward/join-token' });
 * await a.start(); const begin = await a.begin(); // { method: 'join-token', token }
 * ```
 */
import type { AttestBeginRequest } from '../../runtime/upstream/protocol.ts';
import { Attestor, type AttestorSupports, type AttestProof } from '../attestor.ts';
import { AttestorError } from '../errors.ts';
import { nodeSecretFs, readSecretFile, type SecretFs } from '../secret-file.ts';

export interface JoinTokenAttestorOptions {
  readonly tokenFile: string;
  readonly fs?: SecretFs;
}

/** Printable ASCII without spaces, 16..512 characters. */
const TOKEN = /^[\x21-\x7e]{16,512}$/;

export class JoinTokenAttestor extends Attestor {
  readonly method = 'join-token' as const;
  readonly supports: AttestorSupports = { pcrs: false, ekCertificate: false, sealing: false };
  readonly #o: JoinTokenAttestorOptions;
  #token: string | undefined;

  constructor(options: JoinTokenAttestorOptions) {
    super();
    if (typeof options.tokenFile !== 'string' || options.tokenFile === '')
      throw new AttestorError('ERR_ATTESTOR_CONFIG', 'join-token attestor: tokenFile is required');
    this.#o = options;
  }

  protected async _start(): Promise<void> {
    const raw = await readSecretFile(this.#o.tokenFile, 'join token file', this.#o.fs ?? nodeSecretFs);
    const token = raw.toString('utf8').trim();
    if (!TOKEN.test(token))
      throw new AttestorError(
        'ERR_ATTESTOR_CONFIG',
        `join token file ${this.#o.tokenFile} does not hold one token (16-512 printable characters)`,
      );
    this.#token = token;
  }

  protected async _begin(): Promise<AttestBeginRequest> {
    return { method: 'join-token', token: this.#token as string };
  }

  protected async _answer(): Promise<AttestProof> {
    return { method: 'join-token' };
  }

  protected async _close(): Promise<void> {
    this.#token = undefined;
  }
}
