/**
 * The x509pop attestor: a gateway or device with a factory certificate proves possession of its
 * key. `begin()` presents the chain (leaf first, from a PEM file); `answer()` signs the nonce and
 * the CSR's public key (see `message.ts`). The private key comes from a 0600 PEM file, is checked
 * against the leaf, and lives only as a KeyObject in memory.
 *
 * @example
 * ```ts
 * const a = new X509PopAttestor({ chainFile: '/etc/edgeward/factory.pem', keyFile: '/etc/edgeward/factory.key' });
 * ```
 */
import { createPrivateKey, type KeyObject, type X509Certificate } from 'node:crypto';
import { pemCertificates } from '../../runtime/svid/certificate.ts';
import type { AttestBeginRequest, AttestBeginResponse } from '../../runtime/upstream/protocol.ts';
import { Attestor, type AttestorSupports, type AttestProof } from '../attestor.ts';
import { AttestorError } from '../errors.ts';
import { nodeSecretFs, readSecretFile, type SecretFs } from '../secret-file.ts';
import { signX509pop } from './message.ts';

export interface X509PopAttestorOptions {
  /** PEM certificates, leaf first (the factory certificate and its intermediates). */
  readonly chainFile: string;
  /** PEM private key of the leaf, mode 0600. */
  readonly keyFile: string;
  readonly fs?: SecretFs;
}

export class X509PopAttestor extends Attestor {
  readonly method = 'x509pop' as const;
  readonly supports: AttestorSupports = { pcrs: false, ekCertificate: false, sealing: false };
  readonly #o: X509PopAttestorOptions;
  #chain: Buffer[] = [];
  #key: KeyObject | undefined;

  constructor(options: X509PopAttestorOptions) {
    super();
    if (!options.chainFile || !options.keyFile)
      throw new AttestorError('ERR_ATTESTOR_CONFIG', 'x509pop attestor: chainFile and keyFile are required');
    this.#o = options;
  }

  protected async _start(): Promise<void> {
    const fs = this.#o.fs ?? nodeSecretFs;
    let certs: X509Certificate[];
    try {
      const pem = (await fs.readFile(this.#o.chainFile)).toString('utf8');
      certs = pemCertificates(pem);
    } catch (cause) {
      throw new AttestorError('ERR_ATTESTOR_CONFIG', `certificate file ${this.#o.chainFile} is unusable`, {
        cause,
      });
    }
    const leaf = certs[0];
    if (leaf === undefined)
      throw new AttestorError('ERR_ATTESTOR_CONFIG', `no certificate in ${this.#o.chainFile}`);
    let key: KeyObject;
    try {
      key = createPrivateKey(await readSecretFile(this.#o.keyFile, 'factory key file', fs));
    } catch (cause) {
      if (cause instanceof AttestorError) throw cause;
      throw new AttestorError(
        'ERR_ATTESTOR_CONFIG',
        `factory key ${this.#o.keyFile} is not a PEM private key`,
        {
          cause,
        },
      );
    }
    if (!leaf.checkPrivateKey(key))
      throw new AttestorError(
        'ERR_ATTESTOR_CONFIG',
        'the factory key does not belong to the leaf certificate',
      );
    this.#chain = certs.map((c) => c.raw);
    this.#key = key;
  }

  protected async _begin(): Promise<AttestBeginRequest> {
    return { method: 'x509pop', chain: this.#chain.map((c) => Buffer.from(c)) };
  }

  protected async _answer(challenge: AttestBeginResponse, csrSpkiDer: Uint8Array): Promise<AttestProof> {
    return { method: 'x509pop', signature: signX509pop(this.#key as KeyObject, challenge.nonce, csrSpkiDer) };
  }

  protected async _close(): Promise<void> {
    this.#key = undefined;
    this.#chain = [];
  }
}
