/**
 * ERR_ISSUER_CA_KEY_MISSING tells the operator what fixes it for the backend in use: with file
 * keys, configure ca.next on the replicas named and restart them; with the key in a shared
 * PKCS#11 token (SoftHSM2), where replicas look keys up themselves, make that token (named by
 * the key's URI) reachable from them: no ca.next, no restart. Each case has a real second
 * replica lacking the key (its configuration, or a ca.pkcs11 reaching another token).
 */
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { systemClock } from '../../../runtime/core/clock.ts';
import { CaSet } from '../../../runtime/issuer/ca.ts';
import { generatePkcs11CaKey, openPkcs11CaKey } from '../../../runtime/issuer/pkcs11/key.ts';
import { pkcs11Rotation } from '../../../runtime/issuer/pkcs11/rotation.ts';
import { openMemoryStore } from '../../../runtime/issuer/store.ts';
import { createRootCa, createRootCaWithKey } from '../../../runtime/svid/authority.ts';
import type { CaKey } from '../../../runtime/svid/ca-key.ts';
import { seededRandom } from '../../../sim/random.ts';
import { rejects } from '../../helpers/rejects.ts';
import { softHsmToken } from '../../helpers/softhsm.ts';

const DAY = 86_400_000;
const TD = 'fleet.example';

function fileCa(generation: number) {
  const privateKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const now = systemClock.now();
  const certificate = createRootCa({
    trustDomain: TD,
    privateKey,
    notBefore: now - 60_000,
    notAfter: now + 400 * DAY,
    random: seededRandom(`missing-${generation}`),
    generation,
  });
  return { certificate, privateKey };
}

/**
 * `p`, failing after `ms`: the issuer's clock timers do not hold the process open (a server
 * does), and `scheduleSwitch` ends here on its own 1 s timer while b keeps not finding the key.
 */
function within<T>(ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`not within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The advice after the replicas named: `...: <ids>; <advice>`. */
const advice = (message: string): string => message.slice(message.indexOf('; ') + 2);

test('file keys: configure ca.next on the replicas named and restart them', async () => {
  const store = await openMemoryStore();
  const common = { trustDomain: TD, store, clock: systemClock, maxTtlMs: DAY, pollMs: 1000 };
  const active = fileCa(1);
  const a = await CaSet.open({ ...common, active, next: fileCa(2), random: seededRandom('a') });
  const b = await CaSet.open({ ...common, active, random: seededRandom('b') });
  try {
    const e = await rejects(() => a.scheduleSwitch({ immediate: true }), 'ERR_ISSUER_CA_KEY_MISSING');
    assert.match(
      e.message,
      /^replicas without the next CA key \(sha256 [0-9a-f]{64}\): [0-9a-f]{16} \(seen /,
    );
    assert.is(advice(e.message), 'configure ca.next there and restart them (or stop them) first');
  } finally {
    await a.close();
    await b.close();
  }
});

test('a key in a shared token: make that token reachable from the replicas named, no ca.next and no restart', async () => {
  const t = softHsmToken();
  const elsewhere = softHsmToken();
  const opts = { module: t.module, pinFile: t.pinFile };
  const uri = t.uri('issuer-ca');
  const first = await generatePkcs11CaKey({ uri, ...opts });
  const now = systemClock.now();
  const certificate = await createRootCaWithKey({
    trustDomain: TD,
    key: first,
    notBefore: now - 60_000,
    notAfter: now + 400 * DAY,
    random: seededRandom('missing-token-ca'),
  });
  const store = await openMemoryStore();
  const owned: CaKey[] = [first];
  // A replica: its CA key in the token; its ca.pkcs11 reaches the token `token` (where it looks keys up).
  const replica = async (name: string, token: string, key: CaKey) => {
    const r = pkcs11Rotation({
      uri: token,
      ...opts,
      trustDomain: TD,
      clock: systemClock,
      random: seededRandom(name),
      owned,
    });
    return CaSet.open({
      trustDomain: TD,
      active: { certificate, key },
      nextSource: r.nextSource,
      keyFor: r.keyFor,
      store,
      clock: systemClock,
      random: seededRandom(name),
      maxTtlMs: DAY,
      // Waits at most this long (1 s) for the other replica to find the key it never finds.
      pollMs: 1000,
    });
  };
  const a = await replica('a', uri, first);
  const other = await openPkcs11CaKey({ uri, ...opts, certificate });
  owned.push(other);
  const b = await replica('b', elsewhere.uri('issuer-ca'), other);
  try {
    const e = await rejects(
      () => within(20_000, a.scheduleSwitch({ immediate: true })),
      'ERR_ISSUER_CA_KEY_MISSING',
    );
    assert.match(
      e.message,
      /^replicas without the next CA key \(sha256 [0-9a-f]{64}\): [0-9a-f]{16} \(seen /,
    );
    const label = encodeURIComponent(t.label);
    assert.match(
      advice(e.message),
      new RegExp(
        `^the key is in the token \\(pkcs11:token=${label};object=issuer-ca-\\d{8}T\\d{6}Z-[0-9a-f]{4}\\), where they look for it themselves \\(no ca.next, no restart\\): make that token reachable through their ca.pkcs11 module and PIN`,
      ),
    );
    assert.not.match(e.message, /configure ca\.next/);
  } finally {
    await a.close();
    await b.close();
    for (const k of [...owned]) await k.close();
  }
});

test.run();
