/**
 * Attestation and signing: TPM2_Quote (Part 3 §18.4), TPM2_Certify (§18.2), TPM2_Sign (§20.2).
 * A restricted key signs only what the TPM itself produced: Sign with it needs a HASHCHECK ticket.
 */
import { b2, pcrSelection, signatureBytes, sigScheme, ticket } from '../client/codec.ts';
import { defineCommand } from '../client/command.ts';
import { TPM_CC } from '../wire/constants.ts';

export const Quote = defineCommand({
  name: 'Quote',
  code: TPM_CC.Quote,
  handles: { signHandle: 'auth' },
  params: { qualifyingData: b2(66), inScheme: sigScheme, PCRselect: pcrSelection },
  response: { quoted: b2(1024), signature: signatureBytes },
});

export const Certify = defineCommand({
  name: 'Certify',
  code: TPM_CC.Certify,
  handles: { objectHandle: 'auth', signHandle: 'auth' },
  params: { qualifyingData: b2(66), inScheme: sigScheme },
  response: { certifyInfo: b2(1024), signature: signatureBytes },
});

export const Sign = defineCommand({
  name: 'Sign',
  code: TPM_CC.Sign,
  handles: { keyHandle: 'auth' },
  params: { digest: b2(64), inScheme: sigScheme, validation: ticket },
  response: { signature: signatureBytes },
});
