/**
 * Pruning a large store a page at a time: expired sessions, join tokens, remembered attest
 * answers and issued records well beyond one page are all dropped, the live ones of each kind
 * kept, and no listing of those kinds asks for more than `PRUNE_PAGE` keys (a fleet of a million
 * gateways must not be read into memory at once).
 */
import { rmSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PRUNE_PAGE } from '../../../runtime/issuer/prune.ts';
import { type IssuerStore, type ListOptions, openMemoryStore } from '../../../runtime/issuer/store.ts';
import { harness } from './harness.ts';

/** A record of `prefix` expiring at `at`; a remembered answer is well-formed (a malformed one goes). */
function record(prefix: string, field: string, at: number): Record<string, unknown> {
  if (prefix !== 'done/') return { [field]: at };
  const response = {
    spiffeId: 'spiffe://fleet.example/gateway/gw-1',
    svidChain: [new Uint8Array(8)],
    deviceCaChain: [],
    bundle: '{}',
    bundleSequence: 1,
    nextNonce: new Uint8Array(32),
  };
  return { requestHash: 'ab', gateway: 'gw-1', expiresAt: at, response };
}

test('prune drops 2.5 pages of expired records per kind and keeps the live ones, listing a page at a time', async () => {
  const base = await openMemoryStore();
  const limits: [string, number | undefined][] = [];
  // The store as the issuer sees it, recording the limit of every listing.
  const store = new Proxy(base, {
    get(target, prop) {
      if (prop === 'list')
        return <T>(prefix: string, o?: ListOptions) => {
          limits.push([prefix, o?.limit]);
          return target.list<T>(prefix, o);
        };
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as IssuerStore;
  const h = await harness({ joinToken: { enabled: true } }, { store, pruneIntervalMs: 7 * 86_400_000 });
  try {
    const now = h.clock.now();
    const expired = Math.floor(2.5 * PRUNE_PAGE);
    const pad = (i: number) => String(i).padStart(6, '0');
    for (const [prefix, field] of [
      ['session/', 'expiresAt'],
      ['token/', 'expiresAt'],
      ['done/', 'expiresAt'],
      ['issued/', 'notAfter'],
    ] as const) {
      const ops = [];
      for (let i = 0; i < expired; i++)
        ops.push({
          type: 'put' as const,
          key: `${prefix}x${pad(i)}`,
          value: record(prefix, field, now - 1000),
        });
      // Live ones before, between and after the expired keys in byte order.
      for (const k of ['a', 'x000999z', 'z'])
        ops.push({ type: 'put' as const, key: `${prefix}${k}`, value: record(prefix, field, now + 60_000) });
      await base.batch(ops);
    }
    limits.length = 0;
    assert.is(await h.running.issuer.prune(), true);
    for (const prefix of ['session/', 'token/', 'done/', 'issued/'])
      assert.equal(
        (await base.list(prefix)).map(([k]) => k),
        [`${prefix}a`, `${prefix}x000999z`, `${prefix}z`],
        prefix,
      );
    // The four kinds a fleet has millions of; other listings (replica heartbeats) are small.
    const big = limits.filter(([p]) => ['session/', 'token/', 'done/', 'issued/'].includes(p));
    assert.ok(big.length >= 4 * 3, `paged listings: ${big.length}`);
    assert.ok(
      big.every(([, l]) => l !== undefined && l <= PRUNE_PAGE),
      `every listing bounded: ${JSON.stringify(big.filter(([, l]) => l !== PRUNE_PAGE))}`,
    );
  } finally {
    await h.running.close();
    rmSync(h.dir, { recursive: true, force: true });
  }
});

test.run();
