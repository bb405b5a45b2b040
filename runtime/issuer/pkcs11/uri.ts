/**
 * PKCS#11 URIs (RFC 7512) naming the issuer's CA key: `pkcs11:token=edgeward;object=issuer-ca`,
 * optionally with `id=%01%02` (CKA_ID), `type=private`, `serial`, `manufacturer`, `model`.
 * Values are percent-decoded. What edgeward does not honour is refused rather than ignored:
 * unknown path attributes, any query attribute (`pin-value`, `pin-source`, `module-path`: the
 * PIN lives only in `ca.pkcs11.pinFile`, the module is `ca.pkcs11.module`), and a `type` other
 * than `private`. A URI must name the token (`token` or `serial`) and the key (`object` or `id`).
 *
 * @example
 * ```ts
 * parsePkcs11Uri('pkcs11:token=edgeward;object=issuer-ca'); // { token: 'edgeward', object: 'issuer-ca' }
 * isPkcs11Uri(cfg.ca.key);                                   // true: the key is in a token
 * ```
 */
import { IssuerError } from '../../errors.ts';

export interface Pkcs11Uri {
  /** CKA/CK_TOKEN_INFO label of the token. */
  readonly token?: string;
  readonly serial?: string;
  readonly manufacturer?: string;
  readonly model?: string;
  /** CKA_LABEL of the key objects. */
  readonly object?: string;
  /** CKA_ID of the key objects. */
  readonly id?: Buffer;
}

const PATH_ATTRS = new Set(['token', 'serial', 'manufacturer', 'model', 'object', 'id', 'type']);

export const isPkcs11Uri = (text: string): boolean => text.startsWith('pkcs11:');

const bad = (uri: string, why: string): IssuerError =>
  new IssuerError('ERR_ISSUER_PKCS11_URI', `${JSON.stringify(uri.slice(0, 200))}: ${why}`);

/** RFC 3986 percent-decoding to bytes; a stray `%` is an error. */
function pctBytes(uri: string, v: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < v.length; i++) {
    const c = v[i] as string;
    if (c !== '%') {
      out.push(...Buffer.from(c, 'utf8'));
      continue;
    }
    const hex = v.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw bad(uri, `bad percent-encoding in ${JSON.stringify(v)}`);
    out.push(Number.parseInt(hex, 16));
    i += 2;
  }
  return Buffer.from(out);
}

export function parsePkcs11Uri(uri: string): Pkcs11Uri {
  if (!isPkcs11Uri(uri)) throw bad(uri, 'a PKCS#11 URI starts with pkcs11:');
  const rest = uri.slice('pkcs11:'.length);
  const q = rest.indexOf('?');
  if (q >= 0)
    throw bad(
      uri,
      'query attributes are not taken (the PIN is read from ca.pkcs11.pinFile, the module is ca.pkcs11.module)',
    );
  const out: { -readonly [K in keyof Pkcs11Uri]: Pkcs11Uri[K] } = {};
  const seen = new Set<string>();
  for (const part of rest.split(';')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw bad(uri, `${JSON.stringify(part)} is not attribute=value`);
    const name = part.slice(0, eq);
    const value = pctBytes(uri, part.slice(eq + 1));
    if (!PATH_ATTRS.has(name))
      throw bad(uri, `unknown attribute ${name} (known: ${[...PATH_ATTRS].join(', ')})`);
    if (seen.has(name)) throw bad(uri, `${name} given twice`);
    seen.add(name);
    if (name === 'id') {
      if (value.length === 0) throw bad(uri, 'id is empty');
      out.id = value;
      continue;
    }
    const text = value.toString('utf8');
    if (text === '') throw bad(uri, `${name} is empty`);
    if (name === 'type') {
      if (text !== 'private') throw bad(uri, `type=${text}: the CA key is a private key (type=private)`);
      continue;
    }
    out[name as 'token' | 'serial' | 'manufacturer' | 'model' | 'object'] = text;
  }
  if (out.token === undefined && out.serial === undefined)
    throw bad(uri, 'name the token: token=<label> (or serial=<serial number>)');
  if (out.object === undefined && out.id === undefined)
    throw bad(uri, 'name the key: object=<CKA_LABEL> (and/or id=<CKA_ID, percent-encoded>)');
  return out;
}

/**
 * The URI as text (never carries a PIN: parsePkcs11Uri refuses one), with every attribute it
 * names the token and key by, so that parsing it gives `u` again (a generated key's URI names
 * the same token as the active key's: manufacturer and model kept, RFC 7512).
 */
export function formatPkcs11Uri(u: Pkcs11Uri): string {
  const enc = (s: string) => encodeURIComponent(s);
  const parts = [
    ...(u.token === undefined ? [] : [`token=${enc(u.token)}`]),
    ...(u.serial === undefined ? [] : [`serial=${enc(u.serial)}`]),
    ...(u.manufacturer === undefined ? [] : [`manufacturer=${enc(u.manufacturer)}`]),
    ...(u.model === undefined ? [] : [`model=${enc(u.model)}`]),
    ...(u.object === undefined ? [] : [`object=${enc(u.object)}`]),
    ...(u.id === undefined
      ? []
      : [`id=${[...u.id].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')}`]),
  ];
  return `pkcs11:${parts.join(';')}`;
}
