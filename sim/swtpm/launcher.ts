/**
 * TEST AND BENCHMARK HELPER: a real swtpm 0.7.x for one test file (ARCHITECTURE.md §7; brief §2.2,
 * §2.3, §8). `launchSwtpm()` makes a fresh temp directory holding everything (TPM state, a local CA
 * whose root and intermediate tests can trust, config files, sockets, log), provisions it with
 * `swtpm_setup` (RSA-2048 EK at 0x81010001 with a certificate at NV 0x01C00002, ECC P-384 EK at
 * 0x81010016 with a certificate at NV 0x01C00016), and starts `swtpm socket` on Unix sockets (or a
 * free TCP port pair). `stop()` shuts the TPM down orderly, ends the process and removes the
 * directory: nothing lands in system folders.
 *
 * @example
 * ```ts
 * const tpm = await launchSwtpm();
 * const transport = await openTransport(tpm.spec);
 * ... await tpm.reboot(transport); ...
 * await transport.close(); await tpm.stop();
 * ```
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { SocketTarget } from '../../attestors/tpm/transport/socket.ts';
import { SWTPM_CTRL, swtpmControl } from '../../attestors/tpm/transport/swtpm-control.ts';
import type { TpmTransport } from '../../attestors/tpm/transport/transport.ts';
import { type Clock, systemClock } from '../../runtime/core/clock.ts';

const run = promisify(execFile);

export interface SwtpmOptions {
  /** Listen on 127.0.0.1 TCP ports instead of Unix sockets. */
  readonly tcp?: boolean;
  /** Provision EKs and certificates (default true). False gives a blank TPM. */
  readonly provision?: boolean;
  readonly clock?: Clock;
}

export interface SwtpmInstance {
  /** The transport string for `openTransport`. */
  readonly spec: string;
  readonly dir: string;
  readonly data: SocketTarget;
  readonly ctrl: SocketTarget;
  /** The local CA that signed the EK certificates: trust `root`, supply `intermediate`. */
  readonly root: X509Certificate;
  readonly intermediate: X509Certificate;
  readonly pid: number;
  /**
   * A simulated reboot (brief §2.2): TPM2_Shutdown(CLEAR) over `transport`, CMD_INIT on the
   * control channel, TPM2_Startup(CLEAR) again. PCRs return to zero; transient objects are gone.
   */
  reboot(transport: TpmTransport): Promise<void>;
  /** Orderly stop, end the process, remove the directory. Idempotent. */
  stop(transport?: TpmTransport): Promise<void>;
}

const SHUTDOWN_CLEAR = Buffer.from('80010000000c000001450000', 'hex');
const STARTUP_CLEAR = Buffer.from('80010000000c000001440000', 'hex');

async function freePortPair(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => resolve(p));
      });
    });
    if (port >= 65535) continue;
    const ok = await new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port + 1, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error('no free TCP port pair for swtpm');
}

async function provision(dir: string): Promise<void> {
  const cfg = join(dir, 'cfg');
  const ca = join(dir, 'ca');
  await mkdir(cfg, { recursive: true });
  await mkdir(ca, { recursive: true, mode: 0o700 });
  await writeFile(
    join(cfg, 'swtpm_setup.conf'),
    [
      'create_certs_tool = /usr/bin/swtpm_localca',
      `create_certs_tool_config = ${join(cfg, 'swtpm-localca.conf')}`,
      `create_certs_tool_options = ${join(cfg, 'swtpm-localca.options')}`,
      'active_pcr_banks = sha256',
      '',
    ].join('\n'),
  );
  await writeFile(
    join(cfg, 'swtpm-localca.conf'),
    [
      `statedir = ${ca}`,
      `signingkey = ${join(ca, 'signkey.pem')}`,
      `issuercert = ${join(ca, 'issuercert.pem')}`,
      `certserial = ${join(ca, 'certserial')}`,
      '',
    ].join('\n'),
  );
  await writeFile(
    join(cfg, 'swtpm-localca.options'),
    '--platform-manufacturer edgeward\n--platform-version 1\n--platform-model swtpm-test\n',
  );
  // TMPDIR keeps swtpm_setup's scratch certificate directory inside ours.
  await run(
    'swtpm_setup',
    [
      '--tpm2',
      '--tpmstate',
      join(dir, 'state'),
      '--config',
      join(cfg, 'swtpm_setup.conf'),
      '--create-ek-cert',
      '--create-platform-cert',
      '--lock-nvram',
      '--ecc',
    ],
    { env: { ...process.env, TMPDIR: dir, XDG_CONFIG_HOME: cfg }, timeout: 60_000 },
  );
}

async function waitFor(check: () => Promise<boolean>, what: string, tries = 200): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`swtpm: ${what} did not come up`);
}

export async function launchSwtpm(options: SwtpmOptions = {}): Promise<SwtpmInstance> {
  const clock = options.clock ?? systemClock;
  const dir = await mkdtemp(join(tmpdir(), 'edgeward-swtpm-'));
  let child: ChildProcess | undefined;
  try {
    await mkdir(join(dir, 'state'), { recursive: true });
    if (options.provision !== false) await provision(dir);
    let data: SocketTarget;
    let ctrl: SocketTarget;
    let server: string;
    let ctrlArg: string;
    let spec: string;
    if (options.tcp) {
      const port = await freePortPair();
      data = { host: '127.0.0.1', port };
      ctrl = { host: '127.0.0.1', port: port + 1 };
      server = `type=tcp,port=${port},bindaddr=127.0.0.1`;
      ctrlArg = `type=tcp,port=${port + 1},bindaddr=127.0.0.1`;
      spec = `swtpm:host=127.0.0.1,port=${port}`;
    } else {
      const path = join(dir, 'tpm.sock');
      data = { path };
      ctrl = { path: `${path}.ctrl` };
      server = `type=unixio,path=${path}`;
      ctrlArg = `type=unixio,path=${path}.ctrl`;
      spec = `swtpm:path=${path}`;
    }
    child = spawn(
      'swtpm',
      [
        'socket',
        '--tpm2',
        '--tpmstate',
        `dir=${join(dir, 'state')}`,
        '--server',
        server,
        '--ctrl',
        ctrlArg,
        '--flags',
        'not-need-init,startup-clear',
        '--log',
        `file=${join(dir, 'swtpm.log')},level=1`,
      ],
      { stdio: 'ignore' },
    );
    const proc = child;
    let exited = false;
    proc.once('exit', () => {
      exited = true;
    });
    await waitFor(async () => {
      if (exited) throw new Error(`swtpm exited at start; see ${join(dir, 'swtpm.log')}`);
      try {
        await swtpmControl(ctrl, SWTPM_CTRL.GET_CAPABILITY, new Uint8Array(), clock, 1000);
        return true;
      } catch {
        return false;
      }
    }, 'control channel');
    if ('path' in data) {
      const p = data.path;
      await waitFor(async () => existsSync(p), 'data socket');
    }
    const caDir = join(dir, 'ca');
    const provisioned = options.provision !== false;
    const root = provisioned
      ? new X509Certificate(await readFile(join(caDir, 'swtpm-localca-rootca-cert.pem')))
      : (undefined as unknown as X509Certificate);
    const intermediate = provisioned
      ? new X509Certificate(await readFile(join(caDir, 'issuercert.pem')))
      : (undefined as unknown as X509Certificate);
    let stopped = false;
    const instance: SwtpmInstance = {
      spec,
      dir,
      data,
      ctrl,
      root,
      intermediate,
      pid: proc.pid as number,
      async reboot(transport) {
        await transport.send(SHUTDOWN_CLEAR);
        await swtpmControl(ctrl, SWTPM_CTRL.INIT, Buffer.alloc(4), clock);
        await transport.send(STARTUP_CLEAR);
      },
      async stop(transport) {
        if (stopped) return;
        stopped = true;
        if (transport !== undefined) await transport.send(SHUTDOWN_CLEAR).catch(() => undefined);
        if (!exited) {
          const gone = new Promise<void>((r) => proc.once('exit', () => r()));
          proc.kill('SIGTERM');
          const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
          await gone;
          clearTimeout(t);
        }
        await rm(dir, { recursive: true, force: true });
      },
    };
    return instance;
  } catch (err) {
    child?.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
