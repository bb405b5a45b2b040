/**
 * What every issuer store backend shares: the CBOR encoder of values, the rules for keys,
 * sequence, channel and lock names (a `TypeError` when broken: these come from code, never from
 * a request), the byte order of keys, the bounds of a prefix listing, and the checks of a batch
 * (validated and reduced to its last write per key before anything is read).
 */
import { Encoder } from 'cbor-x';
import { IssuerError } from '../errors.ts';
import type { ListOptions, StoreCondition, StoreOp } from './store.ts';

export const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });

/** Keys the store keeps for itself (layout version, write version, sequences). */
export const RESERVED_PREFIX = 'meta/store/';
const LEGACY_SCHEMA_KEY = 'meta/schema';
const MAX_KEY_BYTES = 1024;

export function isReserved(key: string): boolean {
  return key.startsWith(RESERVED_PREFIX) || key === LEGACY_SCHEMA_KEY;
}

function checkString(what: string, s: unknown): asserts s is string {
  if (typeof s !== 'string') throw new TypeError(`${what} must be a string`);
  if (/[\uD800-\uDFFF]/u.test(s))
    throw new TypeError(`${what} is not well-formed Unicode (a lone surrogate)`);
  if (s.includes('\u0000')) throw new TypeError(`${what} contains U+0000`);
}

/**
 * Whether `key` could be stored at all. Reads take any string (a key built from a request may
 * hold anything): one that could never have been written is simply absent.
 */
export function possibleKey(key: unknown): boolean {
  if (typeof key !== 'string') throw new TypeError('store key must be a string');
  return (
    key.length > 0 &&
    !/[\uD800-\uDFFF]/u.test(key) &&
    !key.includes('\u0000') &&
    Buffer.byteLength(key) <= MAX_KEY_BYTES
  );
}

export function checkKey(key: unknown, write = false): asserts key is string {
  checkString('store key', key);
  if (key.length === 0) throw new TypeError('store key is empty');
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw new TypeError(`store key over ${MAX_KEY_BYTES} bytes`);
  if (write && isReserved(key)) throw new TypeError(`store key ${key} belongs to the store`);
}

/** Sequence and lock names. */
export function checkName(what: string, name: unknown): asserts name is string {
  if (typeof name !== 'string' || !/^[a-z0-9][a-z0-9._-]{0,62}$/.test(name)) {
    throw new TypeError(`${what} must match [a-z0-9][a-z0-9._-]{0,62}`);
  }
}

/** A sequence block size: 1 to 1,000,000. */
export function checkCount(count: unknown): asserts count is number {
  if (!Number.isSafeInteger(count) || (count as number) < 1 || (count as number) > 1_000_000) {
    throw new TypeError('store sequence count must be an integer from 1 to 1000000');
  }
}

/** Channel names (PostgreSQL identifiers once prefixed with `edgeward_`, unquoted). */
export function checkChannel(channel: unknown): asserts channel is string {
  if (typeof channel !== 'string' || !/^[a-z_][a-z0-9_]{0,39}$/.test(channel)) {
    throw new TypeError('store channel must match [a-z_][a-z0-9_]{0,39}');
  }
}

/** UTF-8 byte order (= code point order), not JavaScript's UTF-16 order. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** The smallest string greater than every string starting with `prefix` ('' has none). */
export function prefixEnd(prefix: string): string | undefined {
  const cps = [...prefix];
  while (cps.length > 0) {
    const last = (cps.pop() as string).codePointAt(0) as number;
    if (last < 0x10ffff) {
      const next = last === 0xd7ff ? 0xe000 : last + 1;
      return cps.join('') + String.fromCodePoint(next);
    }
  }
  return undefined;
}

/** The bounds of a listing: `gte` (the prefix) or `gt`, whichever is higher; `lt` likewise lower. */
export function listBounds(
  prefix: string,
  o: ListOptions,
): { lower: string; lowerInclusive: boolean; upper: string | undefined } {
  if (typeof prefix !== 'string') throw new TypeError('store prefix must be a string');

  if (o.gt !== undefined) checkString('store gt', o.gt);
  if (o.lt !== undefined) checkString('store lt', o.lt);
  if (o.limit !== undefined && (!Number.isInteger(o.limit) || o.limit < 0)) {
    throw new TypeError('store list limit must be a non-negative integer');
  }
  const useGt = o.gt !== undefined && compareKeys(o.gt, prefix) >= 0;
  const end = prefixEnd(prefix);
  const upper = o.lt === undefined ? end : end === undefined || compareKeys(o.lt, end) < 0 ? o.lt : end;
  return { lower: useGt ? (o.gt as string) : prefix, lowerInclusive: !useGt, upper };
}

/** A batch checked and reduced: the preconditions, the last write per key, the rest in op order. */
export interface PlannedBatch {
  readonly conditions: readonly StoreCondition[];
  /** Final put (value) or del (undefined) per key, in the order keys were first written. */
  readonly writes: Map<string, { value: unknown } | undefined>;
  readonly next: readonly Extract<StoreOp, { type: 'put-next' }>[];
  readonly notify: readonly { channel: string; payload: string }[];
}

export function planBatch(ops: readonly StoreOp[]): PlannedBatch {
  if (!Array.isArray(ops)) throw new TypeError('store batch takes an array of ops');
  const conditions: StoreCondition[] = [];
  const writes = new Map<string, { value: unknown } | undefined>();
  const next: Extract<StoreOp, { type: 'put-next' }>[] = [];
  const notify: { channel: string; payload: string }[] = [];
  let impossible: StoreCondition | undefined;
  for (const op of ops) {
    switch (op?.type) {
      case 'put':
        checkKey(op.key, true);
        if (op.value === undefined) throw new TypeError(`store put of ${op.key} without a value`);
        writes.delete(op.key);
        writes.set(op.key, { value: op.value });
        break;
      case 'del':
        checkKey(op.key, true);
        writes.delete(op.key);
        writes.set(op.key, undefined);
        break;
      case 'absent':
      case 'present':
      case 'version':
        if (op.type === 'version' && (!Number.isSafeInteger(op.version) || op.version < 0)) {
          throw new TypeError('store version must be a non-negative integer');
        }
        // A key that could never be written is absent: decided here, never sent to a backend.
        if (possibleKey(op.key) && !isReserved(op.key)) conditions.push(op);
        else if (op.type !== 'absent') impossible ??= op;
        break;
      case 'put-next':
        checkName('store sequence', op.sequence);
        if (typeof op.key !== 'function' || typeof op.value !== 'function') {
          throw new TypeError('store put-next takes key(n) and value(n) functions');
        }
        next.push(op);
        break;
      case 'notify':
        checkChannel(op.channel);
        if (op.payload !== undefined && typeof op.payload !== 'string') {
          throw new TypeError('store notify payload must be a string');
        }
        if (op.payload !== undefined && Buffer.byteLength(op.payload) > 7999) {
          throw new TypeError('store notify payload over 7999 bytes');
        }
        notify.push({ channel: op.channel, payload: op.payload ?? '' });
        break;
      default:
        throw new TypeError(`unknown store op ${String((op as { type?: unknown })?.type)}`);
    }
  }
  if (impossible !== undefined) throw conflict(impossible, undefined);
  return { conditions, writes, next, notify };
}

/** The key and value of a `put-next` op for `n`, checked. */
export function resolveNext(op: Extract<StoreOp, { type: 'put-next' }>, n: number): [string, unknown] {
  const key = op.key(n);
  checkKey(key, true);
  const value = op.value(n);
  if (value === undefined) throw new TypeError(`store put-next of ${key} without a value`);
  return [key, value];
}

/** Whether a precondition holds for a key at `found` (its version, or undefined when absent). */
export function holds(c: StoreCondition, found: number | undefined): boolean {
  if (c.type === 'absent') return found === undefined;
  if (c.type === 'present') return found !== undefined;
  return found === c.version;
}

export function conflict(c: StoreCondition, found: number | undefined): IssuerError {
  const want = c.type === 'version' ? `at version ${c.version}` : c.type;
  const got = found === undefined ? 'absent' : `at version ${found}`;
  return new IssuerError(
    'ERR_ISSUER_STORE_CONFLICT',
    `store precondition failed: ${c.key} should be ${want}, is ${got}; nothing was written`,
    { key: c.key, expected: want, found: got },
  );
}

export function closedError(): IssuerError {
  return new IssuerError('ERR_ISSUER_CLOSED', 'the issuer store is closed');
}
