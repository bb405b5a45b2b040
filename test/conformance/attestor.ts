/**
 * The attestor conformance suite (STYLE.md rule 9): every attestor — tpm on swtpm or on the
 * simulator, join-token, x509pop — runs it with its own factory. The factory also plays the issuer's
 * part for its method: `challenge` builds a valid challenge from the begin request, `check` verifies
 * a proof as the issuer would, refusing a proof bound to another CSR key with the typed code named in
 * `refusals`. Every refusal is asserted by its code. Feature tests switch on from `supports`.
 *
 * @example
 * ```ts
 * attestorConformance('tpm on swtpm', async () => ({
 *   attestor, challenge, check, checkQuote, cleanup,
 *   refusals: { otherCsrKey: 'ERR_ATTEST_QUOTE_INVALID', otherNonce: 'ERR_ATTEST_QUOTE_INVALID' },
 * }));
 * ```
 */
import { generateKeyPairSync } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Attestor, AttestProof } from '../../attestors/attestor.ts';
import type { AttestBeginRequest, AttestBeginResponse } from '../../runtime/upstream/protocol.ts';
import { rejects } from '../helpers/rejects.ts';

export interface AttestorUnderTest {
  /** A fresh, not yet started attestor. */
  readonly attestor: Attestor;
  /** What the issuer would answer to `begin` (nonce of 32 bytes; credential for tpm). */
  challenge(begin: AttestBeginRequest): Promise<AttestBeginResponse> | AttestBeginResponse;
  /** Verify `proof` as the issuer would; throw a typed error when it does not hold. */
  check(
    begin: AttestBeginRequest,
    challenge: AttestBeginResponse,
    proof: AttestProof,
    csrSpkiDer: Uint8Array,
  ): Promise<void> | void;
  /** Verify renewal evidence (attestors with `supports.pcrs`). */
  checkQuote?(
    begin: AttestBeginRequest,
    nonce: Uint8Array,
    csrSpkiDer: Uint8Array,
    selection: string,
    evidence: { quote: Uint8Array; signature: Uint8Array; pcrValues: Uint8Array[] },
  ): void;
  /**
   * The typed codes the issuer's checks refuse with: `otherCsrKey` from `check` for a proof checked
   * against another CSR key (undefined: the method binds no key, as join-token's bearer token, and
   * the suite asserts that the check then passes), `otherNonce` from `checkQuote` for evidence
   * checked against another nonce (required with `checkQuote`).
   */
  readonly refusals: { readonly otherCsrKey: string | undefined; readonly otherNonce?: string };
  cleanup(): Promise<void>;
}

function spki(): Buffer {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return publicKey.export({ type: 'spki', format: 'der' });
}

export function attestorConformance(name: string, make: () => Promise<AttestorUnderTest>): void {
  const s = suite<{ u?: AttestorUnderTest }>(`attestor conformance: ${name}`, {});
  s.before.each(async (ctx) => {
    ctx.u = await make();
  });
  s.after.each(async (ctx) => {
    await ctx.u?.attestor.close();
    await ctx.u?.cleanup();
  });
  const U = (ctx: { u?: AttestorUnderTest }): AttestorUnderTest => ctx.u as AttestorUnderTest;

  s(
    'lifecycle: nothing before start, start once, close idempotent, ERR_ATTESTOR_CLOSED after',
    async (ctx) => {
      const { attestor } = U(ctx);
      await rejects(() => attestor.begin(), 'ERR_ATTESTOR_CLOSED'); // before start
      await attestor.start();
      await rejects(() => attestor.start(), 'ERR_ATTESTOR_CLOSED'); // a second start
      await attestor.close();
      await attestor.close();
      await rejects(() => attestor.begin(), 'ERR_ATTESTOR_CLOSED');
      await rejects(
        () => attestor.answer({ sessionId: 's', nonce: Buffer.alloc(32), expiresAt: 0 }, spki()),
        'ERR_ATTESTOR_CLOSED',
      );
    },
  );

  s('begin names the method; the answer verifies as the issuer checks it', async (ctx) => {
    const u = U(ctx);
    await u.attestor.start();
    const begin = await u.attestor.begin();
    assert.is(begin.method, u.attestor.method);
    const challenge = await u.challenge(begin);
    const key = spki();
    const proof = await u.attestor.answer(challenge, key);
    assert.is(proof.method, u.attestor.method);
    await u.check(begin, challenge, proof, key);
  });

  s('a proof is bound to its CSR key and nonce where the method binds them', async (ctx) => {
    const u = U(ctx);
    await u.attestor.start();
    const begin = await u.attestor.begin();
    const challenge = await u.challenge(begin);
    const key = spki();
    const proof = await u.attestor.answer(challenge, key);
    await u.check(begin, challenge, proof, key);
    const code = u.refusals.otherCsrKey;
    if (code === undefined) {
      // A bearer token binds nothing (documented): the same proof verifies for any CSR key.
      assert.is(proof.method, 'join-token', 'only join-token may bind no CSR key');
      await u.check(begin, challenge, proof, spki());
      return;
    }
    await rejects(() => u.check(begin, challenge, proof, spki()), code);
  });

  s('a short nonce is refused before anything reaches the device', async (ctx) => {
    const u = U(ctx);
    await u.attestor.start();
    await rejects(
      () => u.attestor.answer({ sessionId: 's', nonce: Buffer.alloc(8), expiresAt: 0 }, spki()),
      'ERR_ATTESTOR_INPUT',
    );
  });

  s('quote: fresh renewal evidence when supports.pcrs, else ERR_ATTESTOR_UNSUPPORTED', async (ctx) => {
    const u = U(ctx);
    await u.attestor.start();
    const nonce = Buffer.alloc(32, 5);
    const key = spki();
    if (!u.attestor.supports.pcrs) {
      await rejects(() => u.attestor.quote(nonce, key, 'sha256:0'), 'ERR_ATTESTOR_UNSUPPORTED');
      return;
    }
    const begin = await u.attestor.begin();
    const ev = await u.attestor.quote(nonce, key, 'sha256:0,1,2,7');
    assert.is(ev.pcrValues.length, 4);
    const checkQuote = u.checkQuote;
    const otherNonce = u.refusals.otherNonce;
    if (checkQuote === undefined || otherNonce === undefined)
      return assert.unreachable('a quoting attestor must give checkQuote and refusals.otherNonce');
    checkQuote(begin, nonce, key, 'sha256:0,1,2,7', ev);
    await rejects(() => checkQuote(begin, Buffer.alloc(32, 6), key, 'sha256:0,1,2,7', ev), otherNonce);
  });

  s(
    'seal/unseal round-trips a 32-byte key when supports.sealing; tampered blobs are typed errors',
    async (ctx) => {
      const u = U(ctx);
      await u.attestor.start();
      const key = Buffer.alloc(32, 0xab);
      if (!u.attestor.supports.sealing) {
        await rejects(() => u.attestor.seal(key), 'ERR_ATTESTOR_UNSUPPORTED');
        await rejects(() => u.attestor.unseal(Buffer.alloc(10)), 'ERR_ATTESTOR_UNSUPPORTED');
        return;
      }
      const blob = await u.attestor.seal(key);
      assert.equal(Buffer.from(await u.attestor.unseal(blob)), key);
      const pcrBlob = await u.attestor.seal(key, { pcrs: [0, 7] });
      assert.equal(Buffer.from(await u.attestor.unseal(pcrBlob)), key);
      await rejects(() => u.attestor.unseal(Buffer.from(blob).subarray(0, 20)), 'ERR_ATTESTOR_SEALED_BLOB');
      const flipped = Buffer.from(blob);
      flipped.writeUInt8((flipped.at(-1) as number) ^ 0xff, flipped.length - 1);
      await rejects(() => u.attestor.unseal(flipped), 'ERR_ATTESTOR_SEALED_BLOB');
      await rejects(() => u.attestor.seal(Buffer.alloc(129)), 'ERR_ATTESTOR_INPUT');
      await rejects(() => u.attestor.seal(Buffer.alloc(0)), 'ERR_ATTESTOR_INPUT');
    },
  );

  s.run();
}
