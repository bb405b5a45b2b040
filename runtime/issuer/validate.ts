/**
 * Shape checks for decoded CBOR request bodies: every field typed, sized and nothing else
 * trusted. A body that fails is `ERR_ISSUER_BAD_REQUEST` naming the field. The result is a
 * fresh object (no prototype tricks from the wire survive).
 */
import { IssuerError } from '../errors.ts';
import type {
  AttestBeginRequest,
  AttestFinishRequest,
  RecoverBeginRequest,
  RecoverFinishRequest,
  RenewFinishRequest,
} from '../upstream/protocol.ts';

const bad = (why: string): IssuerError => new IssuerError('ERR_ISSUER_BAD_REQUEST', why);

function obj(v: unknown, what: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array || v instanceof Map)
    throw bad(`${what} must be a CBOR map`);
  return v as Record<string, unknown>;
}

function bytes(o: Record<string, unknown>, k: string, max: number, min = 1): Uint8Array {
  const v = Object.hasOwn(o, k) ? o[k] : undefined;
  if (!(v instanceof Uint8Array)) throw bad(`${k} must be a byte string`);
  if (v.length < min || v.length > max) throw bad(`${k} must be ${min}..${max} bytes`);
  return v;
}

function optBytes(o: Record<string, unknown>, k: string, max: number): Uint8Array | undefined {
  return Object.hasOwn(o, k) && o[k] !== undefined ? bytes(o, k, max) : undefined;
}

function str(o: Record<string, unknown>, k: string, max: number): string {
  const v = Object.hasOwn(o, k) ? o[k] : undefined;
  if (typeof v !== 'string' || v.length === 0 || v.length > max)
    throw bad(`${k} must be a string of 1..${max}`);
  return v;
}

function bytesList(o: Record<string, unknown>, k: string, maxItems: number, maxEach: number): Uint8Array[] {
  const v = Object.hasOwn(o, k) ? o[k] : undefined;
  if (!Array.isArray(v) || v.length === 0 || v.length > maxItems)
    throw bad(`${k} must be an array of 1..${maxItems}`);
  return v.map((x, i) => {
    if (!(x instanceof Uint8Array) || x.length === 0 || x.length > maxEach)
      throw bad(`${k}[${i}] must be bytes`);
    return x;
  });
}

/** Optional list of short strings (server names): at most `maxItems`, each ≤ 253 characters. */
function optStrList(o: Record<string, unknown>, k: string, maxItems: number): string[] | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length > maxItems)
    throw bad(`${k} must be a list of at most ${maxItems} strings`);
  return v.map((x, i) => {
    if (typeof x !== 'string' || x.length === 0 || x.length > 253)
      throw bad(`${k}[${i}] must be a string of 1 to 253 characters`);
    return x;
  });
}

export function attestBegin(body: unknown): AttestBeginRequest {
  const o = obj(body, 'body');
  const method = o.method;
  switch (method) {
    case 'tpm': {
      const ekCertificate = optBytes(o, 'ekCertificate', 4096);
      return {
        method,
        ekPublic: bytes(o, 'ekPublic', 1024),
        akPublic: bytes(o, 'akPublic', 1024),
        ...(ekCertificate === undefined ? {} : { ekCertificate }),
      };
    }
    case 'join-token':
      return { method, token: str(o, 'token', 256) };
    case 'x509pop':
      return { method, chain: bytesList(o, 'chain', 8, 8192) };
    default:
      throw bad('method must be tpm, join-token or x509pop');
  }
}

export function attestFinish(body: unknown): AttestFinishRequest {
  const o = obj(body, 'body');
  const serverNames = optStrList(o, 'serverNames', 8);
  const base = {
    sessionId: str(o, 'sessionId', 128),
    csr: bytes(o, 'csr', 16_384),
    caCsr: bytes(o, 'caCsr', 16_384),
    ...(serverNames === undefined ? {} : { serverNames }),
  };
  switch (o.method) {
    case 'tpm':
      return {
        ...base,
        method: 'tpm',
        activatedSecret: bytes(o, 'activatedSecret', 64),
        quote: bytes(o, 'quote', 2048),
        signature: bytes(o, 'signature', 1024),
        pcrValues: bytesList(o, 'pcrValues', 24, 64),
      };
    case 'join-token':
      return { ...base, method: 'join-token' };
    case 'x509pop':
      return { ...base, method: 'x509pop', signature: bytes(o, 'signature', 1024) };
    default:
      throw bad('method must be tpm, join-token or x509pop');
  }
}

export function renewFinish(body: unknown): RenewFinishRequest {
  const o = obj(body, 'body');
  const quote = optBytes(o, 'quote', 2048);
  const signature = optBytes(o, 'signature', 1024);
  const pcrValues =
    Object.hasOwn(o, 'pcrValues') && o.pcrValues !== undefined
      ? bytesList(o, 'pcrValues', 24, 64)
      : undefined;
  const serverNames = optStrList(o, 'serverNames', 8);
  const caCsr = optBytes(o, 'caCsr', 16_384); // omitted: the delegated CA is not due for renewal
  return {
    sessionId: str(o, 'sessionId', 128),
    csr: bytes(o, 'csr', 16_384),
    ...(caCsr === undefined ? {} : { caCsr }),
    ...(serverNames === undefined ? {} : { serverNames }),
    ...(quote === undefined ? {} : { quote }),
    ...(signature === undefined ? {} : { signature }),
    ...(pcrValues === undefined ? {} : { pcrValues }),
  };
}

export function recoverBegin(body: unknown): RecoverBeginRequest {
  const o = obj(body, 'body');
  return { caChain: bytesList(o, 'caChain', 4, 8192) };
}

export function recoverFinish(body: unknown): RecoverFinishRequest {
  const o = obj(body, 'body');
  const { sessionId, csr, caCsr, serverNames, quote, signature, pcrValues } = renewFinish(body);
  return {
    sessionId,
    csr,
    caSignature: bytes(o, 'caSignature', 1024),
    ...(caCsr === undefined ? {} : { caCsr }),
    ...(serverNames === undefined ? {} : { serverNames }),
    ...(quote === undefined ? {} : { quote }),
    ...(signature === undefined ? {} : { signature }),
    ...(pcrValues === undefined ? {} : { pcrValues }),
  };
}
