/**
 * Device renewal over the main listener and the bundle topic.
 *
 * A device publishes `{ id, csr }` (CBOR) to `$edgeward/renew/<its device id>`; the broker has it
 * signed by the `DeviceSigner` for that same device id (the identity comes from the verified TLS
 * session, never from the payload) and publishes `{ id, chain, roots, notAfter }` or
 * `{ id, error }` on `$edgeward/reply/<device id>` at QoS 1. One renewal per device at a time.
 * The bundle is a retained CBOR `{ trustDomain, sequence, roots, signer, signature }` on
 * `$edgeward/bundle`, signed with the key of the certificate the listeners serve (devices adopt
 * a bundle only when that signature verifies under a chain to a root they already trust, so a
 * bundle that reaches the topic any other way is refused by them).
 *
 * The service is its own handler of the broker's `publish` event: the publish hook only lets a
 * device's request on its own renewal topic through (`reserved-access.ts`), and this handler
 * answers it once aedes has accepted it.
 *
 * @example
 * ```ts
 * const renewal = new RenewalService(broker, sessions, signer, () => bundle, logger);
 * renewal.start(); // …
 * renewal.stop();
 * ```
 */
import { sign } from 'node:crypto';
import type { Aedes, AedesPublishPacket, Client } from 'aedes';
import { isEdgewardError } from '../../runtime/core/error.ts';
import type { Logger } from '../../runtime/core/logger.ts';
import type { DeviceSigner, X509Bundle, X509Svid } from '../../runtime/sources/types.ts';
import {
  asRenewRequest,
  BUNDLE_TOPIC,
  type BundleMessage,
  bundleDigest,
  bundleSigningInput,
  decodeCbor,
  encodeCbor,
  REPLY_PREFIX,
  type RenewReply,
} from './reserved.ts';
import { renewalDevice } from './reserved-access.ts';
import type { Sessions } from './sessions.ts';

/** The key and chain of the certificate the gateway serves (what signs the bundle message). */
export type BundleSigner = Pick<X509Svid, 'privateKey' | 'chain'>;

export function bundleMessage(bundle: X509Bundle, signer: BundleSigner): BundleMessage {
  const body = {
    trustDomain: bundle.trustDomain,
    sequence: bundle.sequence,
    roots: bundle.roots.map((r) => new Uint8Array(r.raw)),
  };
  const key = signer.privateKey;
  const signature = sign(bundleDigest(key.asymmetricKeyType), bundleSigningInput(body), key);
  return {
    ...body,
    signer: signer.chain.map((c) => new Uint8Array(c.raw)),
    signature: new Uint8Array(signature),
  };
}

export function publishBundle(broker: Aedes, bundle: X509Bundle, signer: BundleSigner): Promise<void> {
  return new Promise((resolve, reject) => {
    broker.publish(
      {
        cmd: 'publish',
        topic: BUNDLE_TOPIC,
        payload: encodeCbor(bundleMessage(bundle, signer)),
        qos: 1,
        retain: true,
        dup: false,
      },
      (err) => (err ? reject(err) : resolve()),
    );
  });
}

export class RenewalService {
  readonly #busy = new Set<string>();
  readonly #broker: Aedes;
  readonly #sessions: Sessions;
  readonly #signer: DeviceSigner;
  readonly #bundle: () => X509Bundle;
  readonly #logger: Logger;
  readonly #onPublish = (packet: AedesPublishPacket, client: Client | null): void => {
    if (client === null) return;
    const deviceId = renewalDevice(packet.topic);
    if (deviceId === undefined || packet.retain) return;
    // The identity is the verified session's, never the topic's: the publish hook admitted only
    // the device's own topic, and this checks it again.
    if (this.#sessions.of(client.conn)?.grants?.deviceId !== deviceId) return;
    this.handle(deviceId, packet.payload);
  };

  constructor(
    broker: Aedes,
    sessions: Sessions,
    signer: DeviceSigner,
    bundle: () => X509Bundle,
    logger: Logger,
  ) {
    this.#broker = broker;
    this.#sessions = sessions;
    this.#signer = signer;
    this.#bundle = bundle;
    this.#logger = logger;
  }

  /** Answers renewal requests published from now on. */
  start(): void {
    this.#broker.on('publish', this.#onPublish);
  }

  stop(): void {
    this.#broker.off('publish', this.#onPublish);
  }

  /** Handle one request payload from `deviceId`; never throws, always answers when it can. */
  handle(deviceId: string, payload: Buffer | string): void {
    const req = asRenewRequest(decodeCbor(typeof payload === 'string' ? Buffer.from(payload) : payload));
    if (req === undefined) {
      this.#logger.warn('renewal request malformed', { deviceId });
      return;
    }
    if (this.#busy.has(deviceId)) {
      this.#reply(deviceId, {
        id: req.id,
        error: { code: 'ERR_RENEW_REFUSED', message: 'a renewal is already running' },
      });
      return;
    }
    this.#busy.add(deviceId);
    this.#signer
      .signDevice({ deviceId, csrDer: req.csr })
      .then(
        (out) => {
          this.#logger.info('device SVID renewed', { deviceId, notAfter: out.notAfter });
          this.#reply(deviceId, {
            id: req.id,
            chain: out.chain.map((c) => new Uint8Array(c)),
            roots: this.#bundle().roots.map((r) => new Uint8Array(r.raw)),
            notAfter: out.notAfter,
          });
        },
        (err: unknown) => {
          const code = isEdgewardError(err) ? err.code : 'ERR_RENEW_REFUSED';
          this.#logger.warn('device renewal refused', { deviceId, code, reason: (err as Error).message });
          this.#reply(deviceId, { id: req.id, error: { code, message: (err as Error).message } });
        },
      )
      .finally(() => this.#busy.delete(deviceId));
  }

  #reply(deviceId: string, reply: RenewReply): void {
    this.#broker.publish(
      {
        cmd: 'publish',
        topic: REPLY_PREFIX + deviceId,
        payload: encodeCbor(reply),
        qos: 1,
        retain: false,
        dup: false,
      },
      (err) => {
        if (err) this.#logger.error('renewal reply not published', { deviceId, reason: err.message });
      },
    );
  }
}
