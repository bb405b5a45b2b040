/**
 * The verifier side of TPM attestation, for the issuer: pure functions, randomness injected.
 * Check the EK (certificate chain, template), the AK, make the credential challenge, verify the
 * quote. Nothing here talks to a TPM.
 */
export { type CheckedAk, checkAkPublic } from './ak-public.ts';
export { parseEkCertificate, verifyEkChain } from './ek-certificate.ts';
export { type CheckedEk, checkEkPublic, type EkTemplateName } from './ek-public.ts';
export { type MadeCredential, makeCredential } from './make-credential.ts';
export { qualifyingData } from './qualifying-data.ts';
export { type QuoteInput, type VerifiedQuote, verifyQuote } from './quote.ts';
