/**
 * The full OTA cycle on a real swtpm: the old firmware measured into PCRs 0 and 7, an identity
 * in the sealed store; pre-install and post-install with the vendor's signed manifest; reboot
 * (swtpm Shutdown/Init/Startup: PCRs reset) and the new firmware's measurements extended;
 * post-boot re-attests through the agent's exchange against an issuer that accepts only
 * published reference values; commit. Then the failing paths: a wrong manifest and an unsigned
 * manifest fail post-boot, commit is refused, rollback restores the old identity and sealing;
 * commit before post-boot answers Mender's retry-later.
 */
import 'reflect-metadata';
import { createHash, generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryLevel } from 'memory-level';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openTransport } from '../../attestors/tpm/transport/open.ts';
import type { TpmTransport } from '../../attestors/tpm/transport/transport.ts';
import { commit, rollback } from '../../firmware-hooks/commit.ts';
import type { HookContext } from '../../firmware-hooks/context.ts';
import { exitCodeFor, HOOK_EXIT } from '../../firmware-hooks/exit-codes.ts';
import { readState, writeState } from '../../firmware-hooks/ota-state.ts';
import { extendPcr, readPcrs } from '../../firmware-hooks/pcrs.ts';
import { postBoot } from '../../firmware-hooks/post-boot.ts';
import { postInstall } from '../../firmware-hooks/post-install.ts';
import { preInstall } from '../../firmware-hooks/pre-install.ts';
import { issuerPublisher } from '../../firmware-hooks/publish.ts';
import { agentReattest } from '../../firmware-hooks/reattest.ts';
import { hasSnapshot } from '../../firmware-hooks/store-snapshot.ts';
import { newP256Key } from '../../runtime/agent/keys.ts';
import { MemoryLogger } from '../../runtime/core/logger.ts';
import { signManifest } from '../../runtime/firmware/manifest.ts';
import { keyFileProtector } from '../../runtime/store/key-file.ts';
import type { DataKeyProtector } from '../../runtime/store/protector.ts';
import type { GatewayRecord } from '../../runtime/store/records.ts';
import { type LevelDb, SealedStore } from '../../runtime/store/sealed-store.ts';
import { VirtualClock } from '../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../sim/random.ts';
import { launchSwtpm, type SwtpmInstance } from '../../sim/swtpm/launcher.ts';
import { rejects } from '../helpers/rejects.ts';
import { FakeIssuer } from '../runtime/agent/helpers/fake-issuer.ts';
import { TestTokenAttestor } from '../runtime/agent/helpers/test-attestor.ts';
import { ReferenceGate } from './helpers/reference-issuer.ts';

const PCRS = [0, 7];
const sha = (s: string): Buffer => createHash('sha256').update(s).digest();
/** What a PCR holds after one extend from reset: SHA-256(zeros ‖ digest). */
const expectedAfter = (m: string): string =>
  createHash('sha256').update(Buffer.alloc(32)).update(sha(m)).digest('hex');

let tpm: SwtpmInstance;
let transport: TpmTransport;
let dir: string;
let vendorKey: KeyObject;
let otherKey: KeyObject;

async function bootFirmware(name: string): Promise<void> {
  await tpm.reboot(transport);
  for (const p of PCRS) await extendPcr(transport, p, 'sha256', sha(`${name}:pcr${p}`));
}

function manifestFor(version: string, firmware: string, key = vendorKey): string {
  const pcrs = Object.fromEntries(PCRS.map((p) => [p, expectedAfter(`${firmware}:pcr${p}`)]));
  return signManifest({ version, bank: 'sha256', pcrs }, key, Date.UTC(2026, 0, 1));
}

interface Gateway {
  ctx: HookContext;
  db: LevelDb;
  gate: ReferenceGate;
  logger: MemoryLogger;
  protectors: { current: DataKeyProtector; transition: DataKeyProtector; next: DataKeyProtector };
  serialNow(p: DataKeyProtector): Promise<string>;
  manifestFile: string;
}

/** A gateway on the old firmware 1.0 with an identity obtained by attestation. */
async function gateway(tag: string): Promise<Gateway> {
  const clock = new VirtualClock(Date.UTC(2026, 0, 1));
  const random = seededRandom(tag);
  const logger = new MemoryLogger();
  const sub = await mkdtemp(join(dir, `${tag}-`));
  const db = new MemoryLevel<string, Uint8Array>({
    keyEncoding: 'utf8',
    valueEncoding: 'view',
  }) as unknown as LevelDb;
  const protectors = {
    current: await keyFileProtector(join(sub, 'kek-current'), random, logger),
    transition: await keyFileProtector(join(sub, 'kek-transition'), random, logger),
    next: await keyFileProtector(join(sub, 'kek-next'), random, logger),
  };
  const gate = new ReferenceGate([vendorKey], () => readPcrs(transport, 'sha256', PCRS));
  const issuer = new FakeIssuer(clock, random);
  const upstream = gate.wrap(issuer.upstream());
  const attestor = new TestTokenAttestor();
  await attestor.start();
  await bootFirmware('fw-1.0');
  gate.publish(manifestFor('1.0', 'fw-1.0'));
  const reattest = agentReattest({
    db,
    attestor,
    upstream,
    trustDomain: issuer.trustDomain,
    newKey: newP256Key,
    clock,
    random,
    logger,
  });
  await reattest(protectors.current); // first boot: the identity of firmware 1.0
  const serialNow = async (p: DataKeyProtector): Promise<string> => {
    const store = await SealedStore.open({ db, protector: p, random, logger });
    const rec = await store.get<GatewayRecord>('gateway');
    assert.ok(rec, 'the store holds a gateway identity');
    return new X509Certificate(rec.svidChain[0] as Uint8Array).serialNumber;
  };
  const ctx: HookContext = {
    stateDir: join(sub, 'ota'),
    db,
    sealing: {
      current: protectors.current,
      transition: protectors.transition,
      next: async () => protectors.next,
    },
    trusted: [vendorKey],
    publish: issuerPublisher(upstream),
    readPcrs: (bank, idx) => readPcrs(transport, bank, idx),
    reattest,
    now: () => clock.now(),
    logger,
  };
  return { ctx, db, gate, logger, protectors, serialNow, manifestFile: join(sub, 'manifest.json') };
}

test.before(async () => {
  tpm = await launchSwtpm();
  transport = await openTransport(tpm.spec);
  dir = await mkdtemp(join(tmpdir(), 'edgeward-ota-'));
  vendorKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
});

test.after(async () => {
  await tpm.stop(transport);
  await transport.close();
  await rm(dir, { recursive: true, force: true });
});

test('measurements: PCR_Extend after a reboot gives SHA-256(0 ‖ digest), reset by the next reboot', async () => {
  await bootFirmware('fw-x');
  const live = await readPcrs(transport, 'sha256', PCRS);
  assert.is(live[0], expectedAfter('fw-x:pcr0'));
  assert.is(live[7], expectedAfter('fw-x:pcr7'));
  await tpm.reboot(transport);
  assert.is((await readPcrs(transport, 'sha256', [0]))[0], '0'.repeat(64));
});

test('signed manifest: pre-install, post-install, reboot, post-boot re-attests, commit', async () => {
  const g = await gateway('ok');
  const before = await g.serialNow(g.protectors.current);
  await writeFile(g.manifestFile, manifestFor('2.0', 'fw-2.0'));
  await preInstall({ ...g.ctx, manifestFile: g.manifestFile, expectVersion: '2.0', now: g.ctx.now() });
  await postInstall(g.ctx);
  assert.is(g.gate.published.at(-1)?.version, '2.0', 'reference values published before the reboot');
  assert.ok(await hasSnapshot(g.db));
  // Mender runs ArtifactCommit_Enter only after the reboot; asked early it must answer "retry later".
  const early = await rejects(() => commit({ ...g.ctx, db: async () => g.db }), 'ERR_HOOK_NOT_READY');
  assert.is(exitCodeFor(early, 'commit'), HOOK_EXIT.retryLater);

  await bootFirmware('fw-2.0');
  const out = await postBoot(g.ctx);
  assert.is(out.version, '2.0');
  assert.is(out.identity?.spiffeId, 'spiffe://fleet.example/gateway/gw-1');
  assert.is((await readState(g.ctx.stateDir))?.phase, 'booted');
  const after = await g.serialNow(g.protectors.next);
  assert.is.not(after, before, 'post-boot rotated the SVID');
  await rejects(() => g.serialNow(g.protectors.current), 'ERR_STORE_KEY'); // re-sealed under `next`

  await commit({ ...g.ctx, db: async () => g.db });
  assert.is(await readState(g.ctx.stateDir), undefined);
  assert.not.ok(await hasSnapshot(g.db));
  assert.is(await g.serialNow(g.protectors.next), after);
});

test('wrong manifest: post-boot fails (exit 4), commit refused, rollback restores the old identity', async () => {
  const g = await gateway('wrong');
  const before = await g.serialNow(g.protectors.current);
  // Properly signed, but the values of some other build than the one that boots.
  await writeFile(g.manifestFile, manifestFor('2.0', 'fw-2.0-other-build'));
  await preInstall({ ...g.ctx, manifestFile: g.manifestFile, now: g.ctx.now() });
  await postInstall(g.ctx);
  await bootFirmware('fw-2.0');
  const err = await rejects(() => postBoot(g.ctx), 'ERR_HOOK_PCR_MISMATCH');
  assert.is(exitCodeFor(err, 'post-boot'), HOOK_EXIT.identityLost);
  assert.is((await readState(g.ctx.stateDir))?.failure?.code, 'ERR_HOOK_PCR_MISMATCH');
  const refused = await rejects(() => commit({ ...g.ctx, db: async () => g.db }), 'ERR_HOOK_STATE');
  assert.is(exitCodeFor(refused, 'commit'), HOOK_EXIT.failed);

  await bootFirmware('fw-1.0'); // the OTA tool boots the old slot
  const r = await rollback({ ...g.ctx, db: async () => g.db });
  assert.ok(r.restored);
  assert.is(await g.serialNow(g.protectors.current), before, 'old identity, old sealing');
  assert.is(await readState(g.ctx.stateDir), undefined);
  assert.not.ok(await hasSnapshot(g.db));
});

test('unsigned manifest: pre-install refuses (exit 3); smuggled past it, post-boot fails and rollback restores', async () => {
  const g = await gateway('unsigned');
  const before = await g.serialNow(g.protectors.current);
  const forged = manifestFor('2.0', 'fw-2.0', otherKey);
  await writeFile(g.manifestFile, forged);
  const e1 = await rejects(
    () => preInstall({ ...g.ctx, manifestFile: g.manifestFile, now: g.ctx.now() }),
    'ERR_HOOK_MANIFEST_REFUSED',
  );
  assert.is(exitCodeFor(e1, 'pre-install'), HOOK_EXIT.manifestRefused);
  const stripped = JSON.stringify({ ...JSON.parse(manifestFor('2.0', 'fw-2.0')), signature: '' });
  await writeFile(g.manifestFile, stripped);
  await rejects(
    () => preInstall({ ...g.ctx, manifestFile: g.manifestFile, now: g.ctx.now() }),
    'ERR_HOOK_MANIFEST_REFUSED',
  );
  const e2 = await rejects(
    () => preInstall({ ...g.ctx, manifestFile: undefined, now: g.ctx.now() }),
    'ERR_HOOK_MANIFEST_MISSING',
  );
  assert.is(exitCodeFor(e2, 'pre-install'), HOOK_EXIT.manifestRefused);

  // An installer that skipped pre-install and wrote the state itself, with a foreign manifest.
  await writeFile(g.manifestFile, manifestFor('2.0', 'fw-2.0'));
  await preInstall({ ...g.ctx, manifestFile: g.manifestFile, now: g.ctx.now() });
  await postInstall(g.ctx);
  const st = await readState(g.ctx.stateDir);
  assert.ok(st);
  await writeState(g.ctx.stateDir, { ...st, manifest: forged });
  await bootFirmware('fw-2.0');
  const e3 = await rejects(() => postBoot(g.ctx), 'ERR_HOOK_MANIFEST_REFUSED');
  assert.is(exitCodeFor(e3, 'post-boot'), HOOK_EXIT.identityLost);
  await bootFirmware('fw-1.0');
  await rollback({ ...g.ctx, db: async () => g.db });
  assert.is(await g.serialNow(g.protectors.current), before);
});

test('reference values not at the issuer: re-attestation refused, post-boot fails, rollback', async () => {
  const g = await gateway('unpublished');
  const before = await g.serialNow(g.protectors.current);
  await writeFile(g.manifestFile, manifestFor('2.0', 'fw-2.0'));
  await preInstall({ ...g.ctx, manifestFile: g.manifestFile, now: g.ctx.now() });
  // The issuer lost the publication (e.g. another issuer without shared store): measured values unknown.
  await postInstall({ ...g.ctx, publish: async () => {} });
  await bootFirmware('fw-2.0');
  const err = await rejects(() => postBoot(g.ctx), 'ERR_HOOK_REATTEST');
  assert.is((err as unknown as { cause: { code: string } }).cause.code, 'ERR_UPSTREAM_REFUSED');
  assert.is(g.gate.refusals, 1);
  await bootFirmware('fw-1.0');
  await rollback({ ...g.ctx, db: async () => g.db });
  assert.is(await g.serialNow(g.protectors.current), before);
});

test('post-install: an issuer that refuses the manifest stops the update before anything changes', async () => {
  const g = await gateway('publish');
  await writeFile(g.manifestFile, manifestFor('2.0', 'fw-2.0'));
  await preInstall({ ...g.ctx, manifestFile: g.manifestFile, now: g.ctx.now() });
  const err = await rejects(
    () =>
      postInstall({
        ...g.ctx,
        publish: async () => {
          throw new Error('503');
        },
      }),
    'ERR_HOOK_PUBLISH',
  );
  assert.is(exitCodeFor(err, 'post-install'), HOOK_EXIT.failed);
  assert.is((await readState(g.ctx.stateDir))?.phase, 'verified');
  assert.not.ok(await hasSnapshot(g.db));
  await g.serialNow(g.protectors.current); // still sealed as before
  await rejects(() => postBoot(g.ctx), 'ERR_HOOK_STATE');
  const text = await readFile(g.manifestFile, 'utf8');
  assert.ok(text.includes('edgeward-firmware-manifest/1'));
});

test.run();
