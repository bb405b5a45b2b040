/**
 * What a simulated TPM keeps across power cycles (its NV memory): hierarchy seeds, persistent
 * objects, NV indices, the clock, reset/restart counters, the orderly-shutdown record with saved
 * PCRs, dictionary-attack counters and the cache of seeded RSA primes. Serialised as JSON with
 * hex strings; see `store.ts` for how it reaches the disk.
 */

import { objectName } from '../../attestors/tpm/crypto/name.ts';
import { parsePublic } from '../../attestors/tpm/wire/public.ts';
import { SimError } from '../errors.ts';
import type { SimObject } from './object.ts';

export interface NvIndex {
  readonly index: number;
  readonly nameAlg: number;
  attributes: number;
  readonly authPolicy: Buffer;
  readonly authValue: Buffer;
  data: Buffer;
}

export interface PersistentState {
  readonly seeds: { readonly endorsement: Buffer; readonly owner: Buffer; readonly platform: Buffer };
  readonly persistent: Map<number, SimObject>;
  readonly nv: Map<number, NvIndex>;
  /** Milliseconds the TPM has been powered, as last saved. */
  clockMs: number;
  resetCount: number;
  restartCount: number;
  /** How the TPM was last shut down: 'none' = power was lost without TPM2_Shutdown. */
  shutdown: 'none' | 'clear' | 'state';
  /** PCR banks saved by Shutdown(STATE), restored by Startup(STATE). */
  savedPcrs: Map<number, Buffer[]> | undefined;
  /** False after a power loss until the clock has been saved again (TPMS_CLOCK_INFO.safe). */
  safe: boolean;
  daFailedTries: number;
  /** Seeded RSA primes: key = hex hash of (seed, template, data); value = hex 'p:q'. */
  readonly rsaCache: Map<string, string>;
}

const VERSION = 1;
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: unknown, what: string): Buffer => {
  if (typeof s !== 'string' || !/^([0-9a-f]{2})*$/.test(s))
    throw new SimError('ERR_SIM_STATE_CORRUPT', `state field ${what} is not hex`);
  return Buffer.from(s, 'hex');
};
const num = (v: unknown, what: string): number => {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    throw new SimError('ERR_SIM_STATE_CORRUPT', `state field ${what} is not a non-negative integer`);
  return v;
};

export function serializeState(s: PersistentState): string {
  return JSON.stringify({
    version: VERSION,
    seeds: {
      endorsement: hex(s.seeds.endorsement),
      owner: hex(s.seeds.owner),
      platform: hex(s.seeds.platform),
    },
    persistent: [...s.persistent].map(([handle, o]) => ({
      handle,
      hierarchy: o.hierarchy,
      public: hex(o.pubBytes),
      qualifiedName: hex(o.qualifiedName),
      authValue: hex(o.authValue),
      seedValue: hex(o.seedValue),
      sensitive: hex(o.sensitive),
    })),
    nv: [...s.nv.values()].map((n) => ({
      index: n.index,
      nameAlg: n.nameAlg,
      attributes: n.attributes,
      authPolicy: hex(n.authPolicy),
      authValue: hex(n.authValue),
      data: hex(n.data),
    })),
    clockMs: s.clockMs,
    resetCount: s.resetCount,
    restartCount: s.restartCount,
    shutdown: s.shutdown,
    savedPcrs:
      s.savedPcrs === undefined
        ? null
        : [...s.savedPcrs].map(([alg, vals]) => ({ alg, values: vals.map(hex) })),
    safe: s.safe,
    daFailedTries: s.daFailedTries,
    rsaCache: Object.fromEntries(s.rsaCache),
  });
}

export function parseState(text: string): PersistentState {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(text) as Record<string, unknown>;
  } catch (cause) {
    throw new SimError('ERR_SIM_STATE_CORRUPT', 'state file is not JSON', { cause });
  }
  if (j === null || typeof j !== 'object' || j.version !== VERSION)
    throw new SimError('ERR_SIM_STATE_CORRUPT', `state file version ${String(j?.version)} is not ${VERSION}`);
  try {
    const seeds = j.seeds as Record<string, unknown>;
    const persistent = new Map<number, SimObject>();
    for (const o of j.persistent as Record<string, unknown>[]) {
      const pubBytes = unhex(o.public, 'persistent.public');
      persistent.set(num(o.handle, 'persistent.handle'), {
        pub: parsePublic(pubBytes),
        pubBytes,
        name: objectName(pubBytes),
        qualifiedName: unhex(o.qualifiedName, 'persistent.qualifiedName'),
        hierarchy: num(o.hierarchy, 'persistent.hierarchy'),
        authValue: unhex(o.authValue, 'persistent.authValue'),
        seedValue: unhex(o.seedValue, 'persistent.seedValue'),
        sensitive: unhex(o.sensitive, 'persistent.sensitive'),
      });
    }
    const nv = new Map<number, NvIndex>();
    for (const n of j.nv as Record<string, unknown>[]) {
      const index = num(n.index, 'nv.index');
      nv.set(index, {
        index,
        nameAlg: num(n.nameAlg, 'nv.nameAlg'),
        attributes: num(n.attributes, 'nv.attributes'),
        authPolicy: unhex(n.authPolicy, 'nv.authPolicy'),
        authValue: unhex(n.authValue, 'nv.authValue'),
        data: unhex(n.data, 'nv.data'),
      });
    }
    const shutdown = j.shutdown;
    if (shutdown !== 'none' && shutdown !== 'clear' && shutdown !== 'state')
      throw new SimError('ERR_SIM_STATE_CORRUPT', 'state field shutdown is invalid');
    const saved = j.savedPcrs as { alg: unknown; values: unknown[] }[] | null;
    const rsa = j.rsaCache as Record<string, unknown>;
    return {
      seeds: {
        endorsement: unhex(seeds.endorsement, 'seeds.endorsement'),
        owner: unhex(seeds.owner, 'seeds.owner'),
        platform: unhex(seeds.platform, 'seeds.platform'),
      },
      persistent,
      nv,
      clockMs: num(j.clockMs, 'clockMs'),
      resetCount: num(j.resetCount, 'resetCount'),
      restartCount: num(j.restartCount, 'restartCount'),
      shutdown,
      savedPcrs:
        saved === null
          ? undefined
          : new Map(
              saved.map((b) => [num(b.alg, 'savedPcrs.alg'), b.values.map((v) => unhex(v, 'savedPcrs'))]),
            ),
      safe: j.safe === true,
      daFailedTries: num(j.daFailedTries, 'daFailedTries'),
      rsaCache: new Map(
        Object.entries(rsa).map(([k, v]) => {
          if (typeof v !== 'string' || !/^[0-9a-f]+:[0-9a-f]+$/.test(v))
            throw new SimError('ERR_SIM_STATE_CORRUPT', 'state field rsaCache is not p:q hex');
          return [k, v];
        }),
      ),
    };
  } catch (cause) {
    if (cause instanceof SimError) throw cause;
    throw new SimError('ERR_SIM_STATE_CORRUPT', `state file is malformed: ${(cause as Error).message}`, {
      cause,
    });
  }
}
