/**
 * The pure changes of the JWT key state (`jwt-key-state.ts`), case by case: a holder raises the
 * recorded lifetime (never lowers it) and extends the lease only when half is left; a record from
 * before the lease gets one started by any replica; a non-holder retires a lapsed active key from
 * the lease's end; a holder whose key was retired that way (it was cut off from the store) makes
 * it active again; lapsed retired keys go; the signature ignores member order. A record read back
 * from the store is checked (`checkedState`): a malformed one is ERR_ISSUER_JWT_KEY; a
 * JwtKeySet on a store holding one refuses to open and leaves the record as it was.
 */

import { generateKeyPairSync } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  checkedState,
  JWT_RETIRE_SKEW_MS,
  type JwtKeysMeta,
  nextLapse,
  type Replica,
  settle,
  stateSig,
} from '../../../runtime/issuer/jwt-key-state.ts';
import { JWT_KEYS_KEY, JwtKeySet } from '../../../runtime/issuer/jwt-keys.ts';
import { openMemoryStore } from '../../../runtime/issuer/store.ts';
import { softwareCaKey } from '../../../runtime/svid/ca-key.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { rejects } from '../../helpers/rejects.ts';

const jwk = { kty: 'EC', crv: 'P-256', x: 'x', y: 'y' };
const A = { kid: 'A', jwk };
const B = { kid: 'B', jwk };
const LEASE = 300_000;
const replica = (now: number, ttlMs: number, held: string[], configured?: typeof A): Replica => ({
  now,
  ttlMs,
  leaseMs: LEASE,
  held: (kid) => held.includes(kid),
  ...(configured === undefined ? {} : { configured }),
});

test('a holder raises the recorded ttl, never lowers it; the lease is extended only when half is left', () => {
  const m: JwtKeysMeta = { sequence: 3, active: { ...A, ttlMs: 60_000, heldUntil: 1_000_000 }, retired: [] };
  const raised = settle(m, replica(900_000, 3_600_000, ['A']));
  assert.is(raised.active?.ttlMs, 3_600_000);
  assert.is(raised.active?.heldUntil, 900_000 + LEASE, 'less than half left: extended');
  const kept = settle(raised, replica(901_000, 60_000, ['A']));
  assert.is(kept.active?.ttlMs, 3_600_000, 'a shorter ttl does not lower it');
  assert.is(kept.active?.heldUntil, 900_000 + LEASE, 'more than half left: not written again');
  assert.is(stateSig(kept), stateSig(raised));
  const other = settle(raised, replica(901_000, 7_200_000, []));
  assert.is(other.active?.ttlMs, 3_600_000, 'a replica without the key does not record its ttl');
});

test('a record from before the lease gets one; a lapsed lease retires the key from its end; then it goes', () => {
  const old: JwtKeysMeta = { sequence: 1, active: { ...A }, retired: [] };
  const started = settle(old, replica(1_000, 300_000, []));
  assert.is(started.active?.heldUntil, 1_000 + LEASE);
  const lapsed = settle(
    { ...started, active: { ...A, ttlMs: 600_000, heldUntil: 5_000 } },
    replica(9_000, 60_000, []),
  );
  assert.is(lapsed.active, undefined);
  assert.equal(lapsed.retired, [{ ...A, until: 5_000 + 600_000 + JWT_RETIRE_SKEW_MS }]);
  assert.is(nextLapse(lapsed), 5_000 + 600_000 + JWT_RETIRE_SKEW_MS);
  const gone = settle(lapsed, replica(5_000 + 600_000 + JWT_RETIRE_SKEW_MS, 60_000, []));
  assert.equal(gone.retired, []);
  assert.is(gone.sequence, 1, 'the writer, not settle, moves the sequence');
});

test('a holder finds its key retired by the lease (cut off from the store): it is active again', () => {
  const m: JwtKeysMeta = { sequence: 5, next: B, retired: [{ ...A, until: 999_999 }] };
  const back = settle(m, replica(10_000, 300_000, ['A'], A));
  assert.is(back.active?.kid, 'A');
  assert.is(back.active?.heldUntil, 10_000 + LEASE);
  assert.is(back.active?.ttlMs, 300_000);
  assert.equal(back.retired, [], 'no longer retired');
  assert.is(back.next?.kid, 'B', 'the published next key stays');
  // A replica without it, or with another configured key it does not hold, changes nothing.
  assert.is(settle(m, replica(10_000, 300_000, [])).active, undefined);
});

test('the signature ignores member order (PostgreSQL jsonb reorders) and sees every housekeeping field', () => {
  const a: JwtKeysMeta = { sequence: 1, active: { kid: 'A', jwk, ttlMs: 1, heldUntil: 2 }, retired: [] };
  const b = JSON.parse(
    '{"retired":[],"active":{"heldUntil":2,"ttlMs":1,"jwk":{"y":"y","x":"x","crv":"P-256","kty":"EC"},"kid":"A"},"sequence":1}',
  );
  assert.is(stateSig(a), stateSig(b));
  assert.is.not(stateSig(a), stateSig({ ...a, active: { kid: 'A', jwk, ttlMs: 1, heldUntil: 3 } }));
  assert.is.not(stateSig(a), stateSig({ ...a, retired: [{ ...B, until: 4 }] }));
});

test('a stored state is checked as live input: a well-formed one passes, a malformed one is ERR_ISSUER_JWT_KEY', () => {
  const good: JwtKeysMeta = {
    sequence: 2,
    active: { ...A, ttlMs: 60_000, heldUntil: 5 },
    next: B,
    retired: [{ ...B, until: 9 }],
  };
  assert.equal(checkedState(good), good);
  const bad: unknown[] = [
    null,
    'x',
    { sequence: 1 },
    { sequence: -1, retired: [] },
    { sequence: 1.5, retired: [] },
    { sequence: 1, retired: {} },
    { sequence: 1, active: { kid: 'A' }, retired: [] },
    { sequence: 1, active: { kid: '', jwk }, retired: [] },
    { sequence: 1, active: { kid: 'A', jwk: { ...jwk, crv: 'P-384' } }, retired: [] },
    { sequence: 1, active: { ...A, heldUntil: 'soon' }, retired: [] },
    { sequence: 1, next: { ...B, ttlMs: Number.NaN }, retired: [] },
    { sequence: 1, retired: [{ ...A }] },
    { sequence: 1, retired: [{ kid: 7, jwk, until: 1 }] },
  ];
  for (const v of bad) {
    try {
      checkedState(v);
      assert.unreachable(`accepted ${JSON.stringify(v)}`);
    } catch (e) {
      assert.is((e as { code?: string }).code, 'ERR_ISSUER_JWT_KEY', JSON.stringify(v));
    }
  }
});

test('a key set on a store holding a malformed state: open and refresh are ERR_ISSUER_JWT_KEY, the record is kept', async () => {
  const store = await openMemoryStore();
  const clock = new VirtualClock(1_000_000);
  const key = softwareCaKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
  const keys = await JwtKeySet.open({ active: key, store, clock, ttlMs: 60_000 });
  const broken = { sequence: 4, retired: 'none' };
  await store.batch([{ type: 'put', key: JWT_KEYS_KEY, value: broken }]);
  await rejects(() => keys.refresh(), 'ERR_ISSUER_JWT_KEY');
  await rejects(() => keys.tick(), 'ERR_ISSUER_JWT_KEY');
  assert.ok(keys.signer().kid !== '', 'the last good state still signs');
  await keys.close();
  await rejects(() => JwtKeySet.open({ active: key, store, clock, ttlMs: 60_000 }), 'ERR_ISSUER_JWT_KEY');
  assert.equal(await store.get(JWT_KEYS_KEY), broken, 'nothing written over it');
  await store.close();
});

test.run();
