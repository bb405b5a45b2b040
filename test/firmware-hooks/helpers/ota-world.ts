/**
 * TEST HELPER: the world of an OTA test, all real — a TPM (a real swtpm, or the TypeScript
 * simulator kept powered in this process and served on a Unix socket with swtpm's raw protocol),
 * the real issuer (`startTpmIssuer` with `pcrPolicy: 'manifests'` and the vendor's firmware
 * key), an agent config file for the gateway, and `edgeward` itself run as a child process
 * (`node --import tsx runtime/cli/bin.ts`).
 *
 * Why the simulator is served on a socket: `sim:DIR` powers the simulator on in every process
 * that opens it (Startup(CLEAR): PCRs back to zero), so a measurement made before `edgeward hook
 * post-boot` could not survive into that process. A gateway's TPM stays powered across the hook
 * processes; the socket keeps one simulator powered the same way, and `reboot()` power-cycles it.
 */
import 'reflect-metadata';
import { spawn } from 'node:child_process';
import { createHash, generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { TpmAttestor } from '../../../attestors/tpm/attestor.ts';
import { openTransport } from '../../../attestors/tpm/transport/open.ts';
import type { TpmTransport } from '../../../attestors/tpm/transport/transport.ts';
import { extendPcr } from '../../../firmware-hooks/pcrs.ts';
import { openStoreDb } from '../../../firmware-hooks/store-db.ts';
import { nullLogger } from '../../../runtime/core/logger.ts';
import type { Random } from '../../../runtime/core/random.ts';
import { signManifest } from '../../../runtime/firmware/manifest.ts';
import { type RunningIssuer, startIssuer } from '../../../runtime/issuer/start.ts';
import { openMemoryStore } from '../../../runtime/issuer/store.ts';
import { attestorProtector } from '../../../runtime/store/protector.ts';
import { type GatewayRecord, NAMES } from '../../../runtime/store/records.ts';
import { SealedStore } from '../../../runtime/store/sealed-store.ts';
import { createCsr, parseCsr } from '../../../runtime/svid/csr.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { launchSwtpm } from '../../../sim/swtpm/launcher.ts';
import { openSimTransport } from '../../../sim/tpm/index.ts';
import { testRandom } from '../../helpers/seed.ts';
import { startTpmIssuer } from '../../runtime/agent/helpers/tpm-issuer.ts';

export const ROOT = new URL('../../../', import.meta.url).pathname;
export const PCRS = [0, 7];
export const SELECTION = 'sha256:0,7';
const sha = (s: string): Buffer => createHash('sha256').update(s).digest();
/** What PCR `p` holds after the boot of `firmware`: one extend from reset. */
export const measured = (firmware: string, p: number): string =>
  createHash('sha256')
    .update(Buffer.alloc(32))
    .update(sha(`${firmware}:pcr${p}`))
    .digest('hex');

export interface Tpm {
  /** The `tpm:` value of the agent config. */
  readonly spec: string;
  readonly root: X509Certificate;
  readonly intermediate: X509Certificate;
  /** Run `fn` on a connection of this process (closed afterwards: swtpm serves one client). */
  use<T>(fn: (t: TpmTransport) => Promise<T>): Promise<T>;
  /** Power cycle, then measure `firmware` into PCRs 0 and 7 as its boot chain would. */
  boot(firmware: string): Promise<void>;
  close(): Promise<void>;
}

export async function swtpmTpm(): Promise<Tpm> {
  const tpm = await launchSwtpm();
  const use = async <T>(fn: (t: TpmTransport) => Promise<T>): Promise<T> => {
    const t = await openTransport(tpm.spec);
    try {
      return await fn(t);
    } finally {
      await t.close();
    }
  };
  return {
    spec: tpm.spec,
    root: tpm.root,
    intermediate: tpm.intermediate,
    use,
    boot: (fw) =>
      use(async (t) => {
        await tpm.reboot(t);
        for (const p of PCRS) await extendPcr(t, p, 'sha256', sha(`${fw}:pcr${p}`));
      }),
    close: () => tpm.stop(),
  };
}

export async function simTpm(dir: string): Promise<Tpm> {
  const sim = await openSimTransport(join(dir, 'sim-state'), { logger: nullLogger });
  const path = join(dir, 'sim.sock');
  const server: Server = createServer((sock) => {
    let buf = Buffer.alloc(0);
    let chain: Promise<void> = Promise.resolve();
    sock.on('error', () => {});
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 10) {
        const size = buf.readUInt32BE(2);
        if (size < 10 || size > 8192) {
          sock.destroy();
          return;
        }
        if (buf.length < size) return;
        const cmd = Buffer.from(buf.subarray(0, size));
        buf = buf.subarray(size);
        chain = chain.then(async () => {
          const resp = await sim.send(cmd);
          if (!sock.destroyed) sock.write(resp);
        });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const ca = sim.manufacturerCa();
  const use = async <T>(fn: (t: TpmTransport) => Promise<T>): Promise<T> => fn(sim);
  return {
    spec: `swtpm:path=${path}`,
    root: ca.root,
    intermediate: ca.intermediate,
    use,
    async boot(fw) {
      await sim.reset({ orderly: true });
      for (const p of PCRS) await extendPcr(sim, p, 'sha256', sha(`${fw}:pcr${p}`));
    },
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await sim.close();
    },
  };
}

export interface World {
  readonly tpm: Tpm;
  readonly issuer: RunningIssuer;
  readonly vendorKey: KeyObject;
  readonly vendorPub: string;
  readonly otherKey: KeyObject;
  readonly dir: string;
  /** Signed manifest text for `version` promising the values `firmware` measures. */
  manifest(version: string, firmware: string, key?: KeyObject): string;
  /** Stop the issuer (its store is kept), and start it again on the same port. */
  issuerDown(): Promise<void>;
  issuerUp(): Promise<void>;
  /** Publish a manifest as the operator would (fleet-wide reference values). */
  publish(text: string): Promise<void>;
  close(): Promise<void>;
}

export async function world(tpm: Tpm, dir: string): Promise<World> {
  const clock = new VirtualClock(Date.now());
  const random = testRandom('ota-world'); // was seeded by the (random) temp dir's name
  const vendor = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const vendorPub = join(dir, 'firmware-key.pem');
  await writeFile(vendorPub, vendor.publicKey.export({ type: 'spki', format: 'pem' }));
  const store = await openMemoryStore();
  const started = await startTpmIssuer(
    dir,
    { roots: [tpm.root], intermediates: [tpm.intermediate], pcrSelection: SELECTION, pcrPolicy: 'manifests' },
    {
      clock,
      random,
      store,
      closeStore: false,
      firmwareKeys: [vendor.publicKey],
      rateLimit: { perAddress: 10_000, perGateway: 10_000, windowMs: 60_000 },
    },
  );
  const options = started.options;
  let issuer = started.issuer;
  const port = Number(new URL(issuer.url).port);
  const manifest = (version: string, firmware: string, key: KeyObject = vendor.privateKey): string =>
    signManifest(
      { version, bank: 'sha256', pcrs: Object.fromEntries(PCRS.map((p) => [p, measured(firmware, p)])) },
      key,
      clock.now(),
    );
  return {
    tpm,
    get issuer() {
      return issuer;
    },
    async issuerDown() {
      await issuer.close();
    },
    async issuerUp() {
      issuer = await startIssuer({ ...options, port });
    },
    vendorKey: vendor.privateKey,
    vendorPub,
    otherKey,
    dir,
    manifest,
    async publish(text) {
      await issuer.issuer.addManifest({ manifest: text }, { address: '127.0.0.1' });
    },
    async close() {
      await issuer.close();
      await store.close();
    },
  };
}

/** Write the gateway's agent config (YAML) and return its path. */
export async function gatewayConfig(
  w: World,
  name: string,
  opts: { pcrPolicy?: boolean } = {},
): Promise<{ file: string; dataDir: string }> {
  const dataDir = join(w.dir, name);
  const caFile = join(w.dir, 'issuer', 'ca.pem');
  const lines = [
    'version: 1',
    'trustDomain: fleet.example',
    `dataDir: ${dataDir}`,
    `tpm: "${w.tpm.spec}"`,
    'attestation:',
    '  method: tpm',
    `  pcrs: "${SELECTION}"`,
    'upstream:',
    `  endpoints: ["${w.issuer.url}"]`,
    `  caFile: ${caFile}`,
    ...(opts.pcrPolicy ? ['sealing:', `  pcrPolicy: "${SELECTION}"`] : []),
    'broker:',
    '  listen: { host: 127.0.0.1, port: 0 }',
    '  enrollment: { host: 127.0.0.1, port: 0 }',
    'log:',
    '  level: warn',
    '',
  ];
  const file = join(w.dir, `${name}.yaml`);
  await writeFile(file, lines.join('\n'));
  return { file, dataDir };
}

export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** `edgeward <args>` as a child process (tsx), without blocking this process's event loop. */
export function edgeward(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  return runProcess(process.execPath, ['--import', 'tsx', join(ROOT, 'runtime/cli/bin.ts'), ...args], {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/tmp',
    ...env,
  });
}

/** `command <args>` in ROOT with exactly `env`, its output collected; killed after 60 s. */
export function runProcess(
  command: string,
  args: readonly string[],
  env: Record<string, string>,
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** `edgeward agent --config FILE` until it has an identity; `stop()` ends it with SIGTERM. */
export async function startAgent(configFile: string): Promise<{ stop(): Promise<number> }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'runtime/cli/bin.ts'), 'agent', '--config', configFile],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  const exited = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent did not come up:\n${out}`)), 60_000);
    const onData = (c: Buffer): void => {
      out += c.toString();
      if (/edgeward agent: spiffe:\/\//.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`agent exited with ${code}:\n${out}`));
    });
  });
  return {
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Open the gateway's store in this process as the agent would (TPM unseal); its SVID serial. */
export function gatewaySerial(w: World, dataDir: string, random: Random): Promise<string> {
  return w.tpm.use(async (transport) => {
    const db = await openStoreDb(join(dataDir, 'store'));
    const a = new TpmAttestor({ transport, random, ownsTransport: false, logger: nullLogger });
    try {
      await a.start();
      const store = await SealedStore.open({
        db,
        protector: attestorProtector(a),
        random,
        logger: nullLogger,
      });
      const rec = await store.get<GatewayRecord>(NAMES.gateway);
      if (rec === undefined) throw new Error('the store holds no gateway identity');
      return new X509Certificate(rec.svidChain[0] as Uint8Array).serialNumber.toLowerCase();
    } finally {
      await a.close();
      await db.close();
    }
  });
}

/** Attest the gateway's TPM afresh against the issuer (as post-boot would): 'ok' or the refusal code. */
export function attestNow(w: World, random: Random): Promise<string> {
  return w.tpm.use(async (transport) => {
    const a = new TpmAttestor({ transport, random, ownsTransport: false, logger: nullLogger });
    await a.start();
    try {
      const ctx = { address: '127.0.0.1' };
      const begin = await w.issuer.issuer.attestBegin(await a.begin(), ctx);
      const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
      const csr = createCsr(key);
      const proof = await a.answer(begin, parseCsr(csr).spki);
      const caCsr = createCsr(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
      await w.issuer.issuer.attestFinish({ ...proof, sessionId: begin.sessionId, csr, caCsr }, ctx);
      return 'ok';
    } catch (err) {
      return (err as { code?: string }).code ?? String(err);
    } finally {
      await a.close();
    }
  });
}
