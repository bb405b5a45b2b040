/**
 * The issuer's half of TPM attestation for tests, built only from attestors/tpm/verify: check the
 * EK (chain to the swtpm local CA, template), make the credential challenge, verify the proof.
 * Shared by the attestor tests, the conformance runs and the benchmark.
 */
import { timingSafeEqual, type X509Certificate } from 'node:crypto';
import type { AttestProof } from '../../../attestors/attestor.ts';
import { AttestorError } from '../../../attestors/errors.ts';
import {
  checkAkPublic,
  checkEkPublic,
  makeCredential,
  qualifyingData,
  verifyEkChain,
  verifyQuote,
} from '../../../attestors/tpm/verify/index.ts';
import type { Random } from '../../../runtime/core/random.ts';
import type { AttestBeginRequest, AttestBeginResponse } from '../../../runtime/upstream/protocol.ts';

const credentials = new WeakMap<AttestBeginResponse, Buffer>();

export function tpmChallenge(
  begin: AttestBeginRequest,
  random: Random,
  ca: { root: X509Certificate; intermediate: X509Certificate } | undefined,
  pcrSelection = 'sha256:0,1,2,3,4,5,6,7',
): AttestBeginResponse {
  if (begin.method !== 'tpm') throw new Error('not a tpm begin');
  if (ca !== undefined) {
    if (begin.ekCertificate === undefined) throw new Error('no EK certificate');
    verifyEkChain(begin.ekCertificate, [ca.root], [ca.intermediate], Date.now());
    checkEkPublic(begin.ekPublic, begin.ekCertificate);
  }
  const ak = checkAkPublic(begin.akPublic);
  const credential = random.bytes(32);
  const mc = makeCredential(begin.ekPublic, ak.name, credential, random);
  const challenge: AttestBeginResponse = {
    sessionId: 'test',
    nonce: random.bytes(32),
    credentialBlob: mc.credentialBlob,
    encryptedSecret: mc.encryptedSecret,
    pcrSelection,
    expiresAt: 0,
  };
  credentials.set(challenge, credential);
  return challenge;
}

export function tpmCheck(
  begin: AttestBeginRequest,
  challenge: AttestBeginResponse,
  proof: AttestProof,
  csrSpkiDer: Uint8Array,
): void {
  if (begin.method !== 'tpm' || proof.method !== 'tpm') throw new Error('not a tpm proof');
  const want = credentials.get(challenge);
  if (want === undefined || !timingSafeEqual(want, Buffer.from(proof.activatedSecret)))
    throw new AttestorError('ERR_ATTEST_CREDENTIAL', 'activated secret does not match');
  verifyQuote({
    akPublic: begin.akPublic,
    quote: proof.quote,
    signature: proof.signature,
    nonce: qualifyingData(challenge.nonce, csrSpkiDer),
    selection: challenge.pcrSelection ?? '',
    pcrValues: proof.pcrValues,
  });
}
