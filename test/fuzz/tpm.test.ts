/**
 * Fuzz: TPM bytes from both directions.
 * - Client side: every response the TPM attestor receives during a real attestation on the
 *   TypeScript simulator (recorded through a transport wrapper) is mutated and fed to
 *   `parseResponse` for its command (attestors/tpm/client/execute.ts): the answer must be a
 *   parsed response, ERR_TPM_MALFORMED or ERR_TPM_RESPONSE.
 * - Issuer side: the AK/EK public areas, quote (TPMS_ATTEST) and signature a gateway sends are
 *   mutated and fed to the verifier (attestors/tpm/verify/*) and the wire parsers
 *   (attestors/tpm/wire/*): typed ERR_ATTEST_* / ERR_TPM_MALFORMED only, and a mutated quote is
 *   never accepted.
 */
import { rmSync } from 'node:fs';
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TpmAttestor } from '../../attestors/tpm/attestor.ts';
import { type AnyCommand, authCount } from '../../attestors/tpm/client/command.ts';
import { parseResponse } from '../../attestors/tpm/client/execute.ts';
import * as attest from '../../attestors/tpm/commands/attest.ts';
import * as capability from '../../attestors/tpm/commands/capability.ts';
import * as context from '../../attestors/tpm/commands/context.ts';
import * as credential from '../../attestors/tpm/commands/credential.ts';
import * as hierarchy from '../../attestors/tpm/commands/hierarchy.ts';
import * as nv from '../../attestors/tpm/commands/nv.ts';
import * as object from '../../attestors/tpm/commands/object.ts';
import * as pcr from '../../attestors/tpm/commands/pcr.ts';
import * as random from '../../attestors/tpm/commands/random.ts';
import * as session from '../../attestors/tpm/commands/session.ts';
import * as startup from '../../attestors/tpm/commands/startup.ts';
import type { TpmTransport } from '../../attestors/tpm/transport/transport.ts';
import {
  checkAkPublic,
  checkEkPublic,
  parseEkCertificate,
  qualifyingData,
  verifyQuote,
} from '../../attestors/tpm/verify/index.ts';
import { parseAttest, parseSignature } from '../../attestors/tpm/wire/attest.ts';
import { parsePcrSelection } from '../../attestors/tpm/wire/pcr-selection.ts';
import { parsePublic } from '../../attestors/tpm/wire/public.ts';
import { decodeRc } from '../../attestors/tpm/wire/rc.ts';
import { seededRandom } from '../../sim/random.ts';
import { tpmChallenge } from '../attestors/tpm/tpm-issuer-role.ts';
import { openSim } from '../sim/tpm/harness.ts';
import { corpus, entryBytes, expectTyped, fuzz, hostileBytes, mutated } from './helpers/fuzz.ts';

/** The codes TPM parsing may refuse with: malformed bytes, a TPM error code, a refused structure. */
const tpmCode = (code: string): boolean => code.startsWith('ERR_TPM_') || code.startsWith('ERR_ATTEST_');

const COMMANDS = new Map<number, AnyCommand>();
for (const family of [
  attest,
  capability,
  context,
  credential,
  hierarchy,
  nv,
  object,
  pcr,
  random,
  session,
  startup,
])
  for (const def of Object.values(family) as AnyCommand[]) COMMANDS.set(def.code, def);

/** Records each (command, response) pair that passes through. */
function recording(inner: TpmTransport, log: { def: AnyCommand; response: Buffer }[]): TpmTransport {
  return {
    async send(command) {
      const response = Buffer.from(await inner.send(command));
      const def = COMMANDS.get(Buffer.from(command).readUInt32BE(6));
      if (def !== undefined && response.readUInt32BE(6) === 0) log.push({ def, response });
      return response;
    },
    close: () => inner.close(),
  };
}

const sim = await openSim({ random: seededRandom('fuzz-tpm') });
const log: { def: AnyCommand; response: Buffer }[] = [];
const rnd = seededRandom('fuzz-tpm-issuer');
const attestor = new TpmAttestor({
  transport: recording(sim.tpm, log),
  random: rnd,
  ekPreference: ['L-2'],
  ownsTransport: false,
});
await attestor.start();
const begin = await attestor.begin();
if (begin.method !== 'tpm') throw new Error('tpm begin expected');
const ca = sim.tpm.manufacturerCa();
const challenge = tpmChallenge(begin, rnd, ca);
const csrSpki = Buffer.alloc(91, 7);
const proof = await attestor.answer(challenge, csrSpki);
if (proof.method !== 'tpm') throw new Error('tpm proof expected');
await attestor.close();
const quoteInput = {
  akPublic: begin.akPublic,
  quote: proof.quote,
  signature: proof.signature,
  nonce: qualifyingData(challenge.nonce, csrSpki),
  selection: challenge.pcrSelection ?? '',
  pcrValues: proof.pcrValues,
};

test('recorded responses and evidence parse and verify as recorded', () => {
  assert.ok(log.length >= 8, `recorded ${log.length} responses`);
  for (const { def, response } of log) parseResponse(def, response, authCount(def));
  const v = verifyQuote(quoteInput);
  assert.is(v.pcrDigest.length, 32);
  assert.is(checkAkPublic(begin.akPublic).name.length, 34);
});

test('client: mutated TPM responses parse or fail with ERR_TPM_MALFORMED / ERR_TPM_RESPONSE', async () => {
  await fuzz(
    'tpm-response',
    fc.property(
      fc
        .nat({ max: log.length - 1 })
        .chain((i) => mutated((log[i] as { response: Buffer }).response).map((b) => [i, b] as const)),
      ([i, bad]) => {
        const { def } = log[i] as { def: AnyCommand; response: Buffer };
        const out = expectTyped(() => parseResponse(def, bad, authCount(def)));
        if (out !== 'ok') assert.ok(tpmCode(out), `${def.name}: ${out}`);
      },
    ),
    600,
  );
});

test('issuer: mutated AK public areas are checked or refused with ERR_ATTEST_PUBLIC_INVALID', async () => {
  await fuzz(
    'ak-public',
    fc.property(hostileBytes(begin.akPublic), (b) => {
      const out = expectTyped(() => checkAkPublic(b));
      if (out !== 'ok') assert.ok(tpmCode(out), out);
      const p = expectTyped(() => parsePublic(b));
      if (p !== 'ok') assert.ok(tpmCode(p), p);
    }),
    400,
  );
});

test('issuer: mutated EK public areas and EK certificates are refused with typed codes', async () => {
  const cert = begin.ekCertificate as Uint8Array;
  await fuzz(
    'ek-public',
    fc.property(hostileBytes(begin.ekPublic), mutated(cert), (ek, c) => {
      const out = expectTyped(() => checkEkPublic(ek, cert));
      if (out !== 'ok') assert.ok(tpmCode(out), out);
      const oc = expectTyped(() => checkEkPublic(begin.ekPublic, c));
      if (oc !== 'ok') assert.ok(tpmCode(oc), oc);
      const nvOut = expectTyped(() => parseEkCertificate(c));
      if (nvOut !== 'ok') assert.ok(tpmCode(nvOut), nvOut);
    }),
    300,
  );
});

test('issuer: a mutated quote, signature or PCR value is never accepted', async () => {
  const pcrArb = fc
    .tuple(fc.nat({ max: quoteInput.pcrValues.length - 1 }), mutated(...quoteInput.pcrValues))
    .map(([i, v]) => quoteInput.pcrValues.map((p, j) => (j === i ? v : p)));
  await fuzz(
    'quote',
    fc.property(
      fc.oneof(
        mutated(quoteInput.quote).map((quote) => ({ ...quoteInput, quote })),
        mutated(quoteInput.signature).map((signature) => ({ ...quoteInput, signature })),
        pcrArb.map((pcrValues) => ({ ...quoteInput, pcrValues })),
      ),
      (input) => {
        const unchanged =
          Buffer.compare(Buffer.from(input.quote), Buffer.from(quoteInput.quote)) === 0 &&
          Buffer.compare(Buffer.from(input.signature), Buffer.from(quoteInput.signature)) === 0 &&
          input.pcrValues.every(
            (v, i) =>
              Buffer.compare(Buffer.from(v), Buffer.from(quoteInput.pcrValues[i] as Uint8Array)) === 0,
          );
        const out = expectTyped(() => verifyQuote(input));
        if (unchanged) return;
        assert.is.not(out, 'ok', 'an altered quote was accepted');
        assert.ok(tpmCode(out), out);
      },
    ),
    400,
  );
});

test('wire: TPMS_ATTEST, TPMT_SIGNATURE, response codes and PCR selections from hostile bytes', async () => {
  await fuzz(
    'wire',
    fc.property(
      hostileBytes(quoteInput.quote),
      hostileBytes(quoteInput.signature),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.string({ maxLength: 40 }),
      (q, s, rc, sel) => {
        const a = expectTyped(() => parseAttest(q));
        if (a !== 'ok') assert.ok(tpmCode(a), a);
        const b = expectTyped(() => parseSignature(s));
        if (b !== 'ok') assert.ok(tpmCode(b), b);
        assert.is(
          expectTyped(() => decodeRc(rc)),
          'ok',
        );
        const c = expectTyped(() => parsePcrSelection(sel));
        if (c !== 'ok') assert.ok(c.startsWith('ERR_'), c);
      },
    ),
    500,
  );
});

test('corpus replays with its recorded outcomes', () => {
  for (const e of corpus('tpm')) {
    const b = entryBytes(e);
    const [kind, cmd] = e.name.split(':');
    const def = [...COMMANDS.values()].find((d) => d.name === cmd);
    const out =
      kind === 'response' && def !== undefined
        ? expectTyped(() => parseResponse(def, b, authCount(def)))
        : kind === 'attest'
          ? expectTyped(() => parseAttest(b))
          : expectTyped(() => parsePublic(b));
    assert.is(out, e.expect, `${e.name}: ${e.note}`);
  }
});

test.after(async () => {
  await sim.tpm.close();
  rmSync(sim.dir, { recursive: true, force: true });
});

test.run();
