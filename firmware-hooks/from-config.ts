/**
 * The OTA phases' context from the agent config, built exactly as the agent builds its own:
 * `planFromConfig` (runtime/agent/plan.ts) gives the attestor, the data-key protector and the
 * HTTPS upstream; the store is classic-level at `<dataDir>/store` (where runtime/agent/run.ts
 * opens it) and the OTA state lives in `<dataDir>/ota`.
 *
 * - sealing: `current` is the agent's protector. With `sealing.pcrPolicy`, `forReboot` seals the
 *   data key to the PCR values the manifest promises (TPM2_Create with the PolicyPCR digest of
 *   those values); without a policy the current sealing survives the reboot as it is.
 * - PCRs are read through the attestor (a quote on its AK, whose PCR values the TPM returns),
 *   because the attestor owns the one TPM connection; a gateway without a TPM measures nothing.
 *
 * The store is opened first (waiting up to `lockWaitMs` for a stopping agent), so a running
 * agent is noticed before the TPM is touched.
 *
 * @example
 * ```ts
 * const opened = await openHookContext(config, trustedKeys, { clock, random, logger, lockWaitMs: 30_000 });
 * try { await postBoot(opened.ctx); } finally { await opened.close(); }
 * ```
 */
import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { liveIdentity } from '../runtime/agent/identity.ts';
import { newP256Key } from '../runtime/agent/keys.ts';
import { planFromConfig, policyPcrs } from '../runtime/agent/plan.ts';
import { brokerServerNames } from '../runtime/agent/run.ts';
import type { AgentConfig } from '../runtime/config/agent-schema.ts';
import type { Clock } from '../runtime/core/clock.ts';
import type { Logger } from '../runtime/core/logger.ts';
import type { Random } from '../runtime/core/random.ts';
import type { FirmwareManifest } from '../runtime/firmware/manifest.ts';
import { attestorProtector } from '../runtime/store/protector.ts';
import { type GatewayRecord, NAMES } from '../runtime/store/records.ts';
import { SealedStore } from '../runtime/store/sealed-store.ts';
import type { HookContext, Sealing } from './context.ts';
import { HookError } from './errors.ts';
import type { PcrBank } from './pcrs.ts';
import { issuerPublisher } from './publish.ts';
import { agentReattest } from './reattest.ts';
import { issuerStaging } from './staging.ts';
import { openStoreDb } from './store-db.ts';

export interface HookDeps {
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  /** How long to wait for the store lock of a stopping agent. */
  readonly lockWaitMs: number;
  /** The clock of that wait, when it must differ (a CLI needs timers that hold the process). */
  readonly lockClock?: Clock;
  /** The OTA state directory, when the caller chose one (`--state-dir`); else `<dataDir>/ota`. */
  readonly stateDir?: string;
}

export interface OpenedContext {
  readonly ctx: HookContext;
  close(): Promise<void>;
}

export const otaStateDir = (c: AgentConfig): string => join(c.dataDir, 'ota');
export const storeLocation = (c: AgentConfig): string => join(c.dataDir, 'store');

export async function openHookContext(
  config: AgentConfig,
  trusted: readonly KeyObject[],
  deps: HookDeps,
): Promise<OpenedContext> {
  const db = await openStoreDb(storeLocation(config), {
    clock: deps.lockClock ?? deps.clock,
    waitMs: deps.lockWaitMs,
  });
  const closers: (() => Promise<void>)[] = [() => db.close()];
  const close = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) await c().catch(() => {});
  };
  try {
    const plan = await planFromConfig(config, deps);
    closers.push(() => plan.upstream.close());
    closers.push(() => plan.attestor.close());
    await plan.attestor.start();
    const attestor = plan.attestor;
    const current = await plan.protector(attestor);
    const pcrs = policyPcrs(config);
    const sealing: Sealing = {
      current,
      forReboot: (m) =>
        pcrs === undefined || !attestor.supports.sealing
          ? undefined
          : attestorProtector(attestor, { pcrs, expected: promisedValues(m, pcrs) }),
    };
    const readPcrs = attestor.supports.pcrs
      ? async (bank: PcrBank, indices: readonly number[]): Promise<Record<number, string>> => {
          const sorted = [...new Set(indices)].sort((a, b) => a - b);
          const q = await attestor.quote(deps.random.bytes(32), deps.random.bytes(32), `${bank}:${sorted}`);
          return Object.fromEntries(
            sorted.map((i, k) => [i, Buffer.from(q.pcrValues[k] ?? []).toString('hex')]),
          );
        }
      : undefined;
    const ctx: HookContext = {
      stateDir: deps.stateDir ?? otaStateDir(config),
      db,
      sealing,
      trusted,
      publish: issuerPublisher(plan.upstream),
      staging: {
        issuer: issuerStaging(plan.upstream),
        async currentSvid() {
          const store = await SealedStore.open({
            db,
            protector: current,
            random: deps.random,
            logger: deps.logger,
          });
          const rec = await store.get<GatewayRecord>(NAMES.gateway);
          if (rec === undefined) throw new HookError('ERR_HOOK_STORE', 'the store holds no gateway identity');
          return liveIdentity(rec).svid;
        },
      },
      readPcrs,
      reattest: agentReattest({
        db,
        attestor,
        upstream: plan.upstream,
        trustDomain: plan.trustDomain,
        newKey: newP256Key,
        clock: deps.clock,
        random: deps.random,
        logger: deps.logger,
        serverNames: brokerServerNames(plan.broker),
      }),
      now: () => deps.clock.now(),
      logger: deps.logger,
    };
    return { ctx, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** The manifest's sha256 values of the sealed PCRs; refuses a manifest that does not cover them. */
export function promisedValues(m: FirmwareManifest, pcrs: readonly number[]): Record<number, Uint8Array> {
  if (m.bank !== 'sha256')
    throw new HookError(
      'ERR_HOOK_RESEAL',
      `the store is sealed to sha256 PCRs; the manifest of ${m.version} promises ${m.bank} values`,
    );
  const missing = pcrs.filter((i) => m.pcrs[i] === undefined);
  if (missing.length > 0)
    throw new HookError(
      'ERR_HOOK_RESEAL',
      `the store is sealed to PCR ${pcrs.join(',')}; the manifest of ${m.version} promises no value for ${missing.join(',')}`,
      { missing },
    );
  return Object.fromEntries(pcrs.map((i) => [i, Buffer.from(m.pcrs[i] as string, 'hex')]));
}
