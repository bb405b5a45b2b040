/**
 * How a device obtains an identity when it has none it can use: the stored one when it is
 * usable, otherwise EST enrollment with its join token or factory certificate (at start,
 * `obtainIdentity`), and factory re-enrollment after the SVID expired (`enrollWithFactory`, used
 * by `Device`, device.ts), trying each root of the current bundle before the provisioning
 * fingerprint. `RETRYABLE_ENROLL` names the enrollment failures a retry can cure.
 *
 * @example
 * ```ts
 * const identity = await obtainIdentity({ dir, gateway, enroll: { host, port, deviceId, token } });
 * const next = await enrollWithFactory(host, port, factory, identity, p256Keys, () => Date.now());
 * ```
 */
import { createHash } from 'node:crypto';
import { systemClock } from '../../runtime/core/clock.ts';
import { isEdgewardError } from '../../runtime/core/error.ts';
import { nullLogger } from '../../runtime/core/logger.ts';
import { TransportError } from '../errors.ts';
import { DeviceIdentity, type FactoryIdentity, type KeyFactory, p256Keys } from './identity.ts';
import type { DeviceOptions } from './options.ts';

/** Enrollment failures a retry can cure (gateway unreachable, rate limit); the others are final. */
export const RETRYABLE_ENROLL = new Set(['ERR_ENROLL_PROTOCOL', 'ERR_ENROLL_RATE_LIMITED']);

/**
 * Factory re-enrollment: the gateway is recognised by a root the device trusts now (each root
 * of its current bundle in turn: a CA rotation may have retired the one from provisioning),
 * then by the fingerprint from provisioning.
 */
export async function enrollWithFactory(
  host: string,
  port: number,
  factory: FactoryIdentity,
  old: DeviceIdentity,
  newKey: KeyFactory,
  now: () => number,
): Promise<DeviceIdentity> {
  const prints = [
    ...old.roots.map((r) => createHash('sha256').update(r.raw).digest()),
    Buffer.from(factory.bundleFingerprint),
  ];
  let last: unknown;
  for (const bundleFingerprint of prints) {
    try {
      return await DeviceIdentity.enroll(
        { host, port, factory: { ...factory, bundleFingerprint } },
        newKey,
        now,
      );
    } catch (err) {
      if (!isEdgewardError(err, 'ERR_ENROLL_GATEWAY_UNTRUSTED')) throw err;
      last = err;
    }
  }
  throw last;
}

/** The stored identity when it is usable; otherwise enrollment (token, then factory); otherwise a typed error. */
export async function obtainIdentity(o: DeviceOptions): Promise<DeviceIdentity> {
  const clock = o.clock ?? systemClock;
  const logger = o.logger ?? nullLogger;
  let stored: DeviceIdentity | undefined;
  try {
    stored = await DeviceIdentity.load(o.dir, clock.now());
  } catch (err) {
    logger.warn('stored device identity is not usable', { reason: (err as Error).message });
  }
  if (stored !== undefined && !stored.expiredAt(clock.now())) return stored;
  const at = o.enroll;
  if (at === undefined || (at.token === undefined && at.factory === undefined)) {
    if (stored !== undefined) {
      throw new TransportError(
        'ERR_DEVICE_SVID_EXPIRED',
        `the SVID in ${o.dir} expired at ${new Date(stored.notAfter).toISOString()} and there is no join token or factory certificate to enroll with`,
      );
    }
    throw new TransportError(
      'ERR_DEVICE_IDENTITY',
      `no valid identity in ${o.dir} and no join token to enroll with`,
    );
  }
  const enrolled = await DeviceIdentity.enroll(at, o.newKey ?? p256Keys, () => clock.now());
  await enrolled.write(o.dir);
  logger.info('device enrolled', { spiffeId: enrolled.spiffeId });
  return enrolled;
}
