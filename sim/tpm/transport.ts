/**
 * The simulator behind the TPM transport seam (`send(bytes) → bytes`), with the controls tests
 * need: power cycle, injected failures (TPM_RC_RETRY, lockout, any code), a power cycle landing
 * between two commands, and slow responses timed on the injected clock. Commands are serialized:
 * concurrent callers queue, as they would on a real device.
 */

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { TpmTransport } from '../../attestors/tpm/transport/transport.ts';
import { TPM_SU } from '../../attestors/tpm/wire/constants.ts';
import { type Clock, sleep } from '../../runtime/core/clock.ts';
import type { Logger } from '../../runtime/core/logger.ts';
import { SimError } from '../errors.ts';
import { errorResponse, execute } from './dispatch.ts';
import { RC } from './rc.ts';
import { COMMANDS } from './registry.ts';
import type { Tpm } from './tpm.ts';

/** Test and operator controls of a simulated TPM. */
export interface SimControls {
  /** The state directory. */
  readonly stateDir: string;
  /** Paths of the manufacturer root and intermediate CA certificates (PEM) beside the state. */
  readonly manufacturerCaPaths: { readonly root: string; readonly intermediate: string };
  /** The manufacturer CA certificates themselves (what an issuer trusting this TPM's EK is given). */
  manufacturerCa(): { readonly root: X509Certificate; readonly intermediate: X509Certificate };
  /**
   * Power cycle: volatile state (PCRs, loaded objects, sessions) is lost, resetCount increments.
   * `orderly: true` sends Shutdown(CLEAR) first; otherwise it is a power loss (clock unsafe).
   */
  reset(options?: { orderly?: boolean }): Promise<void>;
  /** The next `n` commands are answered with `rc` (default TPM_RC_RETRY) and not executed. */
  failNext(n: number, rc?: number): void;
  /** A power loss happens after the command in flight, before the next one runs. */
  resetBeforeNext(): void;
  /** The next `n` responses are delayed by `ms` on the injected clock. */
  delayNext(n: number, ms: number): void;
  /** Put the dictionary-attack protection into lockout (true) or clear it (false). */
  lockout(on?: boolean): void;
}

export interface SimTransportDeps {
  readonly tpm: Tpm;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly autoStartup: boolean;
  readonly delayMs: number;
  readonly paths: { readonly root: string; readonly intermediate: string };
}

export class SimTransport implements TpmTransport, SimControls {
  readonly #d: SimTransportDeps;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;
  #fail: { n: number; rc: number } = { n: 0, rc: RC.RETRY };
  #delay: { n: number; ms: number } = { n: 0, ms: 0 };
  #resetPending = false;

  constructor(deps: SimTransportDeps) {
    this.#d = deps;
  }

  get stateDir(): string {
    return this.#d.tpm.store.dir;
  }

  get manufacturerCaPaths(): { readonly root: string; readonly intermediate: string } {
    return this.#d.paths;
  }

  manufacturerCa(): { readonly root: X509Certificate; readonly intermediate: X509Certificate } {
    const p = this.#d.paths;
    return {
      root: new X509Certificate(readFileSync(p.root)),
      intermediate: new X509Certificate(readFileSync(p.intermediate)),
    };
  }

  /** Power on (and Startup(CLEAR) when autoStartup), used at open and by reset(). */
  powerCycle(orderly: boolean): void {
    const tpm = this.#d.tpm;
    if (orderly && tpm.started) tpm.shutdown(TPM_SU.CLEAR);
    else tpm.powerLost();
    tpm.powerOn();
    if (this.#d.autoStartup) tpm.startup(TPM_SU.CLEAR);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  send(command: Uint8Array): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(new SimError('ERR_SIM_CLOSED', 'simulator transport is closed'));
    const bytes = Buffer.from(command.buffer, command.byteOffset, command.byteLength);
    const copy = Buffer.from(bytes);
    return this.#serial(async () => {
      if (this.#resetPending) {
        this.#resetPending = false;
        this.powerCycle(false);
      }
      let resp: Buffer;
      if (this.#fail.n > 0) {
        this.#fail.n -= 1;
        resp = errorResponse(this.#fail.rc);
      } else {
        resp = execute(this.#d.tpm, COMMANDS, copy, (err) =>
          this.#d.logger.error('tpm simulator: internal error', { err: String(err) }),
        );
      }
      let delay = this.#d.delayMs;
      if (this.#delay.n > 0) {
        this.#delay.n -= 1;
        delay += this.#delay.ms;
      }
      if (delay > 0) await sleep(this.#d.clock, delay);
      return resp;
    });
  }

  reset(options: { orderly?: boolean } = {}): Promise<void> {
    return this.#serial(async () => this.powerCycle(options.orderly === true));
  }

  failNext(n: number, rc: number = RC.RETRY): void {
    if (!Number.isSafeInteger(n) || n < 0 || !Number.isSafeInteger(rc) || rc <= 0 || rc > 0xffffffff)
      throw new SimError('ERR_SIM_OPTIONS', 'failNext needs a count >= 0 and a non-zero response code');
    this.#fail = { n, rc };
  }

  resetBeforeNext(): void {
    this.#resetPending = true;
  }

  delayNext(n: number, ms: number): void {
    if (!Number.isSafeInteger(n) || n < 0 || !(ms >= 0))
      throw new SimError('ERR_SIM_OPTIONS', 'delayNext needs a count >= 0 and a delay >= 0');
    this.#delay = { n, ms };
  }

  lockout(on = true): void {
    const tpm = this.#d.tpm;
    tpm.state.daFailedTries = on ? tpm.config.maxTries : 0;
    tpm.lockedOut = on;
    tpm.save();
  }

  /** Orderly power-off (Shutdown(CLEAR) unless the client already shut down), save, unlock. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return this.#serial(async () => {
      const tpm = this.#d.tpm;
      try {
        if (tpm.started && tpm.state.shutdown === 'none') tpm.shutdown(TPM_SU.CLEAR);
        else tpm.save();
      } finally {
        tpm.store.unlock();
      }
    });
  }
}
