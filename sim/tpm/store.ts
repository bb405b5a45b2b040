/**
 * The simulator's state directory: `tpm-state.json` (mode 0600, written atomically: temp file,
 * fsync, rename) plus the manufacturer CA certificates written beside it, and a `.lock` file so
 * that two live simulators never share one directory (as swtpm locks its state dir).
 */
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { SimError } from '../errors.ts';
import { type PersistentState, parseState, serializeState } from './state.ts';

export const STATE_FILE = 'tpm-state.json';
export const ROOT_CA_FILE = 'manufacturer-root-ca.pem';
export const INTERMEDIATE_CA_FILE = 'manufacturer-intermediate-ca.pem';
const LOCK_FILE = '.lock';

function io<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (cause) {
    if (cause instanceof SimError) throw cause;
    throw new SimError('ERR_SIM_STATE_IO', `${what}: ${(cause as Error).message}`, { cause });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class StateStore {
  readonly dir: string;
  #locked = false;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** Create the directory (0700) if needed and take its lock. */
  lock(): void {
    io(`create ${this.dir}`, () => mkdirSync(this.dir, { recursive: true, mode: 0o700 }));
    const path = join(this.dir, LOCK_FILE);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(path, 'wx', 0o600);
        writeSync(fd, String(process.pid));
        closeSync(fd);
        this.#locked = true;
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw io('lock', () => err as never);
        const pid = Number(io('read lock', () => readFileSync(path, 'utf8')));
        if (Number.isSafeInteger(pid) && pid > 0 && alive(pid))
          throw new SimError('ERR_SIM_LOCKED', `${this.dir} is in use by process ${pid}`);
        io('remove stale lock', () => unlinkSync(path));
      }
    }
    throw new SimError('ERR_SIM_LOCKED', `${this.dir}: could not take the lock`);
  }

  unlock(): void {
    if (!this.#locked) return;
    this.#locked = false;
    try {
      unlinkSync(join(this.dir, LOCK_FILE));
    } catch {
      // already gone: nothing to release
    }
  }

  exists(): boolean {
    try {
      statSync(join(this.dir, STATE_FILE));
      return true;
    } catch {
      return false;
    }
  }

  load(): PersistentState {
    const path = join(this.dir, STATE_FILE);
    const st = io('stat state', () => statSync(path));
    if ((st.mode & 0o077) !== 0)
      throw new SimError(
        'ERR_SIM_STATE_CORRUPT',
        `${path} has mode ${(st.mode & 0o777).toString(8)}; it holds seeds and must be 0600`,
      );
    return parseState(io('read state', () => readFileSync(path, 'utf8')));
  }

  save(state: PersistentState): void {
    this.write(STATE_FILE, serializeState(state));
  }

  /** Write `name` in the state directory atomically with mode 0600. */
  write(name: string, content: string): void {
    const path = join(this.dir, name);
    const tmp = `${path}.tmp-${process.pid}`;
    io(`write ${name}`, () => {
      const fd = openSync(tmp, 'w', 0o600);
      try {
        writeSync(fd, content);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, path);
    });
  }
}
