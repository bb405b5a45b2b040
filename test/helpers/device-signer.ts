/**
 * TEST ONLY: the product's `AgentDeviceSigner` over a fixed gateway identity (a gateway SVID and
 * a delegated CA from the test PKI or a benchmark's files), so broker tests exercise exactly the
 * signer a gateway runs — same CSR checks, same error codes — without an agent around it.
 */
import type { KeyObject, X509Certificate } from 'node:crypto';
import { AgentDeviceSigner } from '../../runtime/agent/device-signer.ts';
import { liveIdentity } from '../../runtime/agent/identity.ts';
import type { Clock } from '../../runtime/core/clock.ts';
import type { Random } from '../../runtime/core/random.ts';

export interface FixedIdentity {
  readonly trustDomain: string;
  readonly gatewayId: string;
  /** Gateway SVID chain, leaf first, and its key. */
  readonly svidChain: readonly X509Certificate[];
  readonly svidKey: KeyObject;
  /** Delegated device CA first, then intermediates; and its key. */
  readonly caChain: readonly X509Certificate[];
  readonly caKey: KeyObject;
}

const der = (k: KeyObject): Uint8Array => k.export({ type: 'pkcs8', format: 'der' });

export function fixedDeviceSigner(
  id: FixedIdentity,
  clock: Clock,
  random: Random,
  ttlMs?: number,
): AgentDeviceSigner {
  const live = liveIdentity({
    spiffeId: id.gatewayId,
    svidChain: id.svidChain.map((c) => c.raw),
    svidKey: der(id.svidKey),
    caChain: id.caChain.map((c) => c.raw),
    caKeyBackend: 'software',
    caKey: der(id.caKey),
    obtainedAt: clock.now(),
    via: 'attest',
    nextNonce: new Uint8Array(32),
  });
  return new AgentDeviceSigner(
    {
      trustDomain: id.trustDomain,
      random,
      caIdentity: () => (clock.now() < live.ca.notAfter ? live : undefined),
      clockTrusted: () => true,
      now: () => clock.now(),
      recordDevice: async () => {},
    },
    ttlMs,
  );
}
