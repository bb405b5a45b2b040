/**
 * Two issuer CAs with the same subject name during a rotation's overlap, checked with OpenSSL
 * (what curl, mosquitto and most device stacks build chains with), not only with Node's
 * verification: chains made by edgeward's own signers under the old and under the new CA (the
 * gateway SVID, the delegated CA with a device SVID and the gateway's local server certificate
 * below it) verify with `openssl verify -CAfile <both roots> -untrusted <intermediates>`, with
 * the roots in either order; each fails against the other root alone. OpenSSL tells the two
 * roots apart by the key identifiers edgeward's certificates carry (AKID = the issuer's SKID).
 * And the broker path: mosquitto_pub with both roots as --cafile publishes over mTLS to the
 * broker serving a chain under one CA with a device chain under the other (the broker checks the
 * device with Node, mosquitto checks the broker with OpenSSL), both ways round.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryLogger } from '../../../runtime/core/logger.ts';
import {
  StaticBundleSource,
  StaticRevocationSource,
  StaticSvidSource,
} from '../../../runtime/sources/static.ts';
import type { X509Svid } from '../../../runtime/sources/types.ts';
import { createRootCa } from '../../../runtime/svid/authority.ts';
import { softwareCaKey } from '../../../runtime/svid/ca-key.ts';
import { createCaSigner, spkiOf } from '../../../runtime/svid/signer.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../../sim/random.ts';
import { MemoryTokenStore } from '../../../transport/enroll/token-store.ts';
import { startBroker } from '../../../transport/mqtt/broker.ts';
import { buildPki } from '../../helpers/pki.ts';

const run = promisify(execFile);
const TD = 'rotation.example';
const GW = `spiffe://${TD}/gateway/gw-1`;
const HOUR = 3_600_000;
const now = Date.now();
const newKey = (): KeyObject => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const pem = (der: Uint8Array): string => new X509Certificate(Buffer.from(der)).toString();

/** A root and, under it, the chains a gateway serves (leaf, intermediates). */
async function generation(label: string) {
  const rootKey = newKey();
  const root = createRootCa({
    trustDomain: TD,
    privateKey: rootKey,
    notBefore: now - HOUR,
    notAfter: now + 48 * HOUR,
    random: seededRandom(`${label}-root`),
  });
  const issuer = createCaSigner({
    certificate: root,
    key: softwareCaKey(rootKey),
    trustDomain: TD,
    random: seededRandom(`${label}-issuer`),
  });
  const window = { notBefore: now - 60_000, notAfter: now + 24 * HOUR };
  const svid = await issuer.issue({ profile: 'svid', spiffeId: GW, spki: spkiOf(newKey()), ...window });
  const caKey = newKey();
  const dca = await issuer.issue({
    profile: 'device-ca',
    spiffeId: GW,
    spki: spkiOf(caKey),
    ...window,
    permittedServerNames: ['localhost', '127.0.0.1'],
  });
  const local = createCaSigner({
    certificate: dca.der,
    key: softwareCaKey(caKey),
    trustDomain: TD,
    random: seededRandom(`${label}-gateway`),
    scope: `${GW}/device`,
    serverId: GW,
    profiles: ['svid', 'server'],
  });
  const deviceKey = newKey();
  const device = await local.issue({
    profile: 'svid',
    spiffeId: `${GW}/device/sensor-1`,
    spki: spkiOf(deviceKey),
    ...window,
  });
  const serverKey = newKey();
  const server = await local.issue({
    profile: 'server',
    spiffeId: GW,
    spki: spkiOf(serverKey),
    ...window,
    serverNames: ['localhost', '127.0.0.1'],
  });
  return {
    root: new X509Certificate(root),
    keys: { device: deviceKey, server: serverKey },
    chains: {
      'gateway SVID': [svid.der],
      'device SVID': [device.der, dca.der],
      'local server certificate': [server.der, dca.der],
    } as Record<string, Buffer[]>,
  };
}

test('same-named old and new CA: OpenSSL verifies chains under each against both roots, in either order, and refuses each under the other root alone', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ca-openssl-'));
  try {
    const old = await generation('old');
    const next = await generation('new');
    assert.is(old.root.subject, next.root.subject, 'one subject name');
    assert.is.not(old.root.fingerprint256, next.root.fingerprint256);
    const write = (name: string, certs: string[]): string => {
      const f = join(dir, name);
      writeFileSync(f, certs.join(''));
      return f;
    };
    const bundles = {
      'old first': write('old-new.pem', [old.root.toString(), next.root.toString()]),
      'new first': write('new-old.pem', [next.root.toString(), old.root.toString()]),
    };
    const verify = async (caFile: string, chain: Buffer[], name: string) => {
      const leaf = write(`${name}-leaf.pem`, [pem(chain[0] as Buffer)]);
      const untrusted =
        chain.length > 1 ? ['-untrusted', write(`${name}-int.pem`, chain.slice(1).map(pem))] : [];
      try {
        const out = await run('openssl', ['verify', '-CAfile', caFile, ...untrusted, leaf]);
        return { ok: true, text: out.stdout };
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string };
        return { ok: false, text: `${e.stdout ?? ''}${e.stderr ?? ''}` };
      }
    };
    let n = 0;
    for (const [gen, g, other] of [
      ['old', old, next],
      ['new', next, old],
    ] as const) {
      for (const [what, chain] of Object.entries(g.chains)) {
        for (const [order, caFile] of Object.entries(bundles)) {
          const out = await verify(caFile, chain, `c${n++}`);
          assert.ok(out.ok, `${what} under the ${gen} CA, roots ${order}: ${out.text}`);
          assert.match(out.text, /: OK/);
        }
        const alone = write(`alone-${n}.pem`, [other.root.toString()]);
        const out = await verify(alone, chain, `c${n++}`);
        assert.not.ok(out.ok, `${what} under the ${gen} CA must not verify against the other root alone`);
        assert.match(out.text, /error \d+ at \d+ depth lookup/);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('mosquitto_pub (OpenSSL) over mTLS with both same-named roots: the broker serving under one CA, the device under the other, both ways round', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ca-mosquitto-'));
  const clock = new VirtualClock(now);
  const old = await generation('old');
  const next = await generation('new');
  const serverSvid = (g: typeof old): X509Svid => {
    const chain = (g.chains['local server certificate'] as Buffer[]).map((d) => new X509Certificate(d));
    return {
      spiffeId: GW,
      chain,
      privateKey: g.keys.server,
      notAfter: Date.parse(chain[0]?.validTo as string),
    };
  };
  const svids = new StaticSvidSource(serverSvid(next), clock);
  const broker = await startBroker({
    svidSource: svids,
    bundleSource: new StaticBundleSource([{ trustDomain: TD, roots: [old.root, next.root], sequence: 2 }]),
    revocationSource: new StaticRevocationSource(),
    deviceSigner: (await buildPki({ now, trustDomain: TD })).signer(clock),
    tokenStore: new MemoryTokenStore(),
    trustDomain: TD,
    clock,
    logger: new MemoryLogger(),
    listen: { host: '127.0.0.1', port: 0 },
  });
  try {
    const file = (name: string, text: string): string => {
      const f = join(dir, name);
      writeFileSync(f, text, { mode: 0o600 });
      return f;
    };
    const roots = {
      both: file('both.pem', old.root.toString() + next.root.toString()),
      'both, new first': file('both-rev.pem', next.root.toString() + old.root.toString()),
      'old only': file('old.pem', old.root.toString()),
      'new only': file('new.pem', next.root.toString()),
    };
    const pub = async (g: typeof old, cafile: string) => {
      const chain = (g.chains['device SVID'] as Buffer[]).map(pem).join('');
      const args = [
        ...['--cafile', cafile, '--cert', file('svid.pem', chain)],
        ...['--key', file('key.pem', g.keys.device.export({ type: 'pkcs8', format: 'pem' }) as string)],
        ...['-h', '127.0.0.1', '-p', String(broker.addresses.mqtt.port), '-i', 'sensor-1'],
        ...['-t', 'devices/sensor-1/temp', '-m', '21.5', '-q', '1'],
      ];
      try {
        await run('mosquitto_pub', args, { timeout: 20_000 });
        return { ok: true, text: '' };
      } catch (err) {
        const e = err as { stderr?: string; message: string };
        return { ok: false, text: e.stderr || e.message };
      }
    };
    for (const [served, device, servedRoot] of [
      [next, old, 'new only'],
      [old, next, 'old only'],
    ] as const) {
      svids.set(serverSvid(served));
      for (const order of ['both', 'both, new first'] as const) {
        const out = await pub(device, roots[order]);
        assert.ok(
          out.ok,
          `served under the ${served === next ? 'new' : 'old'} CA, device under the other, roots ${order}: ${out.text}`,
        );
      }
      // The device trusting only the root the broker does not serve under refuses the broker.
      const wrong = await pub(device, roots[servedRoot === 'new only' ? 'old only' : 'new only']);
      assert.not.ok(wrong.ok, 'a device without the serving root refuses the broker');
    }
  } finally {
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
