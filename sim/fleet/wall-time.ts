/**
 * The process wall clock under the fleet's virtual time, for the parts of a run that are real
 * sockets. OpenSSL checks a peer certificate's validity against `time()`, not against any
 * injected Clock, so a device SDK's TLS handshake with a gateway whose SVID was issued at virtual
 * time T only succeeds when the process's wall clock also says T. The fleet simulator therefore
 * runs its MQTT part under libfaketime (Debian `libfaketime`), with the wall clock frozen at a
 * time read from a file that `FleetClock` rewrites whenever virtual time moves; the monotonic
 * clock stays real (`FAKETIME_DONT_FAKE_MONOTONIC=1`), so Node's timers, keepalives and socket
 * timeouts run in real time. Only the simulator's own process is started this way.
 *
 * @example
 * ```ts
 * const env = faketimeEnv(file);                // undefined when libfaketime is not installed
 * spawn(process.execPath, argv, { env: { ...process.env, ...env } });
 * // in the child:
 * const clock = new FleetClock(start, processWallTime());
 * ```
 */
import { existsSync, openSync, writeFileSync, writeSync } from 'node:fs';
import type { Timer } from '../../runtime/core/clock.ts';
import { VirtualClock } from '../clock/virtual-clock.ts';
import { SimError } from '../errors.ts';

const LIBRARY_DIRS = [
  '/usr/lib/x86_64-linux-gnu/faketime',
  '/usr/lib/aarch64-linux-gnu/faketime',
  '/usr/lib/arm-linux-gnueabihf/faketime',
  '/usr/lib/faketime',
  '/usr/local/lib/faketime',
];

/** Path of libfaketime.so.1, or undefined when it is not installed. */
export function findFaketime(): string | undefined {
  for (const d of LIBRARY_DIRS) if (existsSync(`${d}/libfaketime.so.1`)) return `${d}/libfaketime.so.1`;
  return undefined;
}

/** The environment that runs a child process on the wall time written to `file`. */
export function faketimeEnv(file: string): Record<string, string> | undefined {
  const lib = findFaketime();
  if (lib === undefined) return undefined;
  return {
    LD_PRELOAD: lib,
    FAKETIME_TIMESTAMP_FILE: file,
    FAKETIME_NO_CACHE: '1',
    FAKETIME_DONT_FAKE_MONOTONIC: '1',
    TZ: 'UTC',
  };
}

/** Writes the process wall time (whole seconds, UTC) when it changes. */
export interface WallTimeSink {
  set(ms: number): void;
}

const stamp = (ms: number): string => `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')}\n`;

/**
 * The sink of this process, when it runs under libfaketime; checks that writing the file really
 * moves `Date.now()` (so a misconfigured run fails at once, not with TLS errors later).
 */
export function processWallTime(env: NodeJS.ProcessEnv = process.env): WallTimeSink {
  const file = env.FAKETIME_TIMESTAMP_FILE;
  if (file === undefined || !(env.LD_PRELOAD ?? '').includes('faketime'))
    throw new SimError('ERR_SIM_OPTIONS', 'the MQTT part of the fleet simulation needs libfaketime');
  const probe = Date.UTC(2001, 2, 3, 4, 5, 6);
  let last = Number.NaN;
  // One descriptor for the run, each stamp written over the last in place (its length never
  // changes): one pwrite. writeFileSync opened, truncated and closed the file for every new
  // virtual second (some 14,000 times in the CI soak), which took milliseconds each on an
  // overlay or busy file system: a good part of the soak's wall time. The file is never empty:
  // libfaketime exits on a stamp it cannot parse (another thread may read the time meanwhile).
  writeFileSync(file, stamp(probe));
  const fd = openSync(file, 'r+');
  const sink: WallTimeSink = {
    set(ms: number): void {
      const s = Math.floor(ms / 1000);
      if (s === last) return;
      last = s;
      writeSync(fd, stamp(s * 1000), 0);
    },
  };
  sink.set(probe);
  if (Math.abs(Date.now() - probe) > 1000)
    throw new SimError(
      'ERR_SIM_OPTIONS',
      `libfaketime is preloaded but the wall clock does not follow ${file}`,
    );
  return sink;
}

/**
 * The fleet's virtual clock, mirrored into the process wall clock whenever it moves. With a
 * `realIo` hook (real sockets whose timeouts run on this clock), time stops before each timer
 * until the hook says the real I/O under way has finished or can only be ended by time.
 */
export class FleetClock extends VirtualClock {
  readonly #sink: WallTimeSink | undefined;
  realIo: (() => Promise<void>) | undefined;

  constructor(startMs: number, sink?: WallTimeSink) {
    super(startMs);
    this.#sink = sink;
    sink?.set(startMs);
  }

  override setTimer(name: string, delayMs: number, fn: () => void): Timer {
    const sink = this.#sink;
    if (sink === undefined) return super.setTimer(name, delayMs, fn);
    return super.setTimer(name, delayMs, () => {
      sink.set(this.now());
      fn();
    });
  }

  override async advance(ms: number): Promise<void> {
    const io = this.realIo;
    if (io === undefined) {
      await super.advance(ms);
      this.#sink?.set(this.now());
      return;
    }
    const target = this.now() + ms;
    for (;;) {
      await io();
      const next = this.pendingTimers()[0];
      if (next === undefined || next.due > target) break;
      await super.advance(Math.max(0, next.due - this.now()));
      this.#sink?.set(this.now());
    }
    await super.advance(target - this.now());
    this.#sink?.set(this.now());
    await io();
  }

  override set(ms: number): void {
    super.set(ms);
    this.#sink?.set(ms);
  }
}
