/**
 * A device's identity, separate from its connection: the private key, the X.509-SVID chain, the
 * trust bundle roots it trusts, and what follows from them (its SPIFFE ID, device id, the ID of
 * the gateway that vouches for it, validity). Four ways to get one, one way to keep one:
 *
 * - `DeviceIdentity.load(dir, now)`: the files `writeIdentity` wrote; an identity whose SVID has
 *   expired is still loaded (`expiredAt(now)` says so) so the caller can decide what to do: the
 *   device SDK re-enrolls with a factory certificate or reports `ERR_DEVICE_SVID_EXPIRED`;
 * - `DeviceIdentity.enroll(...)`: a new key and the enrollment listener, EST `simpleenroll`
 *   (device id + join token, or a factory certificate);
 * - `identity.reenroll(...)`: a new key and EST `simplereenroll`, authenticated by this identity;
 * - `identity.renew(...)`: a new key and renewal over MQTT, on the device's own connection (for a
 *   device that cannot reach the enrollment listener);
 * - `identity.withRoots(roots)`: the same key and chain with an authenticated new bundle;
 * - `identity.write(dir)`: atomically, as mosquitto clients use the files.
 *
 * Key generation is injected (`KeyFactory`), as every source of entropy here is.
 *
 * @example
 * ```ts
 * const id = (await DeviceIdentity.load(dir, clock.now())) ?? (await DeviceIdentity.enroll({ ...at, token, newKey, now }));
 * id.spiffeId; id.gatewayId; id.expiredAt(clock.now());
 * await id.write(dir);
 * ```
 */
import { generateKeyPairSync, type KeyObject, type X509Certificate } from 'node:crypto';
import type { SecureContext } from 'node:tls';
import type { MqttClient } from 'mqtt';
import type { Clock } from '../../runtime/core/clock.ts';
import type { Random } from '../../runtime/core/random.ts';
import { certFacts } from '../../runtime/spiffe/cert-facts.ts';
import { parseSpiffeId } from '../../runtime/spiffe/id.ts';
import { verifyX509Svid } from '../../runtime/spiffe/verify.ts';
import { enroll, reenroll } from '../enroll/est-client.ts';
import { TransportError } from '../errors.ts';
import { contextFor } from '../mqtt/tls-context.ts';
import { readIdentity, type StoredIdentity, writeBundle, writeIdentity } from './files.ts';
import { renewOverMqtt } from './renew.ts';

/** Makes a device's new private key (enrollment and every renewal). */
export type KeyFactory = () => KeyObject;

/** ECDSA P-256, the key type every edgeward signer accepts. */
export const p256Keys: KeyFactory = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

/** A factory identity (manufacturer certificate and key) and the bundle root fingerprint from provisioning. */
export interface FactoryIdentity {
  readonly cert: string;
  readonly key: KeyObject;
  readonly bundleFingerprint: Uint8Array;
}

export interface EnrollAt {
  readonly host: string;
  readonly port: number;
  /** The device id the join token was issued for (EST's HTTP Basic user name); needed with `token`. */
  readonly deviceId?: string;
  readonly token?: string;
  readonly factory?: FactoryIdentity;
}

export class DeviceIdentity {
  readonly key: KeyObject;
  readonly chain: readonly X509Certificate[];
  readonly roots: readonly X509Certificate[];
  readonly spiffeId: string;
  readonly trustDomain: string;
  /** The last path segment of the SPIFFE ID: the MQTT client id and the topic segment. */
  readonly deviceId: string;
  /** The gateway that vouches for this device: its ID without `/device/<deviceId>`. */
  readonly gatewayId: string;
  /** Validity of the whole chain, epoch ms. */
  readonly notBefore: number;
  readonly notAfter: number;
  #context: SecureContext | undefined;

  private constructor(stored: StoredIdentity, now: number) {
    const leaf = stored.chain[0];
    if (leaf === undefined)
      throw new TransportError('ERR_DEVICE_IDENTITY', 'the identity has no certificate');
    // Verified where the leaf is valid, so that an expired identity still loads (and says so).
    const leafFrom = Date.parse(leaf.validFrom);
    const leafTo = Date.parse(leaf.validTo);
    const at = Math.max(leafFrom, Math.min(now, leafTo));
    let v: ReturnType<typeof verifyX509Svid>;
    let id: ReturnType<typeof parseSpiffeId>;
    try {
      // The trust domain comes from the verification itself: try it against the roots' own.
      v = verifyX509Svid(stored.chain, {
        now: at,
        bundle: { trustDomain: trustDomainOfLeaf(leaf), roots: stored.roots, sequence: 0 },
      });
      id = parseSpiffeId(v.spiffeId);
    } catch (cause) {
      throw new TransportError(
        'ERR_DEVICE_IDENTITY',
        `the device SVID does not verify against its bundle: ${(cause as Error).message}`,
        { cause },
      );
    }
    const n = id.segments.length;
    if (n < 4 || id.segments[n - 2] !== 'device') {
      throw new TransportError(
        'ERR_DEVICE_IDENTITY',
        `${id.id} is not a device identity (<gateway>/device/<id>)`,
      );
    }
    this.key = stored.key;
    this.chain = stored.chain;
    this.roots = stored.roots;
    this.spiffeId = id.id;
    this.trustDomain = id.trustDomain;
    this.deviceId = id.segments[n - 1] as string;
    this.gatewayId = `spiffe://${id.trustDomain}/${id.segments.slice(0, n - 2).join('/')}`;
    this.notBefore = v.notBefore;
    this.notAfter = v.notAfter;
  }

  /** Check a stored identity (chain to its roots, a device ID); `ERR_DEVICE_IDENTITY` when it is not one. */
  static from(stored: StoredIdentity, now: number): DeviceIdentity {
    return new DeviceIdentity(stored, now);
  }

  /** The identity in `dir`; undefined when there is none, `ERR_DEVICE_IDENTITY` when it is damaged. */
  static async load(dir: string, now: number): Promise<DeviceIdentity | undefined> {
    const stored = await readIdentity(dir);
    return stored === undefined ? undefined : new DeviceIdentity(stored, now);
  }

  /** Enroll with a join token or a factory certificate (a new key from `newKey`). */
  static async enroll(at: EnrollAt, newKey: KeyFactory, now: () => number): Promise<DeviceIdentity> {
    const key = newKey();
    const base = { host: at.host, port: at.port, key, now };
    const got = await enroll(
      at.token !== undefined
        ? {
            ...base,
            token: at.token,
            ...(at.deviceId === undefined ? {} : { deviceId: at.deviceId }),
          }
        : at.factory !== undefined
          ? { ...base, factory: at.factory }
          : (() => {
              throw new TypeError('enrollment needs a join token or a factory identity');
            })(),
    );
    return new DeviceIdentity({ key, chain: got.chain, roots: got.roots }, now());
  }

  /**
   * Re-enroll over EST (`simplereenroll`, this identity as TLS client certificate): a new key from
   * `newKey`, the same SPIFFE ID; the gateway must chain to the roots this identity trusts, and
   * the roots stay these (a bundle changes only through an authenticated bundle message).
   */
  async reenroll(
    at: { host: string; port: number },
    newKey: KeyFactory,
    now: () => number,
  ): Promise<DeviceIdentity> {
    const key = newKey();
    const got = await reenroll({
      host: at.host,
      port: at.port,
      current: { key: this.key, chain: this.chain },
      roots: this.roots,
      key,
      now,
    });
    if (got.spiffeId !== this.spiffeId)
      throw new TransportError(
        'ERR_ENROLL_PROTOCOL',
        `re-enrollment gave ${got.spiffeId}, not ${this.spiffeId}`,
      );
    return new DeviceIdentity({ key, chain: got.chain, roots: this.roots }, now());
  }

  /** True once any certificate of the chain has expired (the SVID can no longer connect). */
  expiredAt(now: number): boolean {
    return now >= this.notAfter;
  }

  /** The TLS client context (key, chain, roots), built once per identity. */
  get context(): SecureContext {
    this.#context ??= contextFor({ privateKey: this.key, chain: this.chain }, { roots: this.roots });
    return this.#context;
  }

  /** The same key and SVID with the roots of an authenticated bundle update. */
  withRoots(roots: readonly X509Certificate[], now: number): DeviceIdentity {
    return new DeviceIdentity({ key: this.key, chain: this.chain, roots }, now);
  }

  /**
   * Renew over MQTT (a new key, a CSR on `$edgeward/renew/<id>`): the answer must verify against
   * the roots this identity already trusts and name the same SPIFFE ID. The roots stay these:
   * a bundle changes only through an authenticated bundle message.
   */
  async renew(o: {
    client: MqttClient;
    clock: Clock;
    random: Random;
    newKey: KeyFactory;
    timeoutMs: number;
  }): Promise<DeviceIdentity> {
    const next = await renewOverMqtt({
      client: o.client,
      deviceId: this.deviceId,
      spiffeId: this.spiffeId,
      trustDomain: this.trustDomain,
      roots: this.roots,
      clock: o.clock,
      random: o.random,
      key: o.newKey(),
      timeoutMs: o.timeoutMs,
    });
    return new DeviceIdentity(next, o.clock.now());
  }

  async write(dir: string): Promise<void> {
    await writeIdentity(dir, this);
  }

  async writeBundle(dir: string): Promise<void> {
    await writeBundle(dir, this.roots);
  }
}

/** The trust domain named by a leaf's SPIFFE ID, for choosing the bundle (verified right after). */
function trustDomainOfLeaf(leaf: X509Certificate): string {
  // URI SANs as the project's certificate facts parse them (not by splitting the text form).
  const uris = certFacts(leaf).uris;
  if (uris.length !== 1)
    throw new TransportError('ERR_DEVICE_IDENTITY', 'the device SVID must have one URI SAN');
  return parseSpiffeId(uris[0] as string).trustDomain;
}
