/**
 * The device side of renewal over MQTT: a CSR for the fresh key the caller made is published to
 * `$edgeward/renew/<device id>` with a correlation id; the answer on `$edgeward/reply/<device id>`
 * is matched by that id, its chain verified against the roots the device already trusts (never
 * against roots the answer brings: those change only through an authenticated bundle message)
 * and its key compared to ours. The reply topic must be subscribed before (the SDK does it at
 * every connect).
 */
import { createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import type { Clock } from '../../runtime/core/clock.ts';
import type { Random } from '../../runtime/core/random.ts';
import { verifyX509Svid } from '../../runtime/spiffe/verify.ts';
import { createCsr } from '../../runtime/svid/csr.ts';
import { TransportError } from '../errors.ts';
import { decodeCbor, encodeCbor, RENEW_PREFIX, REPLY_PREFIX } from '../mqtt/reserved.ts';
import type { StoredIdentity } from './files.ts';

export async function renewOverMqtt(o: {
  client: MqttClient;
  deviceId: string;
  spiffeId: string;
  trustDomain: string;
  roots: readonly X509Certificate[];
  clock: Clock;
  random: Random;
  /** The new private key (the caller's key factory made it). */
  key: KeyObject;
  timeoutMs: number;
}): Promise<StoredIdentity> {
  const key = o.key;
  const csr = createCsr(key, o.deviceId);
  const id = o.random.bytes(12).toString('base64url');
  const replyTopic = REPLY_PREFIX + o.deviceId;
  const reply = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = o.clock.setTimer('device-renew-timeout', o.timeoutMs, () => {
      o.client.off('message', onMessage);
      reject(new TransportError('ERR_RENEW_TIMEOUT', `no renewal answer within ${o.timeoutMs} ms`));
    });
    function onMessage(topic: string, payload: Buffer): void {
      if (topic !== replyTopic) return;
      const v = decodeCbor(payload) as Record<string, unknown> | undefined;
      if (typeof v !== 'object' || v === null || v.id !== id) return;
      timer.cancel();
      o.client.off('message', onMessage);
      resolve(v);
    }
    o.client.on('message', onMessage);
    o.client.publish(RENEW_PREFIX + o.deviceId, encodeCbor({ id, csr }), { qos: 1 }, (err) => {
      if (err) {
        timer.cancel();
        o.client.off('message', onMessage);
        reject(new TransportError('ERR_RENEW_REFUSED', `renewal request not sent: ${err.message}`));
      }
    });
  });
  const error = reply.error as { code?: string; message?: string } | undefined;
  if (error !== undefined) {
    throw new TransportError('ERR_RENEW_REFUSED', `gateway refused renewal: ${error.code}: ${error.message}`);
  }
  const asCerts = (v: unknown): X509Certificate[] => {
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => x instanceof Uint8Array)) {
      throw new TransportError('ERR_RENEW_REFUSED', 'malformed renewal answer');
    }
    return v.map((d) => new X509Certificate(d as Uint8Array));
  };
  const chain = asCerts(reply.chain);
  const mine = createPublicKey(key).export({ type: 'spki', format: 'der' });
  if (!mine.equals((chain[0] as X509Certificate).publicKey.export({ type: 'spki', format: 'der' }))) {
    throw new TransportError('ERR_RENEW_REFUSED', 'the renewed certificate is not for our key');
  }
  let v: ReturnType<typeof verifyX509Svid>;
  try {
    v = verifyX509Svid(chain, {
      now: o.clock.now(),
      bundle: { trustDomain: o.trustDomain, roots: o.roots, sequence: 0 },
    });
  } catch (cause) {
    throw new TransportError(
      'ERR_RENEW_REFUSED',
      `the renewed SVID does not verify against the trusted roots: ${(cause as Error).message}`,
      { cause },
    );
  }
  if (v.spiffeId !== o.spiffeId)
    throw new TransportError('ERR_RENEW_REFUSED', `renewed SVID is for ${v.spiffeId}`);
  return { key, chain, roots: o.roots };
}
