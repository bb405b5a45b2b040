/**
 * A replica started after its configured CA (`ca.certificate`) expired, through the CLI
 * (`edgeward issuer --config`, in-process) on a store where a rotation made a newer CA active:
 * with that CA's key (`ca.next`) it starts, signs with the store's active CA and is ready; without
 * it (its ca.next another CA), or on a store that names no newer CA, it refuses at start with one
 * ERR_ISSUER_CA_INVALID line saying what it lacks (an expired CA with no valid ca.next and no
 * PKCS#11 token stays a config error: config-bounds.test.ts).
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../../runtime/cli/main.ts';
import { createDevIssuerFiles, type DevIssuerFiles } from '../../../runtime/issuer/dev.ts';
import { Issuer } from '../../../runtime/issuer/issuer.ts';
import { openLevelStore } from '../../../runtime/issuer/store-level.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { captureIo } from '../../helpers/cli-io.ts';
import { testRandom } from '../../helpers/seed.ts';
import { TD } from './harness.ts';

const DAY = 86_400_000;
const dir = mkdtempSync(join(tmpdir(), 'issuer-ca-expired-'));
// Ten days ago: the old CA (5 days) and the new one (a year) were made, and the switch happened.
const then = new VirtualClock(Math.floor((Date.now() - 10 * DAY) / 1000) * 1000);
let oldCa: DevIssuerFiles;
let newCa: DevIssuerFiles;
/** A valid CA the store never heard of. */
let otherCa: DevIssuerFiles;
const print = (der: Uint8Array) => new X509Certificate(Buffer.from(der)).fingerprint256;

test.before(async () => {
  oldCa = await createDevIssuerFiles(join(dir, 'old'), {
    trustDomain: TD,
    clock: then,
    random: testRandom('ca-expired-old'),
    caTtlMs: 5 * DAY,
  });
  newCa = await createDevIssuerFiles(join(dir, 'new'), {
    trustDomain: TD,
    clock: then,
    random: testRandom('ca-expired-new'),
  });
  otherCa = await createDevIssuerFiles(join(dir, 'other'), {
    trustDomain: TD,
    clock: then,
    random: testRandom('ca-expired-other'),
  });
  // The rotation, recorded in the store by a replica that held both keys, back then.
  const store = await openLevelStore(join(dir, 'store'));
  const issuer = await Issuer.create({
    trustDomain: TD,
    store,
    ca: oldCa.ca,
    nextCa: newCa.ca,
    clock: then,
    random: testRandom('ca-expired-rotate'),
    methods: { joinToken: { enabled: true } },
  });
  await issuer.rotateCa('test', { immediate: true });
  assert.is(print(issuer.caCertificate), print(newCa.ca.certificate));
  await issuer.close();
  await store.close();
});
test.after(() => rmSync(dir, { recursive: true, force: true }));

function config(name: string, o: { next?: DevIssuerFiles; store: string }): string {
  const file = join(dir, `${name}.yaml`);
  const p = oldCa.paths;
  const n = newCa.paths;
  const x = o.next?.paths;
  writeFileSync(
    file,
    `version: 3
trustDomain: ${TD}
listen: { host: 127.0.0.1, port: 0, certificate: ${n.tlsCertificate}, key: ${n.tlsKey} }
ca:
  certificate: ${p.caCertificate}
  key: ${p.caKey}
${x ? `  next: { certificate: ${x.caCertificate}, key: ${x.caKey} }\n` : ''}admin: { socket: ${join(dir, `${name}.sock`)} }
health: { host: 127.0.0.1, port: 0 }
attestation:
  joinToken: { enabled: true }
log: { level: error }
store:
  leveldb: { dir: ${join(dir, o.store)} }
`,
  );
  return file;
}

const status = (url: string): Promise<number> =>
  new Promise((resolve, reject) => {
    get(url, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    }).on('error', reject);
  });

test('configured CA expired, the store names a newer active CA held as ca.next: starts, signs with it, ready', async () => {
  const stop = new AbortController();
  const io = captureIo({ signal: stop.signal });
  const file = config('held', { next: newCa, store: 'store' });
  assert.is(await main(['config', 'check', '--role', 'issuer', file], captureIo()), 0);
  const running = main(['issuer', '--config', file], io);
  try {
    const ca = await io.outLine(/^CA .*fingerprint sha256 /, 30_000);
    assert.ok(ca.endsWith(print(newCa.ca.certificate)), ca);
    const health = (await io.outLine(/^health /)).slice('health '.length);
    assert.is(await status(`${health}/readyz`), 200, io.stdout.join('\n') + io.stderr.join('\n'));
  } finally {
    stop.abort();
    assert.is(await running, 0, io.stderr.join('\n'));
  }
});

test('configured CA expired, the store names a newer CA this replica has no key for: ERR_ISSUER_CA_INVALID at start, naming it', async () => {
  const io = captureIo();
  const code = await main(['issuer', '--config', config('lacking', { next: otherCa, store: 'store' })], io);
  assert.is(code, 1, io.stdout.join('\n'));
  const err = io.stderr.join('\n');
  assert.equal([...new Set(err.match(/ERR_[A-Z_]+/g))], ['ERR_ISSUER_CA_INVALID'], err);
  assert.match(err, /expired at .*does not hold the key of the store's active CA/);
  assert.ok(
    err.includes(print(newCa.ca.certificate).replace(/:/g, '').toLowerCase()),
    `names the CA: ${err}`,
  );
  assert.not.match(err, /unexpected failure|\n\s+at /);
});

test("configured CA expired, the store's active CA found by keyFor (a shared PKCS#11 token's lookup): starts on it and is ready", async () => {
  const store = await openLevelStore(join(dir, 'store'));
  const asked: string[] = [];
  const issuer = await Issuer.create({
    trustDomain: TD,
    store,
    ca: oldCa.ca,
    caKeyFor: async (der) => {
      asked.push(print(der));
      return print(der) === print(newCa.ca.certificate) ? newCa.ca : undefined;
    },
    clock: new VirtualClock(Date.now()),
    random: testRandom('ca-expired-keyfor'),
    methods: { joinToken: { enabled: true } },
  });
  try {
    assert.is(print(issuer.caCertificate), print(newCa.ca.certificate));
    assert.ok(asked.includes(print(newCa.ca.certificate)), 'the key was looked up');
    assert.equal(await issuer.readiness(), []);
  } finally {
    await issuer.close();
    await store.close();
  }
});

test('configured CA expired on a store that names no newer CA: ERR_ISSUER_CA_INVALID at start, nothing written', async () => {
  const io = captureIo();
  const code = await main(['issuer', '--config', config('fresh', { next: newCa, store: 'fresh-store' })], io);
  assert.is(code, 1, io.stdout.join('\n'));
  const err = io.stderr.join('\n');
  assert.equal([...new Set(err.match(/ERR_[A-Z_]+/g))], ['ERR_ISSUER_CA_INVALID'], err);
  assert.match(err, /expired at .*the store names no newer active CA/);
  const store = await openLevelStore(join(dir, 'fresh-store'));
  try {
    assert.equal(await store.list('meta/'), [], 'no CA record written');
  } finally {
    await store.close();
  }
});

test.run();
