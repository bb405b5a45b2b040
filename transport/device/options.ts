/**
 * The options and events of a device (`Device`, device.ts; `connectDevice`, index.ts): where its
 * identity lives and which gateway and enrollment listener it talks to, the injected clock,
 * randomness, key factory and logger, the renewal and reconnect timings (`DEFAULT_RECONNECT`:
 * full jitter from 1 s doubling to 60 s), the typed events it emits and its states.
 *
 * @example
 * ```ts
 * const o: DeviceOptions = { dir, gateway: { host: 'gw.local', port: 8883 }, reconnect: DEFAULT_RECONNECT };
 * device.on('lockedOut', (err) => console.error(err.code)); // DeviceEvents['lockedOut']
 * ```
 */
import type { IClientOptions } from 'mqtt';
import type { BackoffOptions } from '../../runtime/agent/policy.ts';
import type { Clock } from '../../runtime/core/clock.ts';
import type { Logger } from '../../runtime/core/logger.ts';
import type { Random } from '../../runtime/core/random.ts';
import type { TransportError } from '../errors.ts';
import type { FactoryIdentity, KeyFactory } from './identity.ts';

export interface DeviceOptions {
  /** Directory of key.pem (0600), svid.pem and bundle.pem. */
  readonly dir: string;
  readonly gateway: { readonly host: string; readonly port: number };
  /**
   * The enrollment listener. `token` is used only when `dir` holds no usable identity (a token is
   * single use); `factory` also when the SVID has expired (re-enrollment without a person).
   */
  readonly enroll?: {
    readonly host: string;
    readonly port: number;
    /** The device id the join token was issued for (EST's HTTP Basic user name). */
    readonly deviceId?: string;
    readonly token?: string;
    readonly factory?: FactoryIdentity;
  };
  /** Defaults: the system clock, crypto randomness, P-256 keys, no logging. */
  readonly clock?: Clock;
  readonly random?: Random;
  readonly newKey?: KeyFactory;
  readonly logger?: Logger;
  /** Extra mqtt.js options (keepalive, will, ...); identity, session and reconnect options are the SDK's. */
  readonly mqtt?: Partial<IClientOptions>;
  /** Renewal answer timeout (default 30 s) and the retry delay after a failed renewal (default 60 s). */
  readonly renewTimeoutMs?: number;
  readonly retryMs?: number;
  /** Reconnect backoff, full jitter (default 1 s, factor 2, cap 60 s). */
  readonly reconnect?: BackoffOptions;
  /** The clock that times reconnects (default `clock`; the fleet simulator passes real time). */
  readonly reconnectClock?: Clock;
}

/** The events of a `Device` and their arguments. */
export interface DeviceEvents {
  /** Connected (first time and after every reconnect). */
  connected: [];
  /** The connection was lost; a reconnect is scheduled (unless locked out or closed). */
  disconnected: [];
  /** The next reconnect attempt (0 = the first after a loss) waits `delayMs` (full jitter, capped). */
  reconnectScheduled: [delayMs: number, attempt: number];
  /** A rotation (EST re-enrollment, or renewal over MQTT) completed: the NotAfter of the new SVID. */
  rotated: [notAfter: number];
  /** A renewal failed (retried after `retryMs` while the SVID lasts). */
  rotationFailed: [err: Error];
  /** The SVID had expired and the device enrolled again with its factory certificate. */
  reenrolled: [notAfter: number];
  /** The SVID expired and the device cannot re-enroll: `ERR_DEVICE_SVID_EXPIRED`; it stops. */
  lockedOut: [err: TransportError];
  /** bundle.pem was rewritten with an authenticated new bundle (its sequence). */
  bundleUpdated: [sequence: number];
  /** A bundle message was refused (`ERR_DEVICE_BUNDLE_UNAUTHENTICATED`, `ERR_DEVICE_BUNDLE_INVALID`). */
  bundleRejected: [err: TransportError];
}

export type DeviceState = 'connecting' | 'connected' | 'offline' | 'lockedOut' | 'closed';

export const DEFAULT_RECONNECT: BackoffOptions = { initialMs: 1_000, factor: 2, capMs: 60_000 };
