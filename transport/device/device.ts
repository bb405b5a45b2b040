/**
 * A connected device: one `DeviceIdentity` (identity.ts) and one mqtt.js client, with typed
 * events. `Device.connect(options)` loads the identity from `dir` (or enrolls), connects, and
 * resolves once the gateway accepted the connection; from then on the device:
 *
 * - **rotates** its SVID at `refreshAt` over EST (`simplereenroll` on the enrollment listener,
 *   authenticated by the current SVID) when `enroll` is given, else over MQTT renewal on its own
 *   connection (half-life ± 10 %, drawn from the injected
 *   `Random`, as the agent does), retrying a failed renewal after `retryMs`, never past NotAfter;
 *   the new certificate is used from an immediate reconnect (the persistent session resumes and
 *   unacknowledged QoS 1 messages are sent again);
 * - **reconnects** after a lost connection with full-jitter backoff, capped
 *   (`reconnect`, default 1 s doubling to 60 s; the delay of attempt n is uniform in
 *   [0, min(cap, initial·2ⁿ)]), timed by the injected clock;
 * - **never retries with an expired certificate**: when the SVID has expired (a device powered
 *   off past its NotAfter while the gateway stayed in service), it re-enrolls by itself with its
 *   factory certificate where it has one (`enroll.factory`; `reenrolled` event), and otherwise
 *   emits `lockedOut` once with `ERR_DEVICE_SVID_EXPIRED` and stops (a person must give it a
 *   new join token);
 * - **authorizes the gateway** at every handshake by its verified SPIFFE ID, exactly
 *   (authorize.ts), not by host name;
 * - **adopts a bundle update** (`$edgeward/bundle`, or anything on any topic) only when the
 *   gateway signed it under a chain to a root the device already trusts (bundle.ts).
 *
 * mqtt.js's own reconnect is off (`reconnectPeriod: 0`); subscriptions live in the persistent
 * session (clean = false), so they survive reconnects without being sent again.
 *
 * The options, events and states are in options.ts; obtaining an identity at start and factory
 * re-enrollment in enrollment.ts.
 *
 * @example
 * ```ts
 * const device = await Device.connect({ dir, gateway: { host: 'gw.local', port: 8883 }, enroll: { host: 'gw.local', port: 8884, factory } });
 * device.on('lockedOut', (err) => console.error(err.code)); // ERR_DEVICE_SVID_EXPIRED
 * device.client.publish(`devices/${device.deviceId}/temp`, '21.5', { qos: 1 });
 * await device.close();
 * ```
 */
import { EventEmitter } from 'node:events';
import { connect as tlsConnect } from 'node:tls';
import { MqttClient } from 'mqtt';
import { type BackoffStrategy, fullJitterBackoff, refreshAt } from '../../runtime/agent/policy.ts';
import { type Clock, systemClock, type Timer } from '../../runtime/core/clock.ts';
import { isEdgewardError } from '../../runtime/core/error.ts';
import { type Logger, nullLogger } from '../../runtime/core/logger.ts';
import { cryptoRandom, type Random } from '../../runtime/core/random.ts';
import { TransportError } from '../errors.ts';
import { BUNDLE_TOPIC, REPLY_PREFIX } from '../mqtt/reserved.ts';
import { authorizeId, gatewayAuthorizer } from './authorize.ts';
import { acceptBundle } from './bundle.ts';
import { enrollWithFactory, obtainIdentity, RETRYABLE_ENROLL } from './enrollment.ts';
import { type DeviceIdentity, type KeyFactory, p256Keys } from './identity.ts';
import { DEFAULT_RECONNECT, type DeviceEvents, type DeviceOptions, type DeviceState } from './options.ts';

export { DEFAULT_RECONNECT, type DeviceEvents, type DeviceOptions, type DeviceState } from './options.ts';

export class Device extends EventEmitter<DeviceEvents> {
  readonly client: MqttClient;
  readonly #o: DeviceOptions;
  readonly #clock: Clock;
  readonly #reconnectClock: Clock;
  readonly #random: Random;
  readonly #newKey: KeyFactory;
  readonly #logger: Logger;
  readonly #backoff: BackoffStrategy;
  #identity: DeviceIdentity;
  #state: DeviceState = 'connecting';
  #attempt = 0;
  /** The next close is our own (a new certificate): reconnect at once, not after a backoff. */
  #immediate = false;
  #reconnectTimer: Timer | undefined;
  #rotateTimer: Timer | undefined;
  #rotating: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #bundleSequence: number | undefined;
  /** Disk writes of the identity (renewal) and of the bundle (CA rotation), one after another. */
  #writes: Promise<void> = Promise.resolve();
  /** Callers waiting for the next connect (or for the device to stop). */
  #waiters: (() => void)[] = [];

  private constructor(o: DeviceOptions, identity: DeviceIdentity) {
    super();
    this.#o = o;
    this.#clock = o.clock ?? systemClock;
    this.#reconnectClock = o.reconnectClock ?? this.#clock;
    this.#random = o.random ?? cryptoRandom;
    this.#newKey = o.newKey ?? p256Keys;
    this.#logger = o.logger ?? nullLogger;
    this.#backoff = fullJitterBackoff(o.reconnect ?? DEFAULT_RECONNECT, this.#random);
    this.#identity = identity;
    this.client = new MqttClient(() => this.#openStream(), {
      connectTimeout: 10_000,
      keepalive: 30,
      ...o.mqtt,
      reconnectPeriod: 0,
      manualConnect: true,
      clientId: identity.deviceId,
      clean: false,
      protocolVersion: 4,
    });
  }

  /** Load or enroll the identity, connect, and resolve once the gateway accepted the connection. */
  static async connect(o: DeviceOptions): Promise<Device> {
    const device = new Device(o, await obtainIdentity(o));
    await device.#start();
    return device;
  }

  get identity(): DeviceIdentity {
    return this.#identity;
  }

  get spiffeId(): string {
    return this.#identity.spiffeId;
  }

  get deviceId(): string {
    return this.#identity.deviceId;
  }

  get gatewayId(): string {
    return this.#identity.gatewayId;
  }

  /** NotAfter of the current SVID, epoch ms. */
  get notAfter(): number {
    return this.#identity.notAfter;
  }

  get state(): DeviceState {
    return this.#state;
  }

  /** Renew now (also what the `refreshAt` timer does); resolves when the client has the new certificate. */
  rotate(): Promise<void> {
    if (this.#state === 'closed' || this.#state === 'lockedOut')
      return Promise.reject(new TransportError('ERR_DEVICE_CLOSED', `the device is ${this.#state}`));
    this.#rotating ??= (async () => {
      try {
        // Over EST when the enrollment listener is known, else over MQTT on this connection.
        const at = this.#o.enroll;
        const renewed =
          at !== undefined
            ? await this.#identity.reenroll(at, this.#newKey, () => this.#clock.now())
            : await this.#identity.renew({
                client: this.client,
                clock: this.#clock,
                random: this.#random,
                newKey: this.#newKey,
                timeoutMs: this.#o.renewTimeoutMs ?? 30_000,
              });
        // A bundle adopted while the renewal was in flight stays adopted.
        const next = renewed.withRoots(this.#identity.roots, this.#clock.now());
        await this.#serialized(() => next.write(this.#o.dir));
        this.#identity = next;
        await this.#reconnectWithNewCertificate();
        this.#logger.info('device SVID rotated', { spiffeId: next.spiffeId, notAfter: next.notAfter });
        this.emit('rotated', next.notAfter);
        this.#scheduleRotation();
      } finally {
        this.#rotating = undefined;
      }
    })();
    return this.#rotating;
  }

  /** Disconnect and stop every timer; idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#state = 'closed';
      this.#reconnectTimer?.cancel();
      this.#rotateTimer?.cancel();
      this.#wakeWaiters();
      await this.client.endAsync();
    })();
    return this.#closing;
  }

  #openStream() {
    const id = this.#identity;
    const host = this.#o.gateway.host;
    return tlsConnect({
      host,
      port: this.#o.gateway.port,
      secureContext: id.context,
      servername: /^[\d.:]+$/.test(host) ? undefined : host,
      // The gateway is known by its SPIFFE ID, not its host name.
      checkServerIdentity: gatewayAuthorizer(
        () => ({ trustDomain: id.trustDomain, roots: this.#identity.roots, now: this.#clock.now() }),
        authorizeId(id.gatewayId),
      ),
    });
  }

  async #start(): Promise<void> {
    const c = this.client;
    c.on('error', (err) => this.#logger.warn('device MQTT error', { reason: err.message }));
    c.on('message', (topic, payload) => {
      if (topic === BUNDLE_TOPIC) this.#onBundle(payload);
    });
    await new Promise<void>((resolve, reject) => {
      let failure: Error | undefined;
      const onError = (err: Error): void => {
        failure ??= err;
      };
      const onClose = (): void => {
        c.off('connect', onConnect);
        c.off('error', onError);
        this.#state = 'closed';
        c.end(true);
        const err = failure;
        reject(
          isEdgewardError(err)
            ? err
            : new TransportError(
                'ERR_DEVICE_IDENTITY',
                `cannot connect to the gateway: ${err?.message ?? 'connection closed'}`,
                { cause: err },
              ),
        );
      };
      const onConnect = (): void => {
        c.off('close', onClose);
        c.off('error', onError);
        resolve();
      };
      c.once('connect', onConnect);
      c.on('error', onError);
      c.once('close', onClose);
      c.connect();
    });
    this.#onConnect();
    c.on('connect', () => this.#onConnect());
    c.on('close', () => this.#onClose());
    this.#scheduleRotation();
  }

  #onConnect(): void {
    this.#attempt = 0;
    this.#state = 'connected';
    const id = this.#identity;
    this.client.subscribe([REPLY_PREFIX + id.deviceId, BUNDLE_TOPIC], { qos: 1 });
    this.#wakeWaiters();
    this.emit('connected');
  }

  #onClose(): void {
    if (this.#state === 'closed' || this.#state === 'lockedOut') return;
    const was = this.#state;
    this.#state = 'offline';
    if (was === 'connected') this.emit('disconnected');
    if (this.#immediate) {
      this.#immediate = false;
      void this.#reconnect();
      return;
    }
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    this.#reconnectTimer?.cancel();
    if (this.#state === 'closed' || this.#state === 'lockedOut') return;
    const attempt = this.#attempt++;
    const delay = this.#backoff.delay(attempt);
    this.#reconnectTimer = this.#reconnectClock.setTimer('device-reconnect', delay, () => {
      void this.#reconnect();
    });
    this.emit('reconnectScheduled', delay, attempt);
  }

  async #reconnect(): Promise<void> {
    if (this.#state === 'closed' || this.#state === 'lockedOut') return;
    if (this.#identity.expiredAt(this.#clock.now())) {
      await this.#recoverExpired();
      return;
    }
    this.#state = 'connecting';
    const c = this.client;
    // The stores hold the unacknowledged QoS 1 messages: keep them (mqtt.js would start empty ones).
    c.reconnect({ incomingStore: c.incomingStore, outgoingStore: c.outgoingStore });
  }

  /** The SVID has expired: re-enroll with the factory certificate, or stop with one clear error. */
  async #recoverExpired(): Promise<void> {
    const old = this.#identity;
    const at = this.#o.enroll;
    const expired = (why: string, cause?: unknown): TransportError =>
      new TransportError(
        'ERR_DEVICE_SVID_EXPIRED',
        `the SVID of ${old.spiffeId} expired at ${new Date(old.notAfter).toISOString()}; ${why}`,
        cause === undefined ? {} : { cause },
      );
    if (at?.factory === undefined) {
      this.#lockOut(
        expired('no factory certificate to re-enroll with: enroll it again with a new join token'),
      );
      return;
    }
    let next: DeviceIdentity;
    try {
      next = await enrollWithFactory(at.host, at.port, at.factory, old, this.#newKey, () =>
        this.#clock.now(),
      );
    } catch (err) {
      const code = isEdgewardError(err) ? err.code : undefined;
      if (code !== undefined && RETRYABLE_ENROLL.has(code)) {
        this.#logger.warn('device re-enrollment failed, retrying', { code, reason: (err as Error).message });
        this.#scheduleReconnect();
        return;
      }
      this.#lockOut(
        expired(`re-enrollment was refused (${code ?? 'error'}): ${(err as Error).message}`, err),
      );
      return;
    }
    if (this.#state === 'closed') return;
    if (next.spiffeId !== old.spiffeId) {
      this.#lockOut(expired(`re-enrollment gave another identity, ${next.spiffeId}`));
      return;
    }
    await this.#serialized(() => next.write(this.#o.dir));
    this.#identity = next;
    this.#logger.info('device re-enrolled with its factory certificate', {
      spiffeId: next.spiffeId,
      notAfter: next.notAfter,
    });
    this.emit('reenrolled', next.notAfter);
    this.#scheduleRotation();
    await this.#reconnect();
  }

  #lockOut(err: TransportError): void {
    if (this.#state === 'lockedOut' || this.#state === 'closed') return;
    this.#state = 'lockedOut';
    this.#reconnectTimer?.cancel();
    this.#rotateTimer?.cancel();
    this.#logger.error('device locked out', { code: err.code, reason: err.message });
    this.#wakeWaiters();
    this.emit('lockedOut', err);
  }

  #scheduleRotation(delayMs?: number): void {
    this.#rotateTimer?.cancel();
    if (this.#state === 'closed' || this.#state === 'lockedOut') return;
    const id = this.#identity;
    const now = this.#clock.now();
    const delay = delayMs ?? Math.max(0, refreshAt(id.notBefore, id.notAfter, this.#random) - now);
    this.#rotateTimer = this.#clock.setTimer('device-rotate', delay, () => {
      this.rotate().catch((err: Error) => {
        this.#logger.warn('device rotation failed', { reason: err.message });
        this.emit('rotationFailed', err);
        const left = this.#identity.notAfter - this.#clock.now();
        if (left > 0) this.#scheduleRotation(Math.min(this.#o.retryMs ?? 60_000, left));
      });
    });
  }

  #reconnectWithNewCertificate(): Promise<void> {
    const connected = new Promise<void>((resolve) => this.#waiters.push(resolve));
    if (this.#state === 'connected') {
      // A graceful TLS close: the client reconnects at once through the stream builder, which
      // now uses the new context; unacknowledged QoS 1 messages are resent, the session resumed.
      this.#immediate = true;
      this.client.stream.end();
    }
    return connected;
  }

  #wakeWaiters(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  #serialized(write: () => Promise<void>): Promise<void> {
    const next = this.#writes.then(write);
    this.#writes = next.catch(() => undefined);
    return next;
  }

  #onBundle(payload: Buffer): void {
    const id = this.#identity;
    const now = this.#clock.now();
    let next: DeviceIdentity;
    let sequence: number;
    try {
      const got = acceptBundle(payload, {
        trustDomain: id.trustDomain,
        roots: id.roots,
        sequence: this.#bundleSequence,
        gatewayId: id.gatewayId,
        now,
      });
      this.#bundleSequence = got.sequence;
      if (!got.changed) return;
      next = id.withRoots(got.roots, now);
      sequence = got.sequence;
    } catch (err) {
      const e = isEdgewardError(err)
        ? (err as TransportError)
        : new TransportError('ERR_DEVICE_BUNDLE_INVALID', (err as Error).message);
      this.#logger.warn('bundle message refused', { code: e.code, reason: e.message });
      this.emit('bundleRejected', e);
      return;
    }
    // The next (re)connect verifies the gateway against the new roots.
    this.#identity = next;
    this.#serialized(() => next.writeBundle(this.#o.dir)).then(
      () => {
        this.#logger.info('device bundle updated', { sequence, roots: next.roots.length });
        this.emit('bundleUpdated', sequence);
      },
      (err: Error) => this.#logger.warn('bundle.pem not written', { reason: err.message }),
    );
  }
}
