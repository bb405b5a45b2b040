/**
 * Credential protection: TPM2_ActivateCredential (Part 3 §12.5; authorizations [AK admin, EK user]
 * in that order) and TPM2_MakeCredential (§12.6; the TPM-side twin of our software MakeCredential,
 * used to cross-check it).
 */
import { b2 } from '../client/codec.ts';
import { defineCommand } from '../client/command.ts';
import { TPM_CC } from '../wire/constants.ts';

export const ActivateCredential = defineCommand({
  name: 'ActivateCredential',
  code: TPM_CC.ActivateCredential,
  handles: { activateHandle: 'auth', keyHandle: 'auth' },
  params: { credentialBlob: b2(256), secret: b2(512) },
  response: { certInfo: b2(64) },
});

export const MakeCredential = defineCommand({
  name: 'MakeCredential',
  code: TPM_CC.MakeCredential,
  handles: { handle: 'none' },
  params: { credential: b2(64), objectName: b2(68) },
  response: { credentialBlob: b2(256), secret: b2(512) },
});
