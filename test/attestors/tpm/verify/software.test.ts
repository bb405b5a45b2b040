/**
 * The verifier functions against software-made inputs: a quote signed by a node:crypto key dressed
 * as an AK, EK certificate NV layouts, chains built with openssl. The TPM round trips (swtpm
 * activating our credentials, tpm2_checkquote) live in the swtpm test files.
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, type KeyObject, sign, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { digest } from '../../../../attestors/tpm/crypto/kdf.ts';
import {
  checkAkPublic,
  checkEkPublic,
  parseEkCertificate,
  qualifyingData,
  verifyEkChain,
  verifyQuote,
} from '../../../../attestors/tpm/verify/index.ts';
import { marshalAttest, marshalSignature } from '../../../../attestors/tpm/wire/attest.ts';
import { TPM_ALG, TPM_GENERATED_VALUE, TPM_ST } from '../../../../attestors/tpm/wire/constants.ts';
import { parsePcrSelection } from '../../../../attestors/tpm/wire/pcr-selection.ts';
import { marshalPublic } from '../../../../attestors/tpm/wire/public.ts';
import { akEccP256Template, ekEccP256Template } from '../../../../attestors/tpm/wire/templates.ts';
import { rejects } from '../../../helpers/rejects.ts';

function softAk(): { key: KeyObject; akPublic: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = publicKey.export({ format: 'jwk' });
  const x = Buffer.from(jwk.x as string, 'base64url');
  const y = Buffer.from(jwk.y as string, 'base64url');
  const akPublic = marshalPublic({ ...akEccP256Template(), unique: Buffer.concat([x, y]), eccX: x, eccY: y });
  return { key: privateKey, akPublic };
}

function softQuote(key: KeyObject, extraData: Uint8Array, sel: string, pcrs: Buffer[]) {
  const quote = marshalAttest({
    magic: TPM_GENERATED_VALUE,
    qualifiedSigner: Buffer.alloc(34),
    extraData,
    clockInfo: { clock: 1000n, resetCount: 2, restartCount: 0, safe: true },
    firmwareVersion: 0x2019102300163636n,
    attested: {
      type: TPM_ST.ATTEST_QUOTE,
      pcrSelect: parsePcrSelection(sel),
      pcrDigest: digest(TPM_ALG.SHA256, ...pcrs),
    },
  });
  const rs = sign('sha256', quote, { key, dsaEncoding: 'ieee-p1363' });
  const signature = marshalSignature({
    sigAlg: TPM_ALG.ECDSA,
    hash: TPM_ALG.SHA256,
    r: rs.subarray(0, 32),
    s: rs.subarray(32),
  });
  return { quote, signature };
}

test('verifyQuote accepts a correct quote and names each failure', async () => {
  const { key, akPublic } = softAk();
  const nonce = qualifyingData(Buffer.alloc(32, 1), Buffer.from('spki'));
  const pcrs = [Buffer.alloc(32, 0), Buffer.alloc(32, 7)];
  const { quote, signature } = softQuote(key, nonce, 'sha256:0,7', pcrs);
  const ok = verifyQuote({ akPublic, quote, signature, nonce, selection: 'sha256:0,7', pcrValues: pcrs });
  assert.is(ok.clockInfo.resetCount, 2);
  assert.is(ok.firmwareVersion, 0x2019102300163636n);
  const base = { akPublic, quote, signature, nonce, selection: 'sha256:0,7', pcrValues: pcrs };
  await rejects(() => verifyQuote({ ...base, nonce: Buffer.alloc(32) }), 'ERR_ATTEST_QUOTE_INVALID');
  await rejects(() => verifyQuote({ ...base, selection: 'sha256:0,1,7' }), 'ERR_ATTEST_QUOTE_INVALID');
  await rejects(
    () => verifyQuote({ ...base, pcrValues: [pcrs[1] as Buffer, pcrs[0] as Buffer] }),
    'ERR_ATTEST_QUOTE_INVALID',
  );
  const tampered = Buffer.from(quote);
  tampered.writeUInt8((tampered.at(-1) as number) ^ 1, tampered.length - 1);
  await rejects(() => verifyQuote({ ...base, quote: tampered }), 'ERR_ATTEST_QUOTE_INVALID');
  await rejects(() => verifyQuote({ ...base, akPublic: softAk().akPublic }), 'ERR_ATTEST_QUOTE_INVALID');
  await rejects(
    () => verifyQuote({ ...base, signature: signature.subarray(0, 10) }),
    'ERR_ATTEST_QUOTE_INVALID',
  );
});

test('checkAkPublic refuses unrestricted, decrypting or weak keys', async () => {
  const { akPublic } = softAk();
  assert.is(checkAkPublic(akPublic).name.length, 34);
  const unrestricted = Buffer.from(akPublic);
  unrestricted.writeUInt32BE(0x00040472, 4);
  await rejects(() => checkAkPublic(unrestricted), 'ERR_ATTEST_PUBLIC_INVALID');
  const notFixed = Buffer.from(akPublic);
  notFixed.writeUInt32BE(0x00050470, 4);
  await rejects(() => checkAkPublic(notFixed), 'ERR_ATTEST_PUBLIC_INVALID');
  await rejects(() => checkAkPublic(marshalPublic(ekEccP256Template())), 'ERR_ATTEST_PUBLIC_INVALID');
  await rejects(() => checkAkPublic(Buffer.from('0023')), 'ERR_ATTEST_PUBLIC_INVALID');
});

test('EK certificates: header and padding tolerated, chain built and dated, key matched to template', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-ekcert-'));
  try {
    const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    ossl(
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'root.key',
      '-out',
      'root.pem',
      '-subj',
      '/CN=root',
      '-days',
      '30',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
    );
    ossl(
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'ek.key',
      '-out',
      'ek.csr',
      '-subj',
      '/CN=ek',
    );
    writeFileSync(join(dir, 'ext'), 'basicConstraints=CA:FALSE\n');
    ossl(
      'x509',
      '-req',
      '-in',
      'ek.csr',
      '-CA',
      'root.pem',
      '-CAkey',
      'root.key',
      '-CAcreateserial',
      '-out',
      'ek.pem',
      '-days',
      '10',
      '-extfile',
      'ext',
      '-outform',
      'DER',
    );
    const der = readFileSync(join(dir, 'ek.pem'));
    const root = new X509Certificate(readFileSync(join(dir, 'root.pem')));
    const header = Buffer.alloc(4);
    header.writeUInt16BE(0x1001, 0);
    header.writeUInt16BE(der.length, 2);
    assert.equal(parseEkCertificate(der), der);
    assert.equal(parseEkCertificate(Buffer.concat([header, der])), der);
    assert.equal(parseEkCertificate(Buffer.concat([der, Buffer.alloc(300, 0xff)])), der);
    await rejects(() => parseEkCertificate(der.subarray(0, der.length - 5)), 'ERR_ATTEST_EK_CERT_INVALID');
    await rejects(() => parseEkCertificate(Buffer.alloc(100, 0xff)), 'ERR_ATTEST_EK_CERT_INVALID');
    const now = Date.now();
    assert.is(verifyEkChain(der, [root], [], now).length, 2);
    await rejects(() => verifyEkChain(der, [], [root], now), 'ERR_ATTEST_EK_CHAIN');
    await rejects(() => verifyEkChain(der, [root], [], now + 20 * 86400_000), 'ERR_ATTEST_EK_CHAIN');
    // The certificate's P-256 key as an L-2 EK public area matches; any other key does not.
    const jwk = createPrivateKey(readFileSync(join(dir, 'ek.key'))).export({ format: 'jwk' });
    const x = Buffer.from(jwk.x as string, 'base64url');
    const y = Buffer.from(jwk.y as string, 'base64url');
    const ek = marshalPublic({ ...ekEccP256Template(), unique: Buffer.concat([x, y]), eccX: x, eccY: y });
    assert.is(checkEkPublic(ek, der).template, 'L-2');
    await rejects(() => checkEkPublic(softAk().akPublic, der), 'ERR_ATTEST_PUBLIC_INVALID');
    const weaker = Buffer.from(ek);
    weaker.writeUInt32BE(0x000300f2, 4); // userWithAuth added
    await rejects(() => checkEkPublic(weaker, der), 'ERR_ATTEST_PUBLIC_INVALID');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
