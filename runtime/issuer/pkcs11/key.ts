/**
 * The issuer's CA key in a PKCS#11 token, behind the `CaKey` seam (runtime/svid/ca-key.ts): the
 * private key never leaves the token. A signature hashes the data with SHA-256 here, has the
 * token sign the digest (CKM_ECDSA, P-256) on libuv's thread pool — never on the event loop —
 * and turns the raw r‖s it returns into the DER ECDSA-Sig-Value X.509 wants. A PKCS#11 session
 * runs one operation at a time, so the key keeps a small pool of sessions (default 4, the
 * thread pool's size) and signatures queue for a free one.
 *
 * The key is found by the URI's token (label, serial, ...) and object (CKA_LABEL) and/or id
 * (CKA_ID); its public half from the token's public key object, else from the CA certificate
 * given; a probe signature at open proves the two belong together. Failures are typed: the
 * module (ERR_ISSUER_PKCS11_MODULE), the PIN (ERR_ISSUER_PKCS11_PIN, the PIN file must be 0600:
 * ERR_ISSUER_KEY_PERMISSIONS), the token or key not found (ERR_ISSUER_PKCS11_OBJECT), and a
 * token that fails or goes away while running (ERR_ISSUER_PKCS11_TOKEN): that signature is not
 * made, and the next use tries to reconnect (at most once per `retryMs`), re-initialising the
 * module when the token is gone from its slot list, so the issuer is ready again once the
 * token is back. `close` (at the issuer's close, or when the key's CA is retired) lets the
 * signatures under way finish, then closes the sessions; the key object stays in the token.
 *
 * @example
 * ```ts
 * const key = await openPkcs11CaKey({ uri: 'pkcs11:token=edgeward;object=issuer-ca', module, pinFile });
 * const der = await key.sign(tbs);  await key.close();
 * ```
 */
import { createHash, createPublicKey, type KeyObject, randomBytes, verify } from 'node:crypto';
import { type Clock, systemClock } from '../../core/clock.ts';
import { isEdgewardError } from '../../core/error.ts';
import { IssuerError } from '../../errors.ts';
import type { CaKey } from '../../svid/ca-key.ts';
import { type Attribute, CK, Pkcs11Module, why } from './module.ts';
import {
  acquire,
  type Connection,
  closeQuietly,
  closeSessionOf,
  connectFresh,
  ecdsaRawToDer,
  err,
  find,
  findSlotFresh,
  login,
  P256_PARAMS,
  readPinFile,
  release,
} from './token.ts';
import { formatPkcs11Uri, type Pkcs11Uri, parsePkcs11Uri } from './uri.ts';

export { ecdsaRawToDer, readPinFile } from './token.ts';

export interface Pkcs11KeyOptions {
  /** `pkcs11:token=…;object=…` (RFC 7512). */
  readonly uri: string;
  /** The PKCS#11 module (shared library) path. */
  readonly module: string;
  /** A file (mode 0600) holding the user PIN. */
  readonly pinFile: string;
  /** The CA certificate (DER): its key is used when the token holds no public key object. */
  readonly certificate?: Uint8Array;
  /** Sessions signing in parallel (default 4). */
  readonly sessions?: number;
  /** After a failed reconnect, the next try waits this long (default 1000 ms). */
  readonly retryMs?: number;
  readonly clock?: Clock;
}

export interface Pkcs11CaKey extends CaKey {
  readonly backend: 'pkcs11';
  /** The URI it was opened by (no PIN in it). */
  readonly uri: string;
}

/** A token-class failure while running: the token went away, or the module was finalised. */
const tokenFailure = (u: Pkcs11Uri, cause: unknown): Error =>
  isEdgewardError(cause, 'ERR_ISSUER_PKCS11_PIN')
    ? cause
    : err(
        'ERR_ISSUER_PKCS11_TOKEN',
        `the token of ${formatPkcs11Uri(u)} failed: ${isEdgewardError(cause) ? cause.message : why(cause)}`,
        cause,
      );

class TokenKey implements Pkcs11CaKey {
  readonly backend = 'pkcs11' as const;
  readonly uri: string;
  readonly spki: Buffer;
  readonly publicKey: KeyObject;
  readonly #m: Pkcs11Module;
  readonly #u: Pkcs11Uri;
  readonly #pin: string;
  readonly #o: Pkcs11KeyOptions;
  readonly #clock: Clock;
  #conn: Connection | undefined;
  #connecting: Promise<Connection> | undefined;
  #lastFailure: { at: number; error: Error } | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** Signatures under way: `close` lets them finish. */
  readonly #signing = new Set<Promise<Buffer>>();

  constructor(m: Pkcs11Module, u: Pkcs11Uri, pin: string, o: Pkcs11KeyOptions, conn: Connection) {
    this.#m = m;
    this.#u = u;
    this.#pin = pin;
    this.#o = o;
    this.#clock = o.clock ?? systemClock;
    this.#conn = conn;
    this.uri = formatPkcs11Uri(u);
    this.spki = conn.spki;
    this.publicKey = createPublicKey({ key: conn.spki, format: 'der', type: 'spki' });
  }

  sign(data: Uint8Array): Promise<Buffer> {
    if (this.#closed) return Promise.reject(err('ERR_ISSUER_PKCS11_TOKEN', `${this.uri} is closed`));
    const p = this.#sign(data);
    this.#signing.add(p);
    const done = () => this.#signing.delete(p);
    p.then(done, done);
    return p;
  }

  async #sign(data: Uint8Array): Promise<Buffer> {
    const digest = createHash('sha256').update(data).digest();
    for (let attempt = 1; ; attempt++) {
      const conn = await this.#connection();
      const session = await acquire(conn);
      // The module was re-initialised while this waited (another key's reconnect): its sessions are gone.
      if (this.#m.busy || conn.generation !== this.#m.generation) {
        release(this.#m, conn, session);
        if (attempt < 3) continue;
        throw err('ERR_ISSUER_PKCS11_TOKEN', `${this.uri}: the module keeps re-initialising`);
      }
      let raw: Buffer;
      try {
        // C_SignInit and the start of C_Sign in one synchronous step: a re-initialisation waits for it.
        this.#m.api.C_SignInit(session, { mechanism: CK.CKM_ECDSA }, conn.key);
        raw = await this.#m.track(this.#m.api.C_SignAsync(session, digest, Buffer.alloc(132)));
      } catch (cause) {
        const e = tokenFailure(this.#u, cause);
        this.#kill(conn, e);
        throw e;
      } finally {
        release(this.#m, conn, session);
      }
      return ecdsaRawToDer(raw);
    }
  }

  /** No new signature from now; those under way finish, then the sessions are closed. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#signing]);
    const conn = this.#conn;
    this.#conn = undefined;
    if (conn !== undefined) this.#kill(conn, err('ERR_ISSUER_PKCS11_TOKEN', `${this.uri} is closed`));
    await this.#m.release();
  }

  /** The live connection, or a new one (at most one attempt at a time, one per retryMs after a failure). */
  #connection(): Promise<Connection> {
    const c = this.#conn;
    if (c !== undefined && c.dead === undefined && c.generation === this.#m.generation)
      return Promise.resolve(c);
    if (c !== undefined && c.dead === undefined)
      this.#kill(c, err('ERR_ISSUER_PKCS11_TOKEN', 'module re-initialised'));
    const last = this.#lastFailure;
    if (last !== undefined && this.#clock.now() - last.at < (this.#o.retryMs ?? 1000))
      return Promise.reject(last.error);
    this.#connecting ??= this.#reconnect().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #reconnect(): Promise<Connection> {
    try {
      await this.#m.ready();
      const conn = await connectFresh(this.#m, this.#u, this.#pin, this.#o);
      if (!conn.spki.equals(this.spki)) {
        for (const s of conn.all) closeSessionOf(this.#m, conn, s);
        throw err('ERR_ISSUER_PKCS11_OBJECT', `${this.uri} is another key than the one opened at start`);
      }
      this.#conn = conn;
      this.#lastFailure = undefined;
      return conn;
    } catch (cause) {
      const e = tokenFailure(this.#u, cause);
      this.#lastFailure = { at: this.#clock.now(), error: e };
      throw e;
    }
  }

  #kill(conn: Connection, e: Error): void {
    if (conn.dead !== undefined) return;
    conn.dead = e;
    for (const w of conn.waiters.splice(0)) w(e);
    // Sessions in use are closed when released.
    for (const s of conn.free.splice(0)) closeSessionOf(this.#m, conn, s);
  }
}

/** The CA key `o.uri` names, in the token of module `o.module`, logged in with the PIN of `o.pinFile`. */
export async function openPkcs11CaKey(o: Pkcs11KeyOptions): Promise<Pkcs11CaKey> {
  const u = parsePkcs11Uri(o.uri);
  const pin = await readPinFile(o.pinFile);
  const m = await Pkcs11Module.open(o.module);
  let key: TokenKey;
  try {
    key = new TokenKey(m, u, pin, o, await connectFresh(m, u, pin, o));
  } catch (cause) {
    await m.release();
    if (isEdgewardError(cause)) throw cause;
    throw err('ERR_ISSUER_PKCS11_OBJECT', `cannot open ${formatPkcs11Uri(u)}: ${why(cause)}`, cause);
  }
  try {
    // The private key and the public key (token object or certificate) belong together.
    const probe = randomBytes(32);
    if (!verify('sha256', probe, key.publicKey, await key.sign(probe)))
      throw err('ERR_ISSUER_PKCS11_OBJECT', `${key.uri}: the private key does not match its public key`);
  } catch (e) {
    await key.close();
    throw e;
  }
  return key;
}

/**
 * Generate a P-256 key pair inside the token (C_GenerateKeyPair): the private key is a token
 * object, private, sensitive and not extractable, labelled and identified as the URI says (a
 * random 16-byte CKA_ID when it gives none). A key already there under that label/id is
 * ERR_ISSUER_PKCS11_OBJECT (never replaced). Gives the key opened as `openPkcs11CaKey` does.
 */
export async function generatePkcs11CaKey(o: Pkcs11KeyOptions): Promise<Pkcs11CaKey> {
  const u = parsePkcs11Uri(o.uri);
  if (u.object === undefined)
    throw new IssuerError('ERR_ISSUER_PKCS11_URI', `${o.uri}: a key to generate needs object=<label>`);
  const pin = await readPinFile(o.pinFile);
  const m = await Pkcs11Module.open(o.module);
  try {
    await m.ready();
    const slot = await findSlotFresh(m, u);
    const s = m.api.C_OpenSession(slot, CK.CKF_SERIAL_SESSION | CK.CKF_RW_SESSION);
    try {
      login(m, s, pin);
      if (find(m, s, u, CK.CKO_PRIVATE_KEY).length > 0 || find(m, s, u, CK.CKO_PUBLIC_KEY).length > 0)
        throw err(
          'ERR_ISSUER_PKCS11_OBJECT',
          `${formatPkcs11Uri(u)} already exists in the token: not replaced`,
        );
      const common: Attribute[] = [
        { type: CK.CKA_TOKEN, value: true },
        { type: CK.CKA_LABEL, value: u.object },
        { type: CK.CKA_ID, value: u.id ?? randomBytes(16) },
      ];
      await m.track(
        m.api.C_GenerateKeyPairAsync(
          s,
          { mechanism: CK.CKM_EC_KEY_PAIR_GEN },
          [...common, { type: CK.CKA_EC_PARAMS, value: P256_PARAMS }, { type: CK.CKA_VERIFY, value: true }],
          [
            ...common,
            { type: CK.CKA_PRIVATE, value: true },
            { type: CK.CKA_SENSITIVE, value: true },
            { type: CK.CKA_EXTRACTABLE, value: false },
            { type: CK.CKA_SIGN, value: true },
          ],
        ),
      );
    } finally {
      closeQuietly(m, s);
    }
    // Opened as at start (its own reference to the module, which stays loaded in between).
    return await openPkcs11CaKey(o);
  } catch (cause) {
    if (isEdgewardError(cause)) throw cause;
    throw err('ERR_ISSUER_PKCS11_OBJECT', `cannot generate ${formatPkcs11Uri(u)}: ${why(cause)}`, cause);
  } finally {
    await m.release();
  }
}
