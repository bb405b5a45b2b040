/**
 * A revoked device id is never enrolled again (issue 15, item 11): the signer handed to the
 * enrollment listener and to renewal refuses, before anything is signed, a device whose SPIFFE ID
 * `<gateway ID>/device/<id>` the revocation feed lists, with `ERR_ENROLL_DEVICE_REVOKED`,
 * whether it came with a join token or a factory certificate. A join token stays unconsumed
 * (the refusal happens inside the redemption), and the admin API refuses to issue one for it.
 *
 * @example
 * ```ts
 * const signer = refusingRevoked(agent.deviceSigner, agent.revocations);
 * ```
 */
import type { DeviceSigner, RevocationSource } from '../../runtime/sources/types.ts';
import { TransportError } from '../errors.ts';

/** Throws `ERR_ENROLL_DEVICE_REVOKED` when `<gatewayId>/device/<deviceId>` is revoked. */
export function assertNotRevoked(
  revocations: Pick<RevocationSource, 'isRevokedId'>,
  gatewayId: string,
  deviceId: string,
): void {
  const spiffeId = `${gatewayId}/device/${deviceId}`;
  if (revocations.isRevokedId(spiffeId))
    throw new TransportError('ERR_ENROLL_DEVICE_REVOKED', `${spiffeId} is revoked: it cannot enroll again`);
}

export function refusingRevoked(
  signer: DeviceSigner,
  revocations: Pick<RevocationSource, 'isRevokedId'>,
): DeviceSigner {
  return {
    get gatewayId() {
      return signer.gatewayId;
    },
    async signDevice(request) {
      assertNotRevoked(revocations, signer.gatewayId, request.deviceId);
      return signer.signDevice(request);
    },
  };
}
