/**
 * What the gateway agent (`agent.ts`) is built from: its injected dependencies (store, attestor,
 * upstream, Clock, Random, Logger, key factory) and its policy knobs, each with its default.
 * `plan.ts` derives them from the config file; tests and the fleet simulator pass them directly.
 *
 * @example
 * ```ts
 * const o: AgentOptions = { trustDomain, store, attestor, upstream, clock, random, logger, newKey };
 * new Agent({ ...o, tickMs: 10_000 });
 * ```
 */
import type { KeyObject } from 'node:crypto';
import type { Attestor } from '../../attestors/attestor.ts';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/logger.ts';
import type { Random } from '../core/random.ts';
import type { SealedStore } from '../store/sealed-store.ts';
import type { Upstream } from '../upstream/types.ts';
import type { BreakerOptions } from './breaker.ts';
import type { CaKeys } from './ca-keys.ts';
import type { RotationStep } from './exchange.ts';
import type { BackoffStrategy } from './policy.ts';

export interface AgentOptions {
  readonly trustDomain: string;
  readonly store: SealedStore;
  readonly attestor: Attestor;
  readonly upstream: Upstream;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  readonly newKey: () => KeyObject;
  /**
   * Where the delegated CA key is made and kept. Default (`caKeysFor`): in the TPM when the
   * attestor is a TPM, a software key sealed in the store otherwise.
   */
  readonly caKeys?: CaKeys;
  /** Broker host names to ask for on the gateway SVID (DNS/IP SANs). */
  readonly serverNames?: readonly string[];
  readonly backoff?: BackoffStrategy;
  readonly breaker?: BreakerOptions;
  /** While the breaker is open, probe the upstream this often to notice its return (default 15 s). */
  readonly probeMs?: number;
  /** Revocation feed and bundle poll interval (default 60 s). */
  readonly feedIntervalMs?: number;
  /** Clock watch interval (default 30 s): time floor, forward jumps, overdue timers. */
  readonly tickMs?: number;
  readonly floorToleranceMs?: number;
  /** Persist the time floor when it moved by this much (default 5 min; flash wears out). */
  readonly floorPersistMs?: number;
  readonly deviceTtlMs?: number;
  /**
   * After the issuer's CA switch (the bundle's signing root changed), the delegated CA is renewed
   * under the new root at a random time within this window (default 1 h; root-switch.ts).
   */
  readonly rootSwitchWindowMs?: number;
  /** Test hook marking the steps of a rotation (kill -9 tests). */
  readonly onStep?: (step: RotationStep) => void | Promise<void>;
}
