/**
 * SoftHSM2 tokens for tests (Debian's `softhsm2`, installed by `npm test`). SoftHSM2 reads
 * SOFTHSM2_CONF when the module initialises, so each test process gets one temp token
 * directory (set here, on import, unless the caller set one); each test initialises its own
 * token in it (`softhsm2-util --init-token`, a unique label) with a 0600 PIN file. `remove()`
 * deletes the token's directory under the running issuer (a token pulled out), `restore()`
 * puts it back.
 *
 * @example
 * ```ts
 * const t = softHsmToken();
 * const key = await generatePkcs11CaKey({ uri: t.uri('issuer-ca'), module: t.module, pinFile: t.pinFile });
 * t.remove(); ... t.restore();
 * ```
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SOFTHSM2_MODULE =
  ['/usr/lib/softhsm/libsofthsm2.so', '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so'].find((p) =>
    existsSync(p),
  ) ?? '/usr/lib/softhsm/libsofthsm2.so';

const root = mkdtempSync(join(tmpdir(), 'edgeward-softhsm-'));
const tokens = join(root, 'tokens');
mkdirSync(tokens);
if (process.env.SOFTHSM2_CONF === undefined) {
  const conf = join(root, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  process.env.SOFTHSM2_CONF = conf;
}
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

export const USER_PIN = '4711-edgeward';
let n = 0;

export interface SoftHsmToken {
  readonly label: string;
  readonly module: string;
  /** A 0600 file with the user PIN. */
  readonly pinFile: string;
  /** A 0600 file with a wrong PIN. */
  readonly wrongPinFile: string;
  /** `pkcs11:token=<label>;object=<object>`. */
  uri(object: string): string;
  /** Delete the token's directory (the token is gone for the module). */
  remove(): void;
  /** Put it back as it was at `remove()`. */
  restore(): void;
}

/** A fresh token with a unique label in this process's SoftHSM2 directory. */
export function softHsmToken(): SoftHsmToken {
  const label = `edgeward-${process.pid}-${++n}`;
  const before = new Set(readdirSync(tokens));
  execFileSync(
    'softhsm2-util',
    ['--init-token', '--free', '--label', label, '--pin', USER_PIN, '--so-pin', 'so-pin-1234'],
    { env: process.env, stdio: 'ignore' },
  );
  const dir = readdirSync(tokens).find((d) => !before.has(d));
  if (dir === undefined) throw new Error('softhsm2-util made no token directory');
  const pinFile = join(root, `${label}.pin`);
  const wrongPinFile = join(root, `${label}.wrong-pin`);
  writeFileSync(pinFile, `${USER_PIN}\n`, { mode: 0o600 });
  writeFileSync(wrongPinFile, 'not-the-pin\n', { mode: 0o600 });
  const path = join(tokens, dir);
  const saved = join(root, `${dir}.removed`);
  return {
    label,
    module: SOFTHSM2_MODULE,
    pinFile,
    wrongPinFile,
    uri: (object) => `pkcs11:token=${encodeURIComponent(label)};object=${encodeURIComponent(object)}`,
    remove() {
      cpSync(path, saved, { recursive: true });
      rmSync(path, { recursive: true, force: true });
    },
    restore() {
      cpSync(saved, path, { recursive: true });
      rmSync(saved, { recursive: true, force: true });
    },
  };
}

/**
 * How many sessions this process has open on the token labelled `label`, as the module says:
 * SoftHSM2 gives no session count in its token info (CK_UNAVAILABLE_INFORMATION), so every
 * session handle it can have given out (1..4096; it reuses freed ones) is asked for its
 * session info (C_GetSessionInfo), and those on the token's slot are counted.
 */
export async function openSessions(label: string, module = SOFTHSM2_MODULE): Promise<number> {
  // Imported here: the binding is optional, and only PKCS#11 tests call this.
  const { Pkcs11Module } = await import('../../runtime/issuer/pkcs11/module.ts');
  const m = await Pkcs11Module.open(module);
  try {
    const api = m.api as typeof m.api & { C_GetSessionInfo(s: Buffer): { slotID: Buffer } };
    const slot = api.C_GetSlotList(true).find((s) => api.C_GetTokenInfo(s).label.trimEnd() === label);
    if (slot === undefined) throw new Error(`no token ${label}`);
    let n = 0;
    for (let h = 1; h <= 4096; h++) {
      const handle = Buffer.alloc(8);
      handle.writeBigUInt64LE(BigInt(h));
      try {
        if (api.C_GetSessionInfo(handle).slotID.equals(slot)) n++;
      } catch {
        // CKR_SESSION_HANDLE_INVALID: no such session.
      }
    }
    return n;
  } finally {
    await m.release();
  }
}
