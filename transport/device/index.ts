/**
 * The device SDK (`edgeward/device`): one call that loads the device identity from a directory
 * (or enrolls with a join token when there is none), keeps it rotated at half of its lifetime
 * over MQTT, and returns a connected `mqtt` client that reconnects with the new certificate.
 *
 * When the gateway publishes a new trust bundle on `$edgeward/bundle` (CA rotation), the SDK
 * rewrites bundle.pem atomically and the next (re)connect verifies the gateway against it.
 *
 * The gateway is authenticated by its SPIFFE ID (the parent of the device's own ID) against the
 * bundle, not by host name. The client uses a persistent session (client id = device id,
 * clean = false), so QoS 1 messages published or due while it reconnects are not lost.
 *
 * @example
 * ```ts
 * import { connectDevice } from 'edgeward/device';
 * const device = await connectDevice({
 *   dir: '/var/lib/sensor/identity',
 *   gateway: { host: 'gw.local', port: 8883 },
 *   enroll: { host: 'gw.local', port: 8884, token: process.env.JOIN_TOKEN_FILE_CONTENTS }, // first boot only
 * });
 * device.client.publish(`devices/${device.deviceId}/temp`, '21.5', { qos: 1 });
 * device.on('rotated', (notAfter) => console.log('new SVID until', new Date(notAfter)));
 * device.on('rotationFailed', (err) => console.warn(err.code)); // retried after `retryMs`
 * device.on('bundleUpdated', (sequence) => {}); // bundle.pem rewritten after a CA rotation
 * device.on('bundleRejected', (err) => console.warn(err.code)); // ERR_DEVICE_BUNDLE_INVALID
 * await device.close();
 * ```
 */

import { generateKeyPairSync, type X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { type SecureContext, connect as tlsConnect } from 'node:tls';
import { type IClientOptions, MqttClient } from 'mqtt';
import { type Clock, systemClock, type Timer } from '../../runtime/core/clock.ts';
import { type Logger, nullLogger } from '../../runtime/core/logger.ts';
import { cryptoRandom, type Random } from '../../runtime/core/random.ts';
import { parseSpiffeId } from '../../runtime/spiffe/id.ts';
import { verifyX509Svid } from '../../runtime/spiffe/verify.ts';
import { enroll } from '../enroll/client.ts';
import { TransportError } from '../errors.ts';
import { BUNDLE_TOPIC, REPLY_PREFIX } from '../mqtt/reserved.ts';
import { contextFor } from '../mqtt/tls-context.ts';
import { acceptBundle } from './bundle.ts';
import { readIdentity, type StoredIdentity, writeBundle, writeIdentity } from './files.ts';
import { renewOverMqtt } from './renew.ts';

export interface DeviceOptions {
  /** Directory of key.pem (0600), svid.pem and bundle.pem. */
  readonly dir: string;
  readonly gateway: { readonly host: string; readonly port: number };
  /** Used only when `dir` holds no identity yet. */
  readonly enroll?: { readonly host: string; readonly port: number; readonly token: string };
  /** Defaults: the system clock, crypto randomness, no logging. */
  readonly clock?: Clock;
  readonly random?: Random;
  readonly logger?: Logger;
  /** Extra mqtt.js options (keepalive, will, ...); identity and session options are the SDK's. */
  readonly mqtt?: Partial<IClientOptions>;
  /** Renewal answer timeout (default 30 s) and the retry delay after a failed renewal (default 60 s). */
  readonly renewTimeoutMs?: number;
  readonly retryMs?: number;
}

export interface Device extends EventEmitter {
  readonly client: MqttClient;
  readonly spiffeId: string;
  readonly deviceId: string;
  /** NotAfter of the current SVID, epoch ms. */
  readonly notAfter: number;
  /** Renew now (also what the half-life timer does); resolves when the client has the new certificate. */
  rotate(): Promise<void>;
  close(): Promise<void>;
}

interface Current {
  id: StoredIdentity;
  spiffeId: string;
  notBefore: number;
  notAfter: number;
  context: SecureContext;
}

function describe(id: StoredIdentity, now: number): Current {
  const leaf = id.chain[0] as X509Certificate;
  const trustDomain = parseSpiffeId(
    leaf.subjectAltName?.match(/URI:(spiffe:\/\/[^,\s]+)/)?.[1] ?? 'spiffe://x',
  ).trustDomain;
  const v = verifyX509Svid(id.chain, { now, bundle: { trustDomain, roots: id.roots, sequence: 0 } });
  return {
    id,
    spiffeId: v.spiffeId,
    notBefore: Date.parse(leaf.validFrom),
    notAfter: v.notAfter,
    context: contextOf(id),
  };
}

function contextOf(id: StoredIdentity): SecureContext {
  return contextFor({ privateKey: id.key, chain: id.chain }, id);
}

export async function connectDevice(o: DeviceOptions): Promise<Device> {
  const clock = o.clock ?? systemClock;
  const random = o.random ?? cryptoRandom;
  const logger = o.logger ?? nullLogger;
  let stored = await readIdentity(o.dir);
  let cur: Current | undefined;
  if (stored !== undefined) {
    try {
      cur = describe(stored, clock.now());
    } catch (err) {
      logger.warn('stored device identity is not usable', { reason: (err as Error).message });
    }
  }
  if (cur === undefined) {
    if (o.enroll === undefined) {
      throw new TransportError(
        'ERR_DEVICE_IDENTITY',
        `no valid identity in ${o.dir} and no join token to enroll with`,
      );
    }
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const got = await enroll({ ...o.enroll, key, now: () => clock.now() });
    stored = { key, chain: got.chain, roots: got.roots };
    await writeIdentity(o.dir, stored);
    cur = describe(stored, clock.now());
    logger.info('device enrolled', { spiffeId: cur.spiffeId });
  }
  const spiffe = parseSpiffeId(cur.spiffeId);
  const deviceId = spiffe.segments[spiffe.segments.length - 1] as string;
  const gatewayId = cur.spiffeId.slice(0, -`/device/${deviceId}`.length);
  const state: { cur: Current } = { cur };

  const client = new MqttClient(
    () =>
      tlsConnect({
        host: o.gateway.host,
        port: o.gateway.port,
        secureContext: state.cur.context,
        servername: o.gateway.host.match(/^[\d.:]+$/) ? undefined : o.gateway.host,
        // The gateway is known by its SPIFFE ID, not its host name.
        checkServerIdentity: (_host, cert) =>
          (cert.subjectaltname ?? '').split(', ').includes(`URI:${gatewayId}`)
            ? undefined
            : new Error(`the server is not ${gatewayId}`),
      }),
    {
      reconnectPeriod: 250,
      connectTimeout: 10_000,
      keepalive: 30,
      ...o.mqtt,
      clientId: deviceId,
      clean: false,
      protocolVersion: 4,
    },
  );
  client.on('connect', () => {
    client.subscribe([REPLY_PREFIX + deviceId, BUNDLE_TOPIC], { qos: 1 });
  });
  client.on('error', (err) => logger.warn('device MQTT error', { reason: err.message }));
  const events = new EventEmitter();
  // Disk writes of the identity (renewal) and of the bundle (CA rotation) one after another.
  let writes: Promise<void> = Promise.resolve();
  const serialized = (write: () => Promise<void>): Promise<void> => {
    const next = writes.then(write);
    writes = next.catch(() => undefined);
    return next;
  };
  let bundleSequence: number | undefined;
  client.on('message', (topic, payload) => {
    if (topic !== BUNDLE_TOPIC) return;
    let got: ReturnType<typeof acceptBundle>;
    try {
      got = acceptBundle(payload, {
        trustDomain: spiffe.trustDomain,
        roots: state.cur.id.roots,
        sequence: bundleSequence,
      });
    } catch (err) {
      logger.warn('bundle message refused', { reason: (err as Error).message });
      events.emit('bundleRejected', err);
      return;
    }
    bundleSequence = got.sequence;
    if (!got.changed) return;
    const id: StoredIdentity = { ...state.cur.id, roots: got.roots };
    // The next (re)connect verifies the gateway against the new roots.
    state.cur = { ...state.cur, id, context: contextOf(id) };
    serialized(() => writeBundle(o.dir, got.roots)).then(
      () => {
        logger.info('device bundle updated', { sequence: got.sequence, roots: got.roots.length });
        events.emit('bundleUpdated', got.sequence);
      },
      (err: Error) => logger.warn('bundle.pem not written', { reason: err.message }),
    );
  });
  await new Promise<void>((resolve, reject) => {
    const onErr = (err: Error): void => {
      client.end(true);
      reject(new TransportError('ERR_DEVICE_IDENTITY', `cannot connect to the gateway: ${err.message}`));
    };
    client.once('connect', () => {
      client.off('error', onErr);
      resolve();
    });
    client.once('error', onErr);
  });

  let timer: Timer | undefined;
  let closed = false;
  let rotating: Promise<void> | undefined;
  const schedule = (delayMs?: number): void => {
    timer?.cancel();
    if (closed) return;
    const c = state.cur;
    const half = c.notBefore + (c.notAfter - c.notBefore) / 2;
    timer = clock.setTimer('device-rotate', delayMs ?? Math.max(0, half - clock.now()), () => {
      device.rotate().catch((err: Error) => {
        logger.warn('device rotation failed, retrying', { reason: err.message });
        events.emit('rotationFailed', err);
        schedule(o.retryMs ?? 60_000);
      });
    });
  };

  const reconnectWithNewCertificate = (): Promise<void> =>
    new Promise((resolve) => {
      client.once('connect', () => resolve());
      // A graceful TLS close: mqtt.js reconnects through the stream builder, which now uses the
      // new context; unacknowledged QoS 1 messages are resent and the session is resumed.
      client.stream.end();
    });

  const device = Object.assign(events, {
    client,
    spiffeId: cur.spiffeId,
    deviceId,
    rotate(): Promise<void> {
      rotating ??= (async () => {
        try {
          const next = await renewOverMqtt({
            client,
            deviceId,
            spiffeId: state.cur.spiffeId,
            trustDomain: spiffe.trustDomain,
            roots: state.cur.id.roots,
            clock,
            random,
            timeoutMs: o.renewTimeoutMs ?? 30_000,
          });
          await serialized(() => writeIdentity(o.dir, next));
          state.cur = describe(next, clock.now());
          await reconnectWithNewCertificate();
          logger.info('device SVID rotated', { spiffeId: state.cur.spiffeId, notAfter: state.cur.notAfter });
          events.emit('rotated', state.cur.notAfter);
          schedule();
        } finally {
          rotating = undefined;
        }
      })();
      return rotating;
    },
    async close(): Promise<void> {
      closed = true;
      timer?.cancel();
      await client.endAsync();
    },
  }) as Device;
  // A live getter: Object.assign would copy a getter's value once (the first SVID's NotAfter).
  Object.defineProperty(device, 'notAfter', { get: () => state.cur.notAfter, enumerable: true });
  schedule();
  return device;
}
