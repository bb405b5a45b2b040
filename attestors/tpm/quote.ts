/**
 * Quoting with the AK (Part 3 §18.4; brief §3.11, §4.5): the AK is a primary key in the endorsement
 * hierarchy, recreated from its template for each use (deterministic: the same AK across renewals
 * and reboots, no key blob to keep; endorsement-hierarchy quotes carry unobfuscated reset counts and
 * firmware version, brief §6 P16). PCR values are read after the quote and checked against its
 * digest; a PCR that moved in between makes it quote again.
 */
import { AttestorError } from '../errors.ts';
import { execute } from './client/execute.ts';
import { flush, readPcrs } from './client/helpers.ts';
import { Quote } from './commands/attest.ts';
import { CreatePrimary } from './commands/hierarchy.ts';
import { digest } from './crypto/kdf.ts';
import type { TpmTransport } from './transport/transport.ts';
import { parseAttest } from './wire/attest.ts';
import { TPM_ALG, TPM_RH, TPM_ST } from './wire/constants.ts';
import type { PcrSelection } from './wire/pcr-selection.ts';
import { marshalPublic } from './wire/public.ts';
import { akEccP256Template } from './wire/templates.ts';

export interface Ak {
  readonly handle: number;
  /** TPMT_PUBLIC bytes. */
  readonly public: Buffer;
  readonly name: Buffer;
}

export async function withAk<T>(t: TpmTransport, fn: (ak: Ak) => Promise<T>): Promise<T> {
  const r = await execute(t, CreatePrimary, {
    primaryHandle: TPM_RH.ENDORSEMENT,
    inSensitive: { userAuth: new Uint8Array(), data: new Uint8Array() },
    inPublic: marshalPublic(akEccP256Template()),
    outsideInfo: new Uint8Array(),
    creationPCR: [],
  });
  try {
    return await fn({ handle: r.objectHandle, public: Buffer.from(r.outPublic), name: Buffer.from(r.name) });
  } finally {
    await flush(t, r.objectHandle);
  }
}

export interface QuoteResult {
  readonly quote: Buffer;
  readonly signature: Buffer;
  readonly pcrValues: Buffer[];
}

export async function quotePcrs(
  t: TpmTransport,
  ak: Ak,
  qualifyingData: Uint8Array,
  selection: PcrSelection,
): Promise<QuoteResult> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const q = await execute(t, Quote, {
      signHandle: ak.handle,
      qualifyingData,
      inScheme: { scheme: TPM_ALG.NULL },
      PCRselect: selection,
    });
    const attest = parseAttest(q.quoted);
    if (attest.attested.type !== TPM_ST.ATTEST_QUOTE)
      throw new AttestorError('ERR_TPM_MALFORMED', 'Quote returned a non-quote attestation');
    const pcrValues = await readPcrs(t, selection);
    if (digest(TPM_ALG.SHA256, ...pcrValues).equals(Buffer.from(attest.attested.pcrDigest)))
      return { quote: Buffer.from(q.quoted), signature: Buffer.from(q.signature), pcrValues };
  }
  throw new AttestorError('ERR_TPM_STATE', 'PCR values kept changing while quoting');
}
