/**
 * A TPM-resident ECDSA P-256 signing key (the gateway's delegated CA key, issue 14 item 5): made
 * by TPM2_Create under the ECC P-256 storage primary (the parent `seal.ts` uses; recreated from its
 * template, so the same owner seed gives the same parent), kept as a private/public blob pair that
 * only this TPM can load, loaded with TPM2_Load when first needed and kept loaded while running,
 * and used with TPM2_Sign over an external SHA-256 digest (an unrestricted key: NULL ticket).
 * The private key never leaves the TPM; the blob's private part is wrapped by the parent.
 *
 * A process killed with its key loaded leaves it in a TPM without a resource manager; a later
 * load that finds the TPM full adopts or flushes such leftovers (`#loadNow`).
 * After a TPM reset or restart the loaded handle is gone (or names another object): every
 * signature is verified against the blob's public key, and when it does not verify or the TPM
 * refuses the handle, the handle is checked with ReadPublic and the key is loaded again once.
 * `close()` flushes the handle (only while it still names this key).
 *
 * Blob (version 1): `u32 "EWK1" ‖ TPM2B_PRIVATE ‖ TPM2B_PUBLIC`.
 *
 * @example
 * ```ts
 * const blob = await createSigningKey(transport);          // store it (sealed store)
 * const key = new TpmSigningKey(transport, blob);          // parses; ERR_ATTESTOR_KEY_BLOB if not ours
 * const der = await key.sign(tbsDer);                     // DER ECDSA-SHA256, verified
 * await key.close();
 * ```
 */
import { createHash, type KeyObject, verify } from 'node:crypto';
import { seq, uint } from '../../runtime/spiffe/der.ts';
import { AttestorError } from '../errors.ts';
import { execute } from './client/execute.ts';
import { flush, listHandles } from './client/helpers.ts';
import { Sign } from './commands/attest.ts';
import { Create, Load, ReadPublic } from './commands/object.ts';
import { objectName, publicKeyOf } from './crypto/name.ts';
import { withSrk } from './seal.ts';
import type { TpmTransport } from './transport/transport.ts';
import { parseSignature } from './wire/attest.ts';
import { Reader, Writer } from './wire/buffer.ts';
import { TPM_ALG, TPM_ECC, TPM_RH, TPM_ST } from './wire/constants.ts';
import { marshalPublic, parsePublic, type TpmtPublic } from './wire/public.ts';
import { isRc, RC, TpmResponseError } from './wire/rc.ts';
import { eccSigningTemplate, SIGNING_KEY_ATTRIBUTES } from './wire/templates.ts';

const MAGIC = 0x45574b31; // "EWK1"
const EMPTY = new Uint8Array();
/** TPMT_TK_HASHCHECK with hierarchy TPM_RH_NULL and an empty digest: "no ticket". */
const NULL_TICKET = { tag: TPM_ST.HASHCHECK, hierarchy: TPM_RH.NULL, digest: EMPTY };
const ECDSA_SHA256 = { scheme: TPM_ALG.ECDSA, hash: TPM_ALG.SHA256 };

/** Create a new signing key under the storage primary; returns its blob (nothing stays loaded). */
export async function createSigningKey(t: TpmTransport): Promise<Buffer> {
  const created = await withSrk(t, (srk) =>
    execute(t, Create, {
      parentHandle: srk,
      inSensitive: { userAuth: EMPTY, data: EMPTY },
      inPublic: marshalPublic(eccSigningTemplate()),
      outsideInfo: EMPTY,
      creationPCR: [],
    }),
  );
  return new Writer().u32(MAGIC).tpm2b(created.outPrivate).tpm2b(created.outPublic).finish();
}

export interface SigningKeyBlob {
  readonly priv: Uint8Array;
  readonly pub: Uint8Array;
  readonly public: TpmtPublic;
  readonly publicKey: KeyObject;
  /** SubjectPublicKeyInfo DER of the key. */
  readonly spki: Buffer;
}

const blobError = (msg: string, cause?: unknown): AttestorError =>
  new AttestorError('ERR_ATTESTOR_KEY_BLOB', msg, cause === undefined ? undefined : { cause });

/** Parse and check a blob from `createSigningKey` (ERR_ATTESTOR_KEY_BLOB otherwise). */
export function parseSigningKeyBlob(blob: Uint8Array): SigningKeyBlob {
  let priv: Uint8Array;
  let pub: Uint8Array;
  let p: TpmtPublic;
  try {
    const r = new Reader(blob, 'key blob');
    if (r.u32('magic') !== MAGIC) throw blobError('not an edgeward TPM key blob (v1)');
    priv = r.tpm2b('private', 1024);
    pub = r.tpm2b('public', 1024);
    r.done('key blob');
    p = parsePublic(pub);
  } catch (cause) {
    if (cause instanceof AttestorError && cause.code === 'ERR_ATTESTOR_KEY_BLOB') throw cause;
    throw blobError('TPM key blob is malformed', cause);
  }
  if (!isCaKeyTemplate(p)) throw blobError('TPM key blob does not hold an ECDSA-SHA256 P-256 signing key');
  let publicKey: KeyObject;
  try {
    publicKey = publicKeyOf(p);
  } catch (cause) {
    throw blobError('TPM key blob has no valid public key', cause);
  }
  return { priv, pub, public: p, publicKey, spki: publicKey.export({ format: 'der', type: 'spki' }) };
}

/** Whether a public area is of the delegated CA key template (ECC P-256, ECDSA-SHA256, these attributes). */
function isCaKeyTemplate(p: TpmtPublic): boolean {
  return (
    p.type === TPM_ALG.ECC &&
    p.params.type === TPM_ALG.ECC &&
    p.params.curve === TPM_ECC.NIST_P256 &&
    p.attributes === SIGNING_KEY_ATTRIBUTES &&
    p.params.scheme.scheme === TPM_ALG.ECDSA &&
    p.params.scheme.hash === TPM_ALG.SHA256
  );
}

/** An ECDSA signature (r, s big-endian) as DER `SEQUENCE { INTEGER r, INTEGER s }`. */
export function ecdsaDer(r: Uint8Array, s: Uint8Array): Buffer {
  return seq(uint(r), uint(s));
}

/** Structurally a `CaKey` (runtime/svid/ca-key.ts): the TPM backend of the delegated CA key. */
export class TpmSigningKey {
  readonly backend = 'tpm' as const;
  readonly #t: TpmTransport;
  readonly #blob: SigningKeyBlob;
  readonly #name: Buffer;
  #handle: Promise<number> | undefined;
  #closed = false;

  /** Parses the blob (ERR_ATTESTOR_KEY_BLOB); the key is loaded at the first use or `load()`. */
  constructor(transport: TpmTransport, blob: Uint8Array) {
    this.#t = transport;
    this.#blob = parseSigningKeyBlob(blob);
    this.#name = objectName(this.#blob.pub);
  }

  get spki(): Buffer {
    return this.#blob.spki;
  }

  get publicKey(): KeyObject {
    return this.#blob.publicKey;
  }

  /** Load the key now (a blob from another TPM or owner seed: ERR_ATTESTOR_KEY_BLOB). */
  async load(): Promise<void> {
    await this.#loaded();
  }

  #loaded(): Promise<number> {
    if (this.#closed) throw new AttestorError('ERR_ATTESTOR_CLOSED', 'TPM signing key is closed');
    if (this.#handle === undefined) {
      const p = this.#loadNow();
      this.#handle = p;
      p.catch(() => {
        if (this.#handle === p) this.#handle = undefined;
      });
    }
    return this.#handle;
  }

  /**
   * Load under the storage primary. A TPM without a resource manager (swtpm, /dev/tpm0) keeps
   * what a killed process left loaded; when it is full (TPM_RC_OBJECT_MEMORY), delegated CA keys
   * left there are cleared (`#sweep`: this key is adopted, other keys of the CA-key template
   * flushed — they load again at their next use) and the load is tried once more.
   */
  async #loadNow(): Promise<number> {
    try {
      return await this.#loadUnderSrk();
    } catch (err) {
      if (!isRc(err, RC.OBJECT_MEMORY)) throw err;
      const adopted = await this.#sweep();
      return adopted ?? (await this.#loadUnderSrk());
    }
  }

  async #sweep(): Promise<number | undefined> {
    let ours: number | undefined;
    for (const h of await listHandles(this.#t, 0x80000000)) {
      let r: { outPublic: Uint8Array; name: Uint8Array };
      try {
        r = await execute(this.#t, ReadPublic, { objectHandle: h });
      } catch (err) {
        if (err instanceof TpmResponseError) continue;
        throw err;
      }
      if (ours === undefined && Buffer.from(r.name).equals(this.#name)) {
        ours = h;
        continue;
      }
      if (isCaKeyTemplate(parsePublic(r.outPublic))) await flush(this.#t, h);
    }
    return ours;
  }

  async #loadUnderSrk(): Promise<number> {
    return withSrk(this.#t, async (srk) => {
      try {
        const r = await execute(this.#t, Load, {
          parentHandle: srk,
          inPrivate: this.#blob.priv,
          inPublic: this.#blob.pub,
        });
        return r.objectHandle;
      } catch (cause) {
        // A blob the TPM cannot use answers with a parameter error (integrity, binding, size...);
        // a warning or a format-zero code (object memory, not initialised) says nothing about it.
        if (cause instanceof TpmResponseError && !cause.rc.warning && cause.rc.format === 'one')
          throw blobError(
            `the TPM refused the key blob (another TPM, or its owner was cleared): ${cause.rc.name}`,
            cause,
          );
        throw cause;
      }
    });
  }

  /** Whether `handle` still names this key (after a TPM restart it may name nothing or another object). */
  async #stillOurs(handle: number): Promise<boolean> {
    try {
      const r = await execute(this.#t, ReadPublic, { objectHandle: handle });
      return Buffer.from(r.name).equals(this.#name);
    } catch (err) {
      if (err instanceof TpmResponseError) return false;
      throw err;
    }
  }

  async #signOnce(handle: number, data: Uint8Array, digest: Buffer): Promise<Buffer | undefined> {
    let sigBytes: Uint8Array;
    try {
      sigBytes = (
        await execute(this.#t, Sign, {
          keyHandle: handle,
          digest,
          inScheme: ECDSA_SHA256,
          validation: NULL_TICKET,
        })
      ).signature;
    } catch (err) {
      if (err instanceof TpmResponseError) return undefined;
      throw err;
    }
    const sig = parseSignature(sigBytes);
    if (sig.sigAlg !== TPM_ALG.ECDSA || sig.hash !== TPM_ALG.SHA256) return undefined;
    const pad = (b: Uint8Array): Buffer => Buffer.concat([Buffer.alloc(Math.max(0, 32 - b.length)), b]);
    if (sig.r.length > 32 || sig.s.length > 32) return undefined;
    const p1363 = Buffer.concat([pad(sig.r), pad(sig.s)]);
    const ok = verify('sha256', data, { key: this.#blob.publicKey, dsaEncoding: 'ieee-p1363' }, p1363);
    return ok ? ecdsaDer(sig.r, sig.s) : undefined;
  }

  /**
   * ECDSA-SHA256 signature (DER) over `data`: hashed here, the TPM signs the SHA-256 digest
   * (TPM2_Sign, NULL ticket), and the signature is verified against the blob's public key before
   * it is returned. A refused or wrong signature on a handle that no longer names this key (TPM
   * restarted) loads the key again and retries once; on a handle that still does, the TPM's
   * answer is the error (ERR_TPM_RESPONSE with its code, or ERR_TPM_STATE).
   */
  async sign(data: Uint8Array): Promise<Buffer> {
    const digest = createHash('sha256').update(data).digest();
    const handle = await this.#loaded();
    const first = await this.#signOnce(handle, data, digest);
    if (first !== undefined) return first;
    if (await this.#stillOurs(handle)) return this.#signOrThrow(handle, data, digest);
    if (this.#handle !== undefined && (await this.#handle.catch(() => undefined)) === handle)
      this.#handle = undefined;
    return this.#signOrThrow(await this.#loaded(), data, digest);
  }

  /** Sign, and let the TPM's error (or a wrong signature) through as a typed error. */
  async #signOrThrow(handle: number, data: Uint8Array, digest: Buffer): Promise<Buffer> {
    const r = await execute(this.#t, Sign, {
      keyHandle: handle,
      digest,
      inScheme: ECDSA_SHA256,
      validation: NULL_TICKET,
    });
    const sig = parseSignature(r.signature);
    if (sig.sigAlg !== TPM_ALG.ECDSA || sig.r.length > 32 || sig.s.length > 32)
      throw new AttestorError('ERR_TPM_STATE', 'TPM2_Sign returned no ECDSA P-256 signature');
    const der = ecdsaDer(sig.r, sig.s);
    if (!verify('sha256', data, { key: this.#blob.publicKey, dsaEncoding: 'der' }, der))
      throw new AttestorError('ERR_TPM_STATE', 'TPM2_Sign returned a signature that does not verify');
    return der;
  }

  /** Flush the loaded key (when the handle still names it); the next use loads it again. */
  async unload(): Promise<void> {
    const h = this.#handle;
    this.#handle = undefined;
    if (h === undefined) return;
    const handle = await h.catch(() => undefined);
    if (handle !== undefined && (await this.#stillOurs(handle).catch(() => false)))
      await flush(this.#t, handle);
  }

  /** Flush the loaded key (when the handle still names it); no use after. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.unload();
  }
}
