/**
 * The delegated CA key lives in the TPM when the gateway attests with one (issue 14 item 5), end
 * to end on swtpm and on the TypeScript simulator: config → planFromConfig → runAgent against the
 * real issuer. The CA key is a TPM key (its SPKI is the CA certificate's), device SVIDs the agent
 * signs verify with openssl under the delegated CA, and after a restart (the TPM power-cycled too)
 * the stored blob is loaded again and signs with the same key. A TPM restart under a running
 * agent (simulator, virtual clock) costs nothing but a reload; a stored blob the TPM refuses makes
 * the identity unusable (ERR_ATTESTOR_KEY_BLOB) and the TPM gateway re-attests by itself. A
 * join-token gateway keeps a software key.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, verify, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TpmAttestor } from '../../../attestors/tpm/attestor.ts';
import { execute } from '../../../attestors/tpm/client/execute.ts';
import { flush, listHandles } from '../../../attestors/tpm/client/helpers.ts';
import { CreatePrimary } from '../../../attestors/tpm/commands/hierarchy.ts';
import { openTransport } from '../../../attestors/tpm/transport/open.ts';
import type { TpmTransport } from '../../../attestors/tpm/transport/transport.ts';
import { TPM_RH } from '../../../attestors/tpm/wire/constants.ts';
import { marshalPublic } from '../../../attestors/tpm/wire/public.ts';
import { RC, type TpmResponseError } from '../../../attestors/tpm/wire/rc.ts';
import { srkEccP256Template } from '../../../attestors/tpm/wire/templates.ts';
import { tpmCaKeys } from '../../../runtime/agent/ca-keys.ts';
import { planFromConfig } from '../../../runtime/agent/plan.ts';
import { type RunningAgent, runAgent } from '../../../runtime/agent/run.ts';
import { loadAgentConfigText } from '../../../runtime/config/agent-load.ts';
import { systemClock } from '../../../runtime/core/clock.ts';
import { MemoryLogger } from '../../../runtime/core/logger.ts';
import { cryptoRandom } from '../../../runtime/core/random.ts';
import { type GatewayRecord, NAMES } from '../../../runtime/store/records.ts';
import { createCaCsr } from '../../../runtime/svid/ca-key.ts';
import { createCsr } from '../../../runtime/svid/csr.ts';
import { seededRandom } from '../../../sim/random.ts';
import { launchSwtpm } from '../../../sim/swtpm/launcher.ts';
import { openSimTransport } from '../../../sim/tpm/index.ts';
import { rejects } from '../../helpers/rejects.ts';
import { openSim } from '../../sim/tpm/harness.ts';
import { harness } from './helpers/harness.ts';
import { startTpmIssuer } from './helpers/tpm-issuer.ts';
import { untilServing } from './helpers/until-serving.ts';

const QUOTED = 'sha256:0,1,2,3,4,5,6,7';
const EMPTY = new Uint8Array();
const srkRequest = {
  primaryHandle: TPM_RH.OWNER,
  inSensitive: { userAuth: EMPTY, data: EMPTY },
  inPublic: marshalPublic(srkEccP256Template()),
  outsideInfo: EMPTY,
  creationPCR: [],
};

interface Backend {
  spec: string;
  roots: X509Certificate[];
  intermediates: X509Certificate[];
  boot(): Promise<TpmTransport>;
  stop(): Promise<void>;
}

async function swtpmBackend(): Promise<Backend> {
  const tpm = await launchSwtpm();
  return {
    spec: tpm.spec,
    roots: [tpm.root],
    intermediates: [tpm.intermediate],
    async boot() {
      const t = await openTransport(tpm.spec);
      await tpm.reboot(t); // transient objects gone: the CA key must be loaded again
      return t;
    },
    stop: () => tpm.stop(),
  };
}

async function simBackend(dir: string): Promise<Backend> {
  const state = join(dir, 'tpm');
  await (await openSimTransport(state)).close();
  const pem = (f: string) => new X509Certificate(readFileSync(join(state, f)));
  return {
    spec: `sim:${state}`,
    roots: [pem('manufacturer-root-ca.pem')],
    intermediates: [pem('manufacturer-intermediate-ca.pem')],
    boot: () => openSimTransport(state), // a power-on
    stop: async () => {},
  };
}

/** Sign a device through the agent and check the chain with openssl (trust anchor: the delegated CA). */
async function signAndVerify(r: RunningAgent, dir: string, deviceId: string): Promise<X509Certificate> {
  const devKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const { chain } = await r.agent.deviceSigner.signDevice({ deviceId, csrDer: createCsr(devKey) });
  const [leaf, ca] = chain.map((d) => new X509Certificate(Buffer.from(d)));
  assert.ok(leaf !== undefined && ca !== undefined);
  writeFileSync(join(dir, 'ca.pem'), ca.toString());
  writeFileSync(join(dir, 'leaf.pem'), leaf.toString());
  const out = execFileSync('openssl', [
    'verify',
    '-partial_chain',
    '-CAfile',
    join(dir, 'ca.pem'),
    join(dir, 'leaf.pem'),
  ]).toString();
  assert.match(out, /leaf\.pem: OK/);
  return ca;
}

for (const kind of ['swtpm', 'sim'] as const) {
  test(`${kind}: the delegated CA key is a TPM key; device SVIDs verify; it survives a restart`, async () => {
    const dir = mkdtempSync(join(tmpdir(), `edgeward-tpmca-${kind}-`));
    const backend = kind === 'swtpm' ? await swtpmBackend() : await simBackend(dir);
    const { issuer, files } = await startTpmIssuer(dir, {
      roots: backend.roots,
      intermediates: backend.intermediates,
      pcrSelection: QUOTED,
    });
    const config = loadAgentConfigText(
      [
        'version: 2',
        'trustDomain: fleet.example',
        `dataDir: ${join(dir, 'data')}`,
        `tpm: ${backend.spec}`,
        `attestation: { method: tpm, pcrs: "${QUOTED}" }`,
        `upstream: { endpoints: ["${issuer.url}"], caFile: ${files.paths.caCertificate} }`,
        'rotation: { backoffInitial: 50ms, backoffCap: 200ms }',
        'broker: { listen: { port: 0 }, enrollment: { port: 0 } }',
      ].join('\n'),
    );
    const start = async (logger: MemoryLogger) =>
      runAgent(
        await planFromConfig(config, {
          clock: systemClock,
          random: cryptoRandom,
          logger,
          openTpm: () => backend.boot(),
        }),
        { logger },
      );
    let running: RunningAgent | undefined;
    try {
      running = await start(new MemoryLogger());
      await untilServing(running);
      const live = running.agent.svidSource.current();
      assert.is(live?.ca.key.backend, 'tpm');
      assert.is(live?.record.caKeyBackend, 'tpm');
      const caCert = live?.ca.chain[0] as X509Certificate;
      assert.equal(caCert.publicKey.export({ format: 'der', type: 'spki' }), live?.ca.key.spki);
      // The stored bytes are a TPM key blob, not a private key anyone could parse.
      assert.is(Buffer.from(live?.record.caKey ?? []).readUInt32BE(0), 0x45574b31);
      await signAndVerify(running, dir, 'd1');
      await running.stop();

      // Restart (the TPM restarted too): the cached identity, the same CA key, loaded from its blob.
      const logger = new MemoryLogger();
      running = await start(logger);
      assert.ok(running.agent.status().serving, 'served from the cache');
      const again = running.agent.svidSource.current();
      assert.is(again?.ca.key.backend, 'tpm');
      assert.equal(again?.ca.key.spki, live?.ca.key.spki);
      const ca2 = await signAndVerify(running, dir, 'd2');
      assert.is(ca2.serialNumber, caCert.serialNumber, 'same delegated CA');
      await running.stop();
    } finally {
      await running?.stop();
      await issuer.close();
      await backend.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('the agent signs on after a TPM restart; a blob the TPM refuses drops the identity and it re-attests', async () => {
  // The CA key in the simulator's TPM behind the test attestor and the fake issuer (virtual clock).
  const sim = await openSim();
  const tpm = new TpmAttestor({ transport: sim.tpm, random: seededRandom('tpm-ca'), ownsTransport: false });
  const other = await openSim();
  const otherTpm = new TpmAttestor({
    transport: other.tpm,
    random: seededRandom('tpm-ca-2'),
    ownsTransport: false,
  });
  try {
    const h = await harness({ caKeys: tpmCaKeys(tpm) });
    await h.clock.advance(0);
    const live = h.agent.svidSource.current();
    assert.is(live?.ca.key.backend, 'tpm');
    const sign = async (deviceId: string) => {
      const devKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
      const { chain } = await h.agent.deviceSigner.signDevice({ deviceId, csrDer: createCsr(devKey) });
      const [leaf, ca] = chain.map((d) => new X509Certificate(Buffer.from(d)));
      assert.ok(leaf?.verify((ca as X509Certificate).publicKey), 'the device SVID verifies under the CA');
      return ca as X509Certificate;
    };
    await sign('before');
    // The TPM power-cycles under the running agent: its loaded CA key is gone; the next signature reloads it.
    await sim.tpm.reset({ orderly: true });
    const ca = await sign('after-reset');
    assert.equal(ca.publicKey.export({ format: 'der', type: 'spki' }), live?.ca.key.spki);

    // The stored blob is replaced by one from another TPM (as after a TPM2_Clear): unusable.
    await h.agent.stop();
    await h.store.close();
    const store = await h.openStore();
    const rec = await store.get<GatewayRecord>(NAMES.gateway);
    assert.ok(rec);
    await store.batch([
      { type: 'put', name: NAMES.gateway, value: { ...rec, caKey: await otherTpm.createSigningKey() } },
    ]);
    await store.close();
    const attestsBefore = h.issuer.count('/v1/attest/finish');
    await h.restart();
    const dropped = h.logger.lines.filter((l) => l.fields.event === 'identity.dropped');
    assert.is(dropped.at(-1)?.fields.code, 'ERR_ATTESTOR_KEY_BLOB');
    await h.clock.advance(0);
    assert.is(h.issuer.count('/v1/attest/finish'), attestsBefore + 1, 're-attested');
    const fresh = h.agent.svidSource.current();
    assert.is(fresh?.ca.key.backend, 'tpm');
    assert.not.equal(fresh?.ca.key.spki, live?.ca.key.spki, 'a new CA key');
    await sign('after-reattest');
    await h.agent.stop();
    await h.store.close();
  } finally {
    await tpm.close();
    await otherTpm.close();
    await sim.cleanup();
    await other.cleanup();
  }
});

for (const kind of ['swtpm', 'sim'] as const) {
  test(`${kind}: failed exchanges and rotations never fill the TPM's three object slots`, async () => {
    const swtpm = kind === 'swtpm' ? await launchSwtpm() : undefined;
    const sim = kind === 'sim' ? await openSim() : undefined;
    const transport = swtpm !== undefined ? await openTransport(swtpm.spec) : (sim?.tpm as TpmTransport);
    const tpm = new TpmAttestor({ transport, random: seededRandom(`slots-${kind}`), ownsTransport: false });
    await tpm.start();
    try {
      const caKeys = tpmCaKeys(tpm);
      const data = Buffer.from('tbs');
      const current = (await caKeys.create()).key;
      await current.sign(data);
      // Six exchanges that each made a new CA key (and its CSR) and then failed, while devices are signed.
      for (let i = 0; i < 6; i++) {
        const { key } = await caKeys.create();
        await createCaCsr(key);
        assert.ok(verify('sha256', data, current.publicKey, await current.sign(data)));
      }
      assert.ok((await listHandles(transport, 0x80000000)).length <= 1, 'at most one CA key loaded');
      // The attestor still has the slots it needs: seal/unseal (storage primary + sealed object) and a quote.
      const secret = Buffer.alloc(32, 7);
      assert.equal(Buffer.from(await tpm.unseal(await tpm.seal(secret))), secret);
      await tpm.quote(Buffer.alloc(32, 1), Buffer.from('spki'), 'sha256:0');
      // With every slot taken by objects that are no CA keys, loading is a TPM resource error, not
      // a bad blob (a CA key left loaded would have been flushed to make room: signing-key.ts).
      await current.close();
      assert.is((await listHandles(transport, 0x80000000)).length, 0);
      const blob = await tpm.createSigningKey();
      // Fill every slot, then free one: the storage primary gets it, and Load finds none.
      const busy: number[] = [];
      for (;;) {
        try {
          busy.push((await execute(transport, CreatePrimary, srkRequest)).objectHandle);
        } catch (e) {
          assert.ok((e as TpmResponseError).rc.code === RC.OBJECT_MEMORY, String(e));
          break;
        }
      }
      await flush(transport, busy.pop());
      const err = await rejects<TpmResponseError>(() => tpm.signingKey(blob).load(), 'ERR_TPM_RESPONSE');
      assert.is(err.rc.code, RC.OBJECT_MEMORY);
      for (const h of busy) await flush(transport, h);
    } finally {
      await tpm.close();
      if (swtpm !== undefined) {
        await swtpm.stop(transport);
        await transport.close();
      }
      await sim?.cleanup();
    }
  });
}

test('a join-token gateway keeps a software CA key', async () => {
  const h = await harness();
  await h.clock.advance(0);
  const live = h.agent.svidSource.current();
  assert.is(live?.ca.key.backend, 'software');
  assert.is(live?.record.caKeyBackend, 'software');
  await h.agent.stop();
  await h.store.close();
});

test.run();
