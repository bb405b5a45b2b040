/**
 * The issuer store conformance suite (STYLE.md rule 9): the same tests run on memory-level,
 * classic-level and PostgreSQL. `fresh()` gives an empty store, a `second` one on the same data
 * (another connection pool for PostgreSQL; the same store for LevelDB, which is one process),
 * and `reopen()` (close both, open the same data again).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { IssuerStore, StoreEvent, StoreOp } from '../../../../runtime/issuer/store.ts';
import { rejects } from '../../../helpers/rejects.ts';

export interface OpenedStore {
  readonly store: IssuerStore;
  readonly second: IssuerStore;
  reopen(): Promise<IssuerStore>;
  close(): Promise<void>;
}

const CONFLICT = 'ERR_ISSUER_STORE_CONFLICT';

async function typeError(fn: () => unknown): Promise<void> {
  try {
    await fn();
  } catch (err) {
    assert.instance(err, TypeError);
    return;
  }
  assert.unreachable('expected a TypeError');
}

/** Settled results of racing promises: how many fulfilled, and the codes of the rejections. */
async function race<T>(ps: Promise<T>[]): Promise<{ ok: T[]; codes: string[] }> {
  const settled = await Promise.allSettled(ps);
  const ok: T[] = [];
  const codes: string[] = [];
  for (const s of settled) {
    if (s.status === 'fulfilled') ok.push(s.value);
    else codes.push(String((s.reason as { code?: unknown }).code ?? s.reason));
  }
  return { ok, codes };
}

/** Events of a subscription, awaited one at a time. */
function inbox() {
  const queue: StoreEvent[] = [];
  const waiting: ((e: StoreEvent) => void)[] = [];
  return {
    push(e: StoreEvent) {
      const w = waiting.shift();
      if (w) w(e);
      else queue.push(e);
    },
    next(): Promise<StoreEvent> {
      const e = queue.shift();
      return e ? Promise.resolve(e) : new Promise((r) => waiting.push(r));
    },
  };
}

/** Keys whose UTF-8 byte order differs from JavaScript's UTF-16 order and from ASCII habits. */
const ORDER_KEYS = [
  'k/',
  'k/A',
  'k/a',
  'k/a/b',
  'k/z',
  'k/~',
  'k/\u00e9', // C3 A9
  'k/\u00e9\u00e9',
  'k/\u4e2d', // E4 B8 AD
  'k/\ue000', // EE 80 80: after U+4E2D, before the astral plane (UTF-16 sorts it after 😀)
  'k/\uffff', // EF BF BF
  'k/\u{1f600}', // F0 9F 98 80
  'k/\u{10ffff}', // F4 8F BF BF
  'k/\u{10ffff}x',
];
const OUTSIDE = ['k', 'k.', 'k0', 'j/\u{10ffff}', 'l/'];

export function issuerStoreSuite(backend: string, fresh: () => Promise<OpenedStore>): void {
  const t = suite(`issuer store on ${backend}`);

  t(
    'values round-trip as CBOR; every put gives a new version, also across delete and re-create',
    async () => {
      const s = await fresh();
      try {
        const value = {
          a: 1,
          bytes: new Uint8Array([0, 255, 7]),
          nested: { s: 'é😀', list: [1, 'x', true] },
        };
        const r1 = await s.store.batch([{ type: 'put', key: 'gw/one', value }]);
        assert.type(r1.version, 'number');
        const e1 = await s.store.getEntry<typeof value>('gw/one');
        assert.is(e1?.version, r1.version);
        assert.equal([...(e1?.value.bytes ?? [])], [0, 255, 7]);
        assert.equal(e1?.value.nested, value.nested);
        assert.equal(await s.second.get('gw/one'), e1?.value);
        assert.equal(await s.second.getEntries(['nothing', 'gw/one', 'gw/one']), [undefined, e1, e1]);
        assert.equal(await s.store.getEntries([]), []);
        const r2 = await s.store.batch([{ type: 'put', key: 'gw/one', value: 2 }]);
        assert.ok((r2.version as number) > (r1.version as number));
        await s.store.batch([{ type: 'del', key: 'gw/one' }]);
        assert.is(await s.store.getEntry('gw/one'), undefined);
        const r3 = await s.store.batch([{ type: 'put', key: 'gw/one', value: 3 }]);
        assert.ok((r3.version as number) > (r2.version as number), 'a re-created key never reuses a version');
        const big = new Uint8Array(200_000).map((_, i) => i % 251);
        await s.store.batch([{ type: 'put', key: 'blob', value: { big } }]);
        assert.equal([...((await s.store.get<{ big: Uint8Array }>('blob'))?.big ?? [])], [...big]);
        const none = await s.store.batch([{ type: 'del', key: 'nothing' }]);
        assert.is(none.version, undefined);
        assert.equal(none.sequences, []);
      } finally {
        await s.close();
      }
    },
  );

  t('a batch applies in op order (last write per key wins) and all together', async () => {
    const s = await fresh();
    try {
      await s.store.batch([
        { type: 'put', key: 'x', value: 1 },
        { type: 'del', key: 'x' },
        { type: 'del', key: 'y' },
        { type: 'put', key: 'y', value: 2 },
        { type: 'put', key: 'z', value: 3 },
        { type: 'put', key: 'z', value: 4 },
      ]);
      assert.is(await s.store.get('x'), undefined);
      assert.is(await s.store.get('y'), 2);
      assert.is(await s.store.get('z'), 4);
    } finally {
      await s.close();
    }
  });

  t('preconditions absent / present / version hold against the state before the batch', async () => {
    const s = await fresh();
    try {
      const { version } = await s.store.batch([
        { type: 'absent', key: 'a' },
        { type: 'put', key: 'a', value: 'first' },
        { type: 'absent', key: 'a' }, // checked before the batch: still absent then
      ]);
      assert.is(await s.store.get('a'), 'first');
      await rejects(
        () =>
          s.store.batch([
            { type: 'absent', key: 'a' },
            { type: 'put', key: 'b', value: 1 },
          ]),
        CONFLICT,
      );
      await rejects(
        () =>
          s.store.batch([
            { type: 'present', key: 'nope' },
            { type: 'put', key: 'b', value: 1 },
          ]),
        CONFLICT,
      );
      const err = await rejects<{ fields: Record<string, unknown> }>(
        () =>
          s.store.batch([
            { type: 'version', key: 'a', version: (version as number) + 1 },
            { type: 'put', key: 'b', value: 1 },
          ]),
        CONFLICT,
      );
      assert.is(err.fields.key, 'a');
      await rejects(() => s.store.batch([{ type: 'version', key: 'gone', version: 0 }]), CONFLICT);
      assert.is(await s.store.get('b'), undefined, 'a failed batch writes nothing');
      const ok = await s.store.batch([
        { type: 'present', key: 'a' },
        { type: 'version', key: 'a', version: version as number },
        { type: 'put', key: 'a', value: 'second' },
        { type: 'put', key: 'b', value: 1 },
      ]);
      assert.equal(await s.store.getEntry('a'), { value: 'second', version: ok.version });
      await rejects(
        () =>
          s.store.batch([
            { type: 'version', key: 'a', version: version as number },
            { type: 'del', key: 'a' },
          ]),
        CONFLICT,
      );
      assert.is(await s.store.get('a'), 'second');
    } finally {
      await s.close();
    }
  });

  t('single use: of 24 racing consumers of one key (over both connections) exactly one wins', async () => {
    const s = await fresh();
    try {
      for (let round = 0; round < 3; round++) {
        const key = `token/${round}`;
        await s.store.batch([{ type: 'put', key, value: { round } }]);
        const { ok, codes } = await race(
          Array.from({ length: 24 }, (_, i) =>
            (i % 2 ? s.second : s.store).batch([
              { type: 'present', key },
              { type: 'del', key },
              { type: 'put', key: `used/${round}/${i}`, value: i },
            ]),
          ),
        );
        assert.is(ok.length, 1, `round ${round}: one consumer wins`);
        assert.equal(new Set(codes), new Set([CONFLICT]));
        assert.is((await s.store.list(`used/${round}/`)).length, 1);
        assert.is(await s.store.get(key), undefined);
      }
    } finally {
      await s.close();
    }
  });

  t('absent: of 16 racing creators of one key exactly one wins', async () => {
    const s = await fresh();
    try {
      const { ok, codes } = await race(
        Array.from({ length: 16 }, (_, i) =>
          (i % 2 ? s.second : s.store).batch([
            { type: 'absent', key: 'gw/new' },
            { type: 'put', key: 'gw/new', value: i },
          ]),
        ),
      );
      assert.is(ok.length, 1);
      assert.is(codes.length, 15);
      assert.ok(codes.every((c) => c === CONFLICT));
    } finally {
      await s.close();
    }
  });

  t('version: 20 racing read-modify-write increments that retry on conflict lose no update', async () => {
    const s = await fresh();
    try {
      await s.store.batch([{ type: 'put', key: 'counter', value: { n: 0 } }]);
      let conflicts = 0;
      const increment = async (store: IssuerStore) => {
        for (;;) {
          const e = await store.getEntry<{ n: number }>('counter');
          if (e === undefined) throw new Error('counter vanished');
          try {
            await store.batch([
              { type: 'version', key: 'counter', version: e.version },
              { type: 'put', key: 'counter', value: { n: e.value.n + 1 } },
            ]);
            return;
          } catch (err) {
            if ((err as { code?: string }).code !== CONFLICT) throw err;
            conflicts++;
          }
        }
      };
      await Promise.all(Array.from({ length: 20 }, (_, i) => increment(i % 2 ? s.second : s.store)));
      assert.equal(await s.store.get('counter'), { n: 20 });
      assert.ok(conflicts >= 0);
    } finally {
      await s.close();
    }
  });

  t('dropSequences: drops the counters under a prefix before a bound, nothing else', async () => {
    const s = await fresh();
    try {
      for (const n of ['rl.001.a', 'rl.001.a', 'rl.001.a', 'rl.001.b', 'rl.002.a', 'rl0', 'other.001'])
        await s.store.nextSequence(n);
      assert.is(await s.second.dropSequences('rl.', 'rl.002'), 2);
      assert.is(await s.store.nextSequence('rl.001.a'), 1, 'dropped: starts again');
      assert.is(await s.store.nextSequence('rl.002.a'), 2, 'at the bound: kept');
      assert.is(await s.store.nextSequence('rl0'), 2, 'outside the prefix: kept');
      assert.is(await s.store.nextSequence('other.001'), 2);
      assert.is(await s.store.dropSequences('rl.', 'rl.'), 0, 'an empty range');
      assert.is(await s.store.dropSequences('rl.', 'rm'), 2);
      assert.is(await s.second.nextSequence('rl.002.a'), 1);
    } finally {
      await s.close();
    }
  });

  t('sequences: assigned by the store, 1, 2, ... without duplicates over both connections', async () => {
    const s = await fresh();
    try {
      assert.is(await s.store.nextSequence('audit'), 1);
      assert.is(await s.second.nextSequence('audit'), 2);
      assert.is(await s.store.nextSequence('other'), 1);
      assert.is(await s.store.nextSequence('block', 100), 1, 'a block of 100: 1..100');
      assert.is(await s.second.nextSequence('block', 100), 101);
      assert.is(await s.store.nextSequence('block'), 201);
      await typeError(() => s.store.nextSequence('block', 0));
      const got = await Promise.all(
        Array.from({ length: 40 }, (_, i) => (i % 2 ? s.second : s.store).nextSequence('audit')),
      );
      assert.equal(
        [...got].sort((a, b) => a - b),
        Array.from({ length: 40 }, (_, i) => i + 3),
      );
      const r = await s.store.batch([
        { type: 'put-next', sequence: 'rev', key: (n) => `rev/${n}`, value: (n) => ({ sequence: n }) },
        { type: 'put-next', sequence: 'rev', key: (n) => `rev/${n}`, value: (n) => ({ sequence: n }) },
        { type: 'put-next', sequence: 'audit', key: (n) => `audit/${n}`, value: (n) => n },
      ]);
      assert.equal(r.sequences, [1, 2, 43]);
      assert.equal(await s.store.get('rev/2'), { sequence: 2 });
      assert.is(await s.store.get('audit/43'), 43);
      // A failed batch does not consume its sequence value.
      await rejects(
        () =>
          s.store.batch([
            { type: 'present', key: 'nope' },
            { type: 'put-next', sequence: 'rev', key: (n) => `rev/${n}`, value: (n) => n },
          ]),
        CONFLICT,
      );
      assert.equal(
        (
          await s.second.batch([
            { type: 'put-next', sequence: 'rev', key: (n) => `rev/${n}`, value: (n) => n },
          ])
        ).sequences,
        [3],
      );
      assert.is(await s.second.nextSequence('rev'), 4);
      // Keys, values and payloads with quotes, backslashes and astral characters, in a put-next batch.
      const odd = "it's \\ é😀 '; DROP TABLE kv; --";
      const box = inbox();
      const sub = await s.store.subscribe('odd', (e) => box.push(e));
      await s.store.batch([{ type: 'put', key: `cond/${odd}`, value: 1 }]);
      const q = await s.second.batch([
        { type: 'present', key: `cond/${odd}` },
        {
          type: 'put-next',
          sequence: 'q',
          key: (n) => `q/${odd}/${n}`,
          value: (n) => ({ s: odd, n, b: new Uint8Array([0, 39, 92, 255]) }),
        },
        { type: 'put', key: `plain/${odd}`, value: odd },
        { type: 'del', key: `cond/${odd}` },
        { type: 'notify', channel: 'odd', payload: odd },
      ]);
      assert.equal(q.sequences, [1]);
      const oddValue = await s.store.get<{ s: string; n: number; b: Uint8Array }>(`q/${odd}/1`);
      assert.equal([oddValue?.s, oddValue?.n, [...(oddValue?.b ?? [])]], [odd, 1, [0, 39, 92, 255]]);
      assert.is(await s.store.get(`plain/${odd}`), odd);
      assert.is(await s.store.get(`cond/${odd}`), undefined);
      assert.equal(await box.next(), { type: 'message', payload: odd });
      await sub.close();
    } finally {
      await s.close();
    }
  });

  t('commit order is sequence order: a reader never sees N without every value below it', async () => {
    const s = await fresh();
    try {
      const pad = (n: number) => `rev/${String(n).padStart(6, '0')}`;
      let done = false;
      let reads = 0;
      const reader = (async () => {
        while (!done) {
          const seen = (await s.second.list<number>('rev/')).map(([, v]) => v);
          reads++;
          assert.equal(
            seen,
            seen.map((_, i) => i + 1),
            'a reader saw a gap',
          );
        }
      })();
      const writers = await Promise.all(
        Array.from({ length: 60 }, (_, i) =>
          (i % 2 ? s.second : s.store).batch([
            { type: 'put-next', sequence: 'rev', key: pad, value: (n) => n },
            { type: 'put', key: `gw/${i}`, value: i },
          ]),
        ),
      );
      done = true;
      await reader;
      assert.equal(
        writers.map((w) => w.sequences[0]).sort((a, b) => (a as number) - (b as number)),
        Array.from({ length: 60 }, (_, i) => i + 1),
      );
      assert.is((await s.store.list('rev/')).length, 60);
      assert.ok(reads > 0);
    } finally {
      await s.close();
    }
  });

  t('listing follows UTF-8 byte order (not UTF-16), with prefix, gt, lt, limit and reverse', async () => {
    const s = await fresh();
    try {
      const shuffled = [...ORDER_KEYS, ...OUTSIDE].reverse();
      await s.store.batch(shuffled.map((key, i) => ({ type: 'put', key, value: i }) as StoreOp));
      const byteOrder = [...ORDER_KEYS].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      assert.equal(byteOrder, ORDER_KEYS, 'the fixture is in byte order');
      assert.not.equal([...ORDER_KEYS].sort(), ORDER_KEYS, 'and JavaScript would sort it differently');
      const keys = async (prefix: string, o = {}) => (await s.second.list(prefix, o)).map(([k]) => k);
      assert.equal(await keys('k/'), ORDER_KEYS);
      assert.equal(await keys('k/', { reverse: true }), [...ORDER_KEYS].reverse());
      assert.equal(await keys('k/', { limit: 3 }), ORDER_KEYS.slice(0, 3));
      assert.equal(await keys('k/', { limit: 3, reverse: true }), ORDER_KEYS.slice(-3).reverse());
      assert.equal(await keys('k/', { limit: 0 }), []);
      assert.equal(await keys('k/', { gt: 'k/z' }), ORDER_KEYS.slice(ORDER_KEYS.indexOf('k/z') + 1));
      assert.equal(await keys('k/', { gt: 'k/\ue000', limit: 2 }), ['k/\uffff', 'k/\u{1f600}']);
      assert.equal(await keys('k/', { gt: 'a' }), ORDER_KEYS, 'a gt below the prefix keeps the prefix bound');
      assert.equal(await keys('k/', { gt: 'z' }), []);
      assert.equal(await keys('k/', { lt: 'k/\u00e9' }), ORDER_KEYS.slice(0, ORDER_KEYS.indexOf('k/\u00e9')));
      assert.equal(await keys('k/', { gt: 'k/a', lt: 'k/\u4e2d', reverse: true, limit: 2 }), [
        'k/\u00e9\u00e9',
        'k/\u00e9',
      ]);
      assert.equal(await keys('k/\u{10ffff}'), ['k/\u{10ffff}', 'k/\u{10ffff}x']);
      assert.equal(await keys('k/\u00e9'), ['k/\u00e9', 'k/\u00e9\u00e9']);
      // Paging forward with gt visits everything once.
      const paged: string[] = [];
      for (let last: string | undefined; ; ) {
        const page = await keys('k/', last === undefined ? { limit: 4 } : { limit: 4, gt: last });
        if (page.length === 0) break;
        paged.push(...page);
        last = page.at(-1);
      }
      assert.equal(paged, ORDER_KEYS);
      const all = await keys('');
      assert.equal(
        all,
        [...ORDER_KEYS, ...OUTSIDE].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
      );
    } finally {
      await s.close();
    }
  });

  t("the store's own keys are neither writable nor listed; bad keys and ops are TypeErrors", async () => {
    const s = await fresh();
    try {
      await s.store.nextSequence('rev');
      await s.store.batch([{ type: 'put', key: 'meta/bundle', value: 1 }]);
      assert.equal(
        (await s.store.list('')).map(([k]) => k),
        ['meta/bundle'],
      );
      assert.equal(
        (await s.store.list('meta/')).map(([k]) => k),
        ['meta/bundle'],
      );
      await typeError(() => s.store.batch([{ type: 'put', key: 'meta/store/version', value: 1 }]));
      await typeError(() => s.store.batch([{ type: 'put', key: 'meta/schema', value: 9 }]));
      await typeError(() => s.store.batch([{ type: 'put', key: '', value: 1 }]));
      await typeError(() => s.store.batch([{ type: 'put', key: 'a\u0000b', value: 1 }]));
      await typeError(() => s.store.batch([{ type: 'put', key: 'lone\ud800', value: 1 }]));
      await typeError(() => s.store.batch([{ type: 'put', key: 'x'.repeat(1025), value: 1 }]));
      await typeError(() => s.store.batch([{ type: 'put', key: 'k', value: undefined }]));
      await typeError(() => s.store.batch([{ type: 'nope', key: 'k' } as unknown as StoreOp]));
      await typeError(() => s.store.nextSequence('Bad Name'));
      await typeError(() => s.store.subscribe('Bad-Channel', () => {}));
      assert.equal(
        (await s.store.getEntries(['meta/store/version', 'meta/schema', 'meta/bundle'])).map((e) => e?.value),
        [undefined, undefined, 1],
      );
      // Reads take any string: a key that could never be written (from a hostile request) is absent.
      for (const key of ['a\u0000', 'lone\ud800', 'x'.repeat(1025), '']) {
        assert.equal(await s.store.getEntries([key, 'meta/bundle']).then((l) => l.map((e) => e?.value)), [
          undefined,
          1,
        ]);
        assert.is(await s.store.get(key), undefined);
        assert.is(await s.second.getEntry(key), undefined);
        assert.equal(await s.store.list(key === '' ? 'nothing/' : key), []);
        await s.store.batch([{ type: 'absent', key }]);
        await rejects(
          () =>
            s.store.batch([
              { type: 'present', key },
              { type: 'put', key: 'z', value: 1 },
            ]),
          CONFLICT,
        );
        await rejects(() => s.store.batch([{ type: 'version', key, version: 0 }]), CONFLICT);
      }
      await typeError(() => s.store.get(7 as unknown as string));
      await typeError(() => s.store.list('k/', { limit: -1 }));
      assert.equal(
        (await s.store.list('')).map(([k]) => k),
        ['meta/bundle'],
        'nothing was written by the refused batches',
      );
    } finally {
      await s.close();
    }
  });

  t('notify: a committed batch publishes to every subscriber; a failed one publishes nothing', async () => {
    const s = await fresh();
    try {
      const a = inbox();
      const b = inbox();
      const subA = await s.store.subscribe('revocations', (e) => a.push(e));
      const subB = await s.second.subscribe('revocations', (e) => b.push(e));
      await rejects(
        () =>
          s.store.batch([
            { type: 'present', key: 'nope' },
            { type: 'notify', channel: 'revocations', payload: 'failed' },
          ]),
        CONFLICT,
      );
      await s.second.batch([
        { type: 'put', key: 'rev/1', value: 1 },
        { type: 'notify', channel: 'other', payload: 'elsewhere' },
        { type: 'notify', channel: 'revocations', payload: 'seq 1 é' },
      ]);
      assert.equal(await a.next(), { type: 'message', payload: 'seq 1 é' });
      assert.equal(await b.next(), { type: 'message', payload: 'seq 1 é' });
      await subA.close();
      await s.store.batch([{ type: 'notify', channel: 'revocations' }]);
      assert.equal(await b.next(), { type: 'message', payload: '' });
      await subB.close();
    } finally {
      await s.close();
    }
  });

  t('tryLock: one holder at a time, over both connections, until release', async () => {
    const s = await fresh();
    try {
      const lock = await s.store.tryLock('prune');
      assert.ok(lock);
      assert.is(lock?.lost.aborted, false);
      assert.is(await s.second.tryLock('prune'), undefined);
      assert.is(await s.store.tryLock('prune'), undefined);
      const other = await s.second.tryLock('other');
      assert.ok(other);
      await lock?.release();
      await lock?.release();
      const again = await s.second.tryLock('prune');
      assert.ok(again);
      await again?.release();
      await other?.release();
    } finally {
      await s.close();
    }
  });

  t(
    'data, versions and sequences survive a reopen; a closed store refuses with ERR_ISSUER_CLOSED',
    async () => {
      const s = await fresh();
      const { version } = await s.store.batch([{ type: 'put', key: 'gw/a', value: 'a' }]);
      await s.store.nextSequence('rev');
      const again = await s.reopen();
      try {
        await rejects(() => s.store.get('gw/a'), 'ERR_ISSUER_CLOSED');
        await rejects(() => s.store.batch([{ type: 'put', key: 'x', value: 1 }]), 'ERR_ISSUER_CLOSED');
        assert.equal(await again.getEntry('gw/a'), { value: 'a', version });
        assert.is(await again.nextSequence('rev'), 2);
        const r = await again.batch([{ type: 'put', key: 'gw/b', value: 'b' }]);
        assert.ok((r.version as number) > (version as number));
      } finally {
        await again.close();
        await again.close();
      }
    },
  );

  t.run();
}
