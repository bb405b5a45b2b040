/**
 * The shared CA record (`meta/bundle`) read back from the store is checked as live input
 * (`checkedBundle`): a well-formed one passes; a malformed one (wrong shape, a certificate that is
 * not bytes, a time that is not a number) is ERR_ISSUER_CA_INVALID on refresh and on a change,
 * is never applied, and nothing is written over it.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { nullLogger } from '../../../runtime/core/logger.ts';
import { CaRecord } from '../../../runtime/issuer/ca-record.ts';
import { type BundleMeta, checkedBundle } from '../../../runtime/issuer/ca-state.ts';
import { K } from '../../../runtime/issuer/records.ts';
import { openMemoryStore } from '../../../runtime/issuer/store.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { rejects } from '../../helpers/rejects.ts';

const der = new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x01]);

test('checkedBundle passes a well-formed record and refuses malformed ones with ERR_ISSUER_CA_INVALID', () => {
  const good: BundleMeta = {
    sequence: 3,
    fingerprints: ['ab'],
    retired: [{ certificate: der, until: 5 }],
    active: der,
    next: der,
    nextPublishedAt: 1,
    activateAt: 2,
    retireUntil: 3,
  };
  assert.equal(checkedBundle(good), good);
  const bad: unknown[] = [
    undefined,
    7,
    { sequence: 1, retired: [] },
    { sequence: -1, fingerprints: [], retired: [] },
    { sequence: 1, fingerprints: [1], retired: [] },
    { sequence: 1, fingerprints: [], retired: {} },
    { sequence: 1, fingerprints: [], retired: [{ certificate: 'pem', until: 1 }] },
    { sequence: 1, fingerprints: [], retired: [{ certificate: der }] },
    { sequence: 1, fingerprints: [], retired: [], active: 'x' },
    { sequence: 1, fingerprints: [], retired: [], active: new Uint8Array(0) },
    { sequence: 1, fingerprints: [], retired: [], next: der, activateAt: 'soon' },
    { sequence: 1, fingerprints: [], retired: [], retireUntil: Number.POSITIVE_INFINITY },
  ];
  for (const v of bad) {
    try {
      checkedBundle(v);
      assert.unreachable(`accepted ${String(JSON.stringify(v))}`);
    } catch (e) {
      assert.is((e as { code?: string }).code, 'ERR_ISSUER_CA_INVALID', String(JSON.stringify(v)));
    }
  }
});

test('a malformed meta/bundle: refresh and change are ERR_ISSUER_CA_INVALID, it is not applied nor written over', async () => {
  const store = await openMemoryStore();
  const broken = { sequence: 2, fingerprints: [], retired: 'none' };
  await store.batch([{ type: 'put', key: K.bundle, value: broken }]);
  const applied: BundleMeta[] = [];
  const rec = new CaRecord({
    store,
    clock: new VirtualClock(1_000_000),
    logger: nullLogger,
    apply: (meta) => applied.push(meta),
    onPoll: async () => {},
  });
  await rejects(() => rec.refresh(), 'ERR_ISSUER_CA_INVALID');
  await rejects(
    () => rec.change((m) => m ?? { sequence: 0, fingerprints: [], retired: [] }),
    'ERR_ISSUER_CA_INVALID',
  );
  assert.is(applied.length, 0);
  assert.equal(await store.get(K.bundle), broken);
  await rec.close();
  await store.close();
});

test.run();
