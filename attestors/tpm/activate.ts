/**
 * ActivateCredential (Part 3 §12.5; brief §3.17): the TPM decrypts the issuer's challenge only if
 * it holds the EK *and* the AK with the Name the credential was bound to. Authorizations are
 * [AK (password, ADMIN role), EK]: low-range EKs need a policy session with
 * PolicySecret(TPM_RH_ENDORSEMENT), high-range ones take the password.
 */
import type { Random } from '../../runtime/core/random.ts';
import { EMPTY_PASSWORD, policyAuth } from './client/auth.ts';
import { execute } from './client/execute.ts';
import { flush } from './client/helpers.ts';
import { policySecretEndorsement, withPolicySession } from './client/sessions.ts';
import { ActivateCredential } from './commands/credential.ts';
import { type EkInfo, ekNeedsPolicySecret, loadEk } from './ek.ts';
import type { Ak } from './quote.ts';
import type { TpmTransport } from './transport/transport.ts';

export async function activateCredential(
  t: TpmTransport,
  ek: EkInfo,
  ak: Ak,
  credentialBlob: Uint8Array,
  encryptedSecret: Uint8Array,
  random: Random,
): Promise<Buffer> {
  const loaded = await loadEk(t, ek);
  try {
    const req = {
      activateHandle: ak.handle,
      keyHandle: loaded.handle,
      credentialBlob,
      secret: encryptedSecret,
    };
    if (!ekNeedsPolicySecret(ek.template))
      return Buffer.from((await execute(t, ActivateCredential, req)).certInfo);
    return await withPolicySession(t, random, async (s) => {
      await policySecretEndorsement(t, s);
      return Buffer.from(
        (await execute(t, ActivateCredential, req, [EMPTY_PASSWORD, policyAuth(s.handle)])).certInfo,
      );
    });
  } finally {
    if (loaded.transient) await flush(t, loaded.handle);
  }
}
