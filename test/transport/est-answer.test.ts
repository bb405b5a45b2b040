/**
 * The reading of a gateway's EST answer (est-request.ts `certsOf`) on bad input: every malformed
 * answer is a typed error, never a plain one. A certs-only PKCS#7 whose SEQUENCE is no
 * certificate, a wrong content type, and a refusal body with an unknown code.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { certsOf } from '../../transport/enroll/est-request.ts';
import { base64Lines, certsOnly } from '../../transport/enroll/pkcs7.ts';
import { makeCert } from '../helpers/pki.ts';
import { rejects } from '../helpers/rejects.ts';

const TYPE = 'application/pkcs7-mime; smime-type=certs-only';
const answer = (certs: Uint8Array[]) => ({
  status: 200,
  type: TYPE,
  body: Buffer.from(base64Lines(certsOnly(certs))),
});

const root = await makeCert({
  subject: 'CN=est answer root',
  ca: true,
  notBefore: Date.now() - 3600_000,
  notAfter: Date.now() + 86400_000,
});

test('a certs-only answer is read into its certificates', () => {
  const [cert] = certsOf(answer([root.cert.raw]));
  assert.is(cert?.subject, 'CN=est answer root');
});

test('a certs-only answer carrying a SEQUENCE that is no certificate is ERR_ENROLL_PROTOCOL', async () => {
  // SEQUENCE { INTEGER 1 }: well-formed DER, not an X.509 certificate.
  const notACert = Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]);
  const err = await rejects<Error>(async () => certsOf(answer([notACert])), 'ERR_ENROLL_PROTOCOL');
  assert.match(err.message, /certificate 0 of the answer/);
});

test('an answer of another content type is ERR_ENROLL_PROTOCOL; an unknown refusal code is ERR_ENROLL_REFUSED', async () => {
  await rejects(
    async () => certsOf({ ...answer([root.cert.raw]), type: 'text/plain' }),
    'ERR_ENROLL_PROTOCOL',
  );
  await rejects(
    async () => certsOf({ status: 500, type: 'text/plain', body: Buffer.from('ERR_SOMETHING_ELSE: no') }),
    'ERR_ENROLL_REFUSED',
  );
});

test.run();
