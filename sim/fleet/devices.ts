/**
 * The devices behind one simulated gateway. Each holds a P-256 key and its device SVID chain,
 * obtains it from the gateway's delegated CA (`agent.deviceSigner`, the same call the broker's
 * enrollment and renewal handlers make), renews at half of its lifetime, and "uses" it every step:
 * the gateway authorizes it exactly as its broker does (`SvidVerifier.verifyCerts` with the
 * agent's bundle and revocation set). Outcomes are reported to the invariant checker.
 *
 * @example
 * ```ts
 * const devices = new DeviceGroup(gateway, 50, random);
 * await devices.step(invariants, now);
 * ```
 */
import { generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { isEdgewardError } from '../../runtime/core/error.ts';
import { SvidVerifier } from '../../runtime/spiffe/verify.ts';
import { createCsr } from '../../runtime/svid/csr.ts';
import type { SimGateway } from './gateway.ts';
import type { Invariants } from './invariants.ts';

export interface SimDevice {
  readonly id: string;
  readonly key: KeyObject;
  readonly csr: Buffer;
  chain: Uint8Array[] | undefined;
  /** The chain parsed once at issuance (the broker parses a peer chain once per handshake). */
  certs: X509Certificate[] | undefined;
  /** The leaf's own NotAfter (the invariant checks it apart from the verifier's path NotAfter). */
  leafNotAfter: number;
  notBefore: number;
  notAfter: number;
  /** Known revoked at the issuer (the scenario revoked it). */
  revokedAtSequence: number | undefined;
  authorized: boolean;
}

export class DeviceGroup {
  readonly devices: SimDevice[];
  readonly #gw: SimGateway;
  readonly #verifier = new SvidVerifier();
  refused = 0;

  constructor(gw: SimGateway, count: number) {
    this.#gw = gw;
    // One key per device, made once: key generation is not what the simulation measures.
    this.devices = Array.from({ length: count }, (_, i) => {
      const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
      return {
        id: `d${i}`,
        key,
        csr: createCsr(key),
        chain: undefined,
        certs: undefined,
        leafNotAfter: 0,
        notBefore: 0,
        notAfter: 0,
        revokedAtSequence: undefined,
        authorized: false,
      };
    });
  }

  /** Renew what is due, then authorize every device that holds a credential. */
  async step(inv: Invariants, trueNow: number): Promise<void> {
    const agent = this.#gw.agent;
    for (const d of this.devices) {
      d.authorized = false;
      if (agent === undefined) continue;
      const due = d.chain === undefined || trueNow >= d.notBefore + (d.notAfter - d.notBefore) / 2;
      if (due && d.revokedAtSequence === undefined) {
        try {
          const out = await agent.deviceSigner.signDevice({ deviceId: d.id, csrDer: d.csr });
          d.chain = out.chain.map((c) => new Uint8Array(c));
          d.certs = d.chain.map((c) => new X509Certificate(c));
          const leaf = d.certs[0] as X509Certificate;
          d.notBefore = Date.parse(leaf.validFrom);
          d.leafNotAfter = Date.parse(leaf.validTo);
          d.notAfter = out.notAfter;
          inv.issuedDevice(this.#gw, d, out.chain, trueNow);
        } catch (err) {
          if (!isEdgewardError(err)) throw err;
        }
      }
      if (d.certs === undefined) continue;
      try {
        // The options transport/mqtt/broker.ts verifies a client chain with: the chain must lead
        // to a root of the bundle (the delegated CA is in the chain, it is not an anchor).
        const v = this.#verifier.verifyCerts(d.certs, {
          now: agent.now(),
          bundle: agent.bundleSource.getBundleFor(inv.trustDomain),
          revocation: agent.revocations,
        });
        d.authorized = true;
        inv.authorizedDevice(this.#gw, d, v, trueNow);
      } catch (err) {
        if (!isEdgewardError(err)) throw err;
        this.refused++;
      }
    }
  }

  /** Devices whose credential is valid in true time (what the chart plots). */
  validCount(trueNow: number): number {
    return this.devices.filter((d) => d.chain !== undefined && d.notAfter > trueNow && d.authorized).length;
  }
}
