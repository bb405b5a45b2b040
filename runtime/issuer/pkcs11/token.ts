/**
 * One PKCS#11 token as the CA key backend uses it (`key.ts`): the PIN file, finding the token by
 * the URI (label, serial, ...), logging in, finding the key objects, reading a P-256 public key
 * object, a connection (a pool of sessions and the key handle) and the DER form of the raw
 * r‖s a token signs with. Every failure is typed (ERR_ISSUER_PKCS11_*).
 */
import { createPublicKey, X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { isEdgewardError } from '../../core/error.ts';
import { IssuerError } from '../../errors.ts';
import { seq, uint } from '../../spiffe/der.ts';
import { type Attribute, CK, ckr, type Handle, type Pkcs11Module } from './module.ts';
import { formatPkcs11Uri, type Pkcs11Uri } from './uri.ts';

/** What a connection needs of the key's options. */
export interface ConnectOptions {
  readonly certificate?: Uint8Array;
  readonly sessions?: number;
}

/** DER OID prime256v1 (CKA_EC_PARAMS of a P-256 key). */
export const P256_PARAMS = Buffer.from('06082a8648ce3d030107', 'hex');
const PIN_ERRORS = new Set([
  'CKR_PIN_INCORRECT',
  'CKR_PIN_INVALID',
  'CKR_PIN_LEN_RANGE',
  'CKR_PIN_LOCKED',
  'CKR_PIN_EXPIRED',
]);

export const err = (
  code: 'ERR_ISSUER_PKCS11_OBJECT' | 'ERR_ISSUER_PKCS11_TOKEN',
  msg: string,
  cause?: unknown,
) => new IssuerError(code, msg, {}, cause === undefined ? undefined : { cause });

/** r‖s (two big-endian halves) as a DER ECDSA-Sig-Value. */
export function ecdsaRawToDer(raw: Uint8Array): Buffer {
  if (raw.length === 0 || raw.length % 2 !== 0)
    throw new TypeError(`raw ECDSA signature of ${raw.length} bytes`);
  const half = raw.length / 2;
  return seq(uint(raw.subarray(0, half)), uint(raw.subarray(half)));
}

/** A 0600 PIN file's first line. */
export async function readPinFile(path: string): Promise<string> {
  let mode: number;
  try {
    mode = (await stat(path)).mode;
  } catch (cause) {
    throw new IssuerError('ERR_ISSUER_PKCS11_PIN', `cannot read the PIN file ${path}`, {}, { cause });
  }
  if ((mode & 0o077) !== 0)
    throw new IssuerError(
      'ERR_ISSUER_KEY_PERMISSIONS',
      `${path} is mode ${(mode & 0o777).toString(8)}: a PIN file must be 0600`,
    );
  const pin = (await readFile(path, 'utf8')).split(/\r?\n/)[0] ?? '';
  if (pin === '') throw new IssuerError('ERR_ISSUER_PKCS11_PIN', `the PIN file ${path} is empty`);
  return pin;
}

/** The slot of the token the URI names (ERR_ISSUER_PKCS11_OBJECT when none is present). */
export function findSlot(m: Pkcs11Module, u: Pkcs11Uri): Handle {
  const matches = (t: { label: string; serialNumber: string; manufacturerID: string; model: string }) =>
    (u.token === undefined || t.label.trimEnd() === u.token) &&
    (u.serial === undefined || t.serialNumber.trimEnd() === u.serial) &&
    (u.manufacturer === undefined || t.manufacturerID.trimEnd() === u.manufacturer) &&
    (u.model === undefined || t.model.trimEnd() === u.model);
  const slot = m.api.C_GetSlotList(true).find((s) => matches(m.api.C_GetTokenInfo(s)));
  if (slot === undefined)
    throw err('ERR_ISSUER_PKCS11_OBJECT', `no token matching ${formatPkcs11Uri(u)} in ${m.path}`);
  return slot;
}

/**
 * `findSlot`, after re-initialising the module once when the token is not found: a token
 * initialised (or put back) after the module loaded is not in its slot list until then.
 */
export async function findSlotFresh(m: Pkcs11Module, u: Pkcs11Uri): Promise<Handle> {
  try {
    return findSlot(m, u);
  } catch {
    await m.reinitialize();
    return findSlot(m, u);
  }
}

export function login(m: Pkcs11Module, session: Handle, pin: string): void {
  try {
    m.api.C_Login(session, CK.CKU_USER, pin);
  } catch (cause) {
    const c = ckr(cause);
    if (c === 'CKR_USER_ALREADY_LOGGED_IN') return;
    if (c !== undefined && PIN_ERRORS.has(c))
      throw new IssuerError('ERR_ISSUER_PKCS11_PIN', `the token refused the PIN (${c})`, {}, { cause });
    throw cause;
  }
}

export function find(m: Pkcs11Module, session: Handle, u: Pkcs11Uri, cls: number): Handle[] {
  const t: Attribute[] = [{ type: CK.CKA_CLASS, value: cls }];
  if (u.object !== undefined) t.push({ type: CK.CKA_LABEL, value: u.object });
  if (u.id !== undefined) t.push({ type: CK.CKA_ID, value: u.id });
  m.api.C_FindObjectsInit(session, t);
  try {
    return m.api.C_FindObjects(session, 2);
  } finally {
    m.api.C_FindObjectsFinal(session);
  }
}

/** SPKI DER of a P-256 public key object (CKA_EC_POINT: an OCTET STRING around 04‖x‖y). */
function publicSpki(m: Pkcs11Module, session: Handle, handle: Handle): Buffer {
  const [pt] = m.api.C_GetAttributeValue(session, handle, [{ type: CK.CKA_EC_POINT }]);
  let point = pt?.value as Buffer;
  if (point.length === 67 && point[0] === 0x04 && point[1] === 65) point = point.subarray(2);
  if (point.length !== 65 || point[0] !== 0x04)
    throw err('ERR_ISSUER_PKCS11_OBJECT', 'the public key object is not an uncompressed P-256 point');
  const b64 = (b: Buffer) => b.toString('base64url');
  return createPublicKey({
    key: { kty: 'EC', crv: 'P-256', x: b64(point.subarray(1, 33)), y: b64(point.subarray(33)) },
    format: 'jwk',
  }).export({ format: 'der', type: 'spki' });
}

export interface Connection {
  readonly generation: number;
  readonly key: Handle;
  readonly spki: Buffer;
  readonly free: Handle[];
  readonly all: Handle[];
  readonly waiters: ((s: Handle | Error) => void)[];
  dead?: Error;
}

/** Open sessions, log in, find the private key (and its public half). */
export function connect(m: Pkcs11Module, u: Pkcs11Uri, pin: string, o: ConnectOptions): Connection {
  const slot = findSlot(m, u);
  const all: Handle[] = [];
  try {
    for (let i = 0; i < (o.sessions ?? 4); i++) all.push(m.api.C_OpenSession(slot, CK.CKF_SERIAL_SESSION));
    const s = all[0] as Handle;
    login(m, s, pin);
    const keys = find(m, s, u, CK.CKO_PRIVATE_KEY);
    if (keys.length !== 1)
      throw err(
        'ERR_ISSUER_PKCS11_OBJECT',
        keys.length === 0
          ? `no private key ${formatPkcs11Uri(u)} in the token`
          : `more than one private key matches ${formatPkcs11Uri(u)}: add id=… to the URI`,
      );
    const key = keys[0] as Handle;
    const [type, params] = m.api.C_GetAttributeValue(s, key, [
      { type: CK.CKA_KEY_TYPE },
      { type: CK.CKA_EC_PARAMS },
    ]);
    const kt = type?.value as Buffer | number | undefined;
    const ktn = Buffer.isBuffer(kt) ? kt.readUIntLE(0, Math.min(kt.length, 6)) : kt;
    if (ktn !== CK.CKK_EC || !P256_PARAMS.equals(params?.value as Buffer))
      throw err('ERR_ISSUER_PKCS11_OBJECT', `${formatPkcs11Uri(u)} is not an EC P-256 key`);
    const pubs = find(m, s, u, CK.CKO_PUBLIC_KEY);
    let spki: Buffer;
    if (pubs.length === 1) spki = publicSpki(m, s, pubs[0] as Handle);
    else if (o.certificate !== undefined)
      spki = new X509Certificate(Buffer.from(o.certificate)).publicKey.export({
        format: 'der',
        type: 'spki',
      });
    else
      throw err(
        'ERR_ISSUER_PKCS11_OBJECT',
        `no single public key object ${formatPkcs11Uri(u)} in the token, and no certificate given`,
      );
    return { generation: m.generation, key, spki, free: [...all], all, waiters: [] };
  } catch (e) {
    for (const s of all) closeQuietly(m, s);
    throw e;
  }
}

/**
 * `connect`, and when that fails for another reason than the PIN, once more after re-initialising
 * the module: a token that went away, or was initialised after the module loaded, is not in
 * the slot list until the module starts again (SoftHSM2).
 */
export async function connectFresh(
  m: Pkcs11Module,
  u: Pkcs11Uri,
  pin: string,
  o: ConnectOptions,
): Promise<Connection> {
  await m.ready();
  try {
    return connect(m, u, pin, o);
  } catch (first) {
    if (isEdgewardError(first, 'ERR_ISSUER_PKCS11_PIN')) throw first;
    await m.reinitialize();
    return connect(m, u, pin, o);
  }
}

/**
 * Close a session of `conn`, unless the module was re-initialised since it was opened: then it
 * is gone already, and its handle may be another key's new session.
 */
export function closeSessionOf(m: Pkcs11Module, conn: Connection, s: Handle): void {
  if (conn.generation === m.generation) closeQuietly(m, s);
}

export function closeQuietly(m: Pkcs11Module, s: Handle): void {
  try {
    m.api.C_CloseSession(s);
  } catch {
    // The token or module is gone: nothing is held.
  }
}

export function acquire(conn: Connection): Promise<Handle> {
  if (conn.dead !== undefined) return Promise.reject(conn.dead);
  const s = conn.free.pop();
  if (s !== undefined) return Promise.resolve(s);
  return new Promise((resolve, reject) => {
    conn.waiters.push((r) => (r instanceof Error ? reject(r) : resolve(r)));
  });
}

export function release(m: Pkcs11Module, conn: Connection, s: Handle): void {
  const w = conn.dead === undefined ? conn.waiters.shift() : undefined;
  if (conn.dead !== undefined) closeSessionOf(m, conn, s);
  else if (w !== undefined) w(s);
  else conn.free.push(s);
}
