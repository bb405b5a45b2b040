/**
 * The simulated TPM's memory: persistent state (seeds, persistent objects, NV, counters) and
 * volatile state (PCR banks, three transient object slots, three session slots, the null seed),
 * plus the operations commands share: power-on, Startup/Shutdown semantics, handle resolution,
 * hierarchy proofs, clock info and saving. Command handlers live in `commands/`; the byte-level
 * dispatcher in `dispatch.ts`.
 */

import { kdfa } from '../../attestors/tpm/crypto/kdf.ts';
import { HASHES, TPM_ALG, TPM_HT, TPM_RH, TPM_SU } from '../../attestors/tpm/wire/constants.ts';
import type { Clock } from '../../runtime/core/clock.ts';
import type { Logger } from '../../runtime/core/logger.ts';
import type { Random } from '../../runtime/core/random.ts';
import type { SimObject } from './object.ts';
import { RC, rc, rcParam } from './rc.ts';
import type { Session } from './session.ts';
import type { PersistentState } from './state.ts';
import type { StateStore } from './store.ts';

export const MAX_OBJECTS = 3;
export const MAX_SESSIONS = 3;
/** Loaded plus context-saved sessions. */
export const MAX_ACTIVE_SESSIONS = 64;
export const PCR_COUNT = 24;
/** Firmware version reported in TPM_PT_FIRMWARE_VERSION_1/2 and TPMS_ATTEST. */
export const FIRMWARE_VERSION = 0x2026010100000001n;
/** The manufacturer ID ("EDGW": not a registered vendor — this is a simulator). */
export const MANUFACTURER = 0x45444757;

export interface TpmConfig {
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  /** Active PCR banks (hash algorithm IDs). */
  readonly banks: readonly number[];
  /** libtpms 0.9.2 quirk: TPM_RC_RETRY on the first authValue use of a DA object after Startup. */
  readonly retryQuirk: boolean;
  /** Failed authorizations of DA-protected objects before lockout. */
  readonly maxTries: number;
}

export class Tpm {
  readonly config: TpmConfig;
  readonly store: StateStore;
  readonly state: PersistentState;

  started = false;
  /** [commandCode, TPMA_CC] of every implemented command, for GetCapability(COMMANDS). */
  commandAttributes: readonly [number, number][] = [];
  readonly pcrs = new Map<number, Buffer[]>();
  pcrUpdateCounter = 0;
  readonly objects: (SimObject | undefined)[] = new Array(MAX_OBJECTS).fill(undefined);
  readonly sessions = new Map<number, Session>();
  /** Sessions whose context was saved: handle reserved, not usable until ContextLoad. */
  readonly savedSessions = new Set<number>();
  nullSeed: Buffer = Buffer.alloc(32);
  contextSequence = 0n;
  lockedOut = false;
  /** DA-protected objects already used since Startup (for the retry quirk). */
  daUsed = false;
  #powered = false;
  #powerOnWall = 0;
  #clockAtPowerOn = 0;
  #lastClock = 0;

  constructor(config: TpmConfig, store: StateStore, state: PersistentState) {
    this.config = config;
    this.store = store;
    this.state = state;
  }

  /** _TPM_Init: volatile memory is lost. A power loss without TPM2_Shutdown makes the clock unsafe. */
  powerOn(): void {
    this.started = false;
    this.pcrs.clear();
    this.objects.fill(undefined);
    this.sessions.clear();
    this.savedSessions.clear();
    this.#powered = true;
    this.#powerOnWall = this.config.clock.now();
    this.#clockAtPowerOn = this.state.clockMs;
    this.#lastClock = this.state.clockMs;
  }

  /** Record a power loss: called before powerOn when the previous run was not shut down. */
  powerLost(): void {
    if (this.state.shutdown === 'none') this.state.safe = false;
    if (this.#powered) this.state.clockMs = this.clockMs();
    this.store.save(this.state);
  }

  /** TPM2_Startup (Part 3 §9.3): TPM Reset, Restart or Resume. */
  startup(type: number): void {
    if (this.started) throw rc(RC.INITIALIZE);
    if (type !== TPM_SU.CLEAR && type !== TPM_SU.STATE) throw rcParam(RC.VALUE, 1);
    const s = this.state;
    if (type === TPM_SU.STATE && s.shutdown !== 'state') throw rcParam(RC.VALUE, 1);
    const saved = s.savedPcrs;
    if (type === TPM_SU.CLEAR && s.shutdown !== 'state') {
      // TPM Reset: new null seed, contexts invalid, resetCount++.
      s.resetCount += 1;
      s.restartCount = 0;
      this.nullSeed = this.config.random.bytes(32);
      this.contextSequence = 0n;
    } else {
      s.restartCount += 1;
    }
    for (const alg of this.config.banks) {
      const size = HASHES[alg]?.size ?? 32;
      const restored = type === TPM_SU.STATE ? saved?.get(alg) : undefined;
      this.pcrs.set(
        alg,
        Array.from({ length: PCR_COUNT }, (_, i) => Buffer.from(restored?.[i] ?? Buffer.alloc(size))),
      );
    }
    // PCRs 17–22 start at all ones after a reset (PC Client profile); 0–16 and 23 at zero.
    if (type === TPM_SU.CLEAR)
      for (const bank of this.pcrs.values()) for (let i = 17; i <= 22; i++) bank[i]?.fill(0xff);
    this.pcrUpdateCounter = 0;
    s.shutdown = 'none';
    s.savedPcrs = undefined;
    this.lockedOut = s.daFailedTries >= this.config.maxTries;
    this.daUsed = false;
    this.started = true;
    this.save();
  }

  /** TPM2_Shutdown (Part 3 §9.4). */
  shutdown(type: number): void {
    if (type !== TPM_SU.CLEAR && type !== TPM_SU.STATE) throw rcParam(RC.VALUE, 1);
    this.state.shutdown = type === TPM_SU.STATE ? 'state' : 'clear';
    this.state.safe = true;
    this.state.savedPcrs =
      type === TPM_SU.STATE
        ? new Map([...this.pcrs].map(([a, v]) => [a, v.map((b) => Buffer.from(b))]))
        : undefined;
    this.save();
  }

  /** Milliseconds powered (monotonic even if the host wall clock jumps back). */
  clockMs(): number {
    const now = this.#clockAtPowerOn + Math.max(0, this.config.clock.now() - this.#powerOnWall);
    this.#lastClock = Math.max(this.#lastClock, now);
    return this.#lastClock;
  }

  save(): void {
    this.state.clockMs = this.clockMs();
    this.store.save(this.state);
  }

  /**
   * TPMS_CLOCK_INFO values. `safe` is cleared by a power loss and set again by an orderly
   * shutdown or once the clock has run a full NV update interval (2^22 ms) since power-on.
   */
  clockInfo(): { clock: bigint; resetCount: number; restartCount: number; safe: boolean } {
    const clock = this.clockMs();
    if (!this.state.safe && clock - this.#clockAtPowerOn >= 2 ** 22) {
      this.state.safe = true;
      this.save();
    }
    const s = this.state;
    return { clock: BigInt(clock), resetCount: s.resetCount, restartCount: s.restartCount, safe: s.safe };
  }

  seedOf(hierarchy: number): Buffer {
    switch (hierarchy) {
      case TPM_RH.ENDORSEMENT:
        return this.state.seeds.endorsement;
      case TPM_RH.OWNER:
        return this.state.seeds.owner;
      case TPM_RH.PLATFORM:
        return this.state.seeds.platform;
      default:
        return this.nullSeed;
    }
  }

  /** The hierarchy's proof value (tickets, obfuscation). */
  proof(hierarchy: number): Buffer {
    return kdfa(TPM_ALG.SHA256, this.seedOf(hierarchy), 'PROOF', Buffer.alloc(0), Buffer.alloc(0), 256);
  }

  /** Key for saved contexts: derived from the null seed, so contexts die with a TPM Reset. */
  contextKey(label: string, bits: number): Buffer {
    return kdfa(TPM_ALG.SHA256, this.nullSeed, label, Buffer.alloc(0), Buffer.alloc(0), bits);
  }

  /** A loaded transient or persistent object, or undefined. */
  object(handle: number): SimObject | undefined {
    const type = handle >>> 24;
    if (type === TPM_HT.TRANSIENT) {
      const slot = handle - 0x80000000;
      return slot >= 0 && slot < MAX_OBJECTS ? this.objects[slot] : undefined;
    }
    if (type === TPM_HT.PERSISTENT) return this.state.persistent.get(handle >>> 0);
    return undefined;
  }

  /** Put an object in the lowest free slot; TPM_RC_OBJECT_MEMORY when all are taken. */
  load(obj: SimObject): number {
    const slot = this.objects.indexOf(undefined);
    if (slot < 0) throw rc(RC.OBJECT_MEMORY);
    this.objects[slot] = obj;
    return (0x80000000 + slot) >>> 0;
  }

  flushObject(handle: number): boolean {
    const slot = handle - 0x80000000;
    if (handle >>> 24 !== TPM_HT.TRANSIENT || slot >= MAX_OBJECTS || this.objects[slot] === undefined)
      return false;
    this.objects[slot] = undefined;
    return true;
  }

  /** The lowest free session handle; SESSION_MEMORY with 3 loaded, SESSION_HANDLES with 64 active. */
  sessionHandle(typeByte: number): number {
    if (this.sessions.size >= MAX_SESSIONS) throw rc(RC.SESSION_MEMORY);
    if (this.sessions.size + this.savedSessions.size >= MAX_ACTIVE_SESSIONS) throw rc(RC.SESSION_HANDLES);
    for (let i = 0; ; i++) {
      const h = ((typeByte << 24) | i) >>> 0;
      if (!this.sessions.has(h) && !this.savedSessions.has(h)) return h;
    }
  }

  /** Current PCR values of the active banks. */
  bank(alg: number): Buffer[] | undefined {
    return this.pcrs.get(alg);
  }
}
