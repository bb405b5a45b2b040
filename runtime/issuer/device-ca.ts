/**
 * The delegated device CA: a name-constrained CA certificate for the gateway's device-CA key,
 * living the gateway's offline budget (`budget.ts`), under which the gateway signs its devices'
 * certificates while the issuer is out of reach.
 */
import type { AsyncSvidSigner, SignedCertificate } from '../svid/signer.ts';

export function signDeviceCa(
  signer: AsyncSvidSigner,
  o: {
    spiffeId: string;
    caSpki: Buffer;
    notBefore: number;
    notAfter: number;
    serverNames: readonly string[];
  },
): Promise<SignedCertificate> {
  return signer.issue({
    profile: 'device-ca',
    spiffeId: o.spiffeId,
    spki: o.caSpki,
    notBefore: o.notBefore,
    notAfter: o.notAfter,
    permittedServerNames: o.serverNames,
  });
}
