/**
 * The device SDK (`edgeward/device`): `connectDevice(options)` loads the device identity from a
 * directory (or enrolls over EST with a join token or a factory certificate when there is none),
 * keeps it rotated (EST re-enrollment when `enroll` is given, else MQTT renewal), and resolves to a connected `Device` whose `client` is an mqtt.js client
 * that reconnects (full-jitter backoff) with the current certificate. See device.ts for the
 * behaviour, identity.ts for the identity on disk, authorize.ts for how the gateway is
 * authorized (by its exact SPIFFE ID) and bundle.ts for how a bundle update is authenticated.
 *
 * @example
 * ```ts
 * import { connectDevice } from 'edgeward/device';
 * const device = await connectDevice({
 *   dir: '/var/lib/sensor/identity',
 *   gateway: { host: 'gw.local', port: 8883 },
 *   // the token is used on first boot only; the listener also serves every rotation (EST re-enrollment)
 *   enroll: { host: 'gw.local', port: 8884, deviceId: 'sensor-1', token: process.env.JOIN_TOKEN_FILE_CONTENTS },
 * });
 * device.client.publish(`devices/${device.deviceId}/temp`, '21.5', { qos: 1 });
 * device.on('rotated', (notAfter) => console.log('new SVID until', new Date(notAfter)));
 * device.on('rotationFailed', (err) => console.warn(err.message)); // retried after `retryMs`
 * device.on('bundleUpdated', (sequence) => {}); // bundle.pem rewritten after a CA rotation
 * device.on('bundleRejected', (err) => console.warn(err.code)); // ERR_DEVICE_BUNDLE_UNAUTHENTICATED, _INVALID
 * device.on('lockedOut', (err) => console.error(err.code)); // ERR_DEVICE_SVID_EXPIRED: needs a new token
 * await device.close();
 * ```
 */
import { Device, type DeviceOptions } from './device.ts';

export { type Authorizer, authorizeId } from './authorize.ts';
export {
  DEFAULT_RECONNECT,
  Device,
  type DeviceEvents,
  type DeviceOptions,
  type DeviceState,
} from './device.ts';
export { DeviceIdentity, type FactoryIdentity, type KeyFactory, p256Keys } from './identity.ts';

/** Load or enroll, connect, and resolve once the gateway accepted the connection. */
export function connectDevice(options: DeviceOptions): Promise<Device> {
  return Device.connect(options);
}
