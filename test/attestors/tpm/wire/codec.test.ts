import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { handleName, objectName } from '../../../../attestors/tpm/crypto/name.ts';
import {
  emptyPolicy,
  pcrValuesDigest,
  policyPcrUpdate,
  policySecretUpdate,
} from '../../../../attestors/tpm/crypto/policy.ts';
import { Reader, Writer } from '../../../../attestors/tpm/wire/buffer.ts';
import { TPM_ALG, TPM_RH } from '../../../../attestors/tpm/wire/constants.ts';
import {
  parsePcrSelection,
  readPcrSelection,
  writePcrSelection,
} from '../../../../attestors/tpm/wire/pcr-selection.ts';
import { marshalPublic, parsePublic } from '../../../../attestors/tpm/wire/public.ts';
import { decodeRc, RC } from '../../../../attestors/tpm/wire/rc.ts';
import {
  akEccP256Template,
  EK_POLICY_A_SHA256,
  ekEccP256Template,
  ekEccP384Template,
  ekRsa2048Template,
  sealedTemplate,
  srkEccP256Template,
} from '../../../../attestors/tpm/wire/templates.ts';
import { rejects } from '../../../helpers/rejects.ts';

test('EK templates marshal to the sizes the EK profile gives, and round-trip byte-exactly', () => {
  assert.is(marshalPublic(ekRsa2048Template()).length, 314);
  assert.is(marshalPublic(ekEccP256Template()).length, 122);
  assert.is(marshalPublic(ekEccP384Template()).length, 74);
  for (const t of [
    ekRsa2048Template(),
    ekEccP256Template(),
    ekEccP384Template(),
    srkEccP256Template(),
    akEccP256Template(),
    sealedTemplate(Buffer.alloc(32)),
  ]) {
    const bytes = marshalPublic(t);
    assert.equal(marshalPublic(parsePublic(bytes)), bytes);
  }
  assert.is(
    marshalPublic(akEccP256Template()).toString('hex'),
    '0023000b000504720000001000180 00b00030010 00000000'.replace(/ /g, ''),
  );
});

test('policy A is PolicySecret(TPM_RH_ENDORSEMENT) and the PolicyPCR vector matches the brief', () => {
  const a = policySecretUpdate(TPM_ALG.SHA256, emptyPolicy(TPM_ALG.SHA256), handleName(TPM_RH.ENDORSEMENT));
  assert.equal(a, EK_POLICY_A_SHA256);
  const sel = parsePcrSelection('sha256:0,7');
  const pcrDigest = pcrValuesDigest(TPM_ALG.SHA256, [Buffer.alloc(32), Buffer.alloc(32)]);
  assert.is(
    policyPcrUpdate(TPM_ALG.SHA256, emptyPolicy(TPM_ALG.SHA256), sel, pcrDigest).toString('hex'),
    '02e3642b3e29eeccfffd8031c00a6f0a0febe5ceea2f6ef6b0322fe81598cf31',
  );
});

test('PCR selections marshal with sizeofSelect 3 and parse back', () => {
  const w = new Writer();
  writePcrSelection(w, parsePcrSelection('sha256:0,7'));
  assert.is(w.finish().toString('hex'), '00000001000b03810000');
  assert.equal(readPcrSelection(new Reader(Buffer.from('00000001000b03ff0001', 'hex'))), [
    { hash: TPM_ALG.SHA256, pcrs: [0, 1, 2, 3, 4, 5, 6, 7, 16] },
  ]);
});

test('response codes decode format one before warnings, with index and retryability', () => {
  const badAuth = decodeRc(0x9a2);
  assert.is(badAuth.code, RC.BAD_AUTH);
  assert.is(badAuth.session, 1);
  assert.is(badAuth.retryable, false);
  const retry = decodeRc(0x922);
  assert.is(retry.code, RC.RETRY);
  assert.ok(retry.warning && retry.retryable);
  const handle = decodeRc(0x1cb);
  assert.is(handle.code, RC.HANDLE);
  assert.is(handle.parameter, 1);
  const policyFail = decodeRc(0xa9d);
  assert.is(policyFail.code, RC.POLICY_FAIL);
  assert.is(policyFail.session, 2);
  const rm = decodeRc(0x000b0143);
  assert.is(rm.layer, 0x0b);
  assert.is(rm.code, RC.COMMAND_CODE);
  assert.is(decodeRc(0x01e).name, 'TPM_RC_BAD_TAG');
});

test('truncated and trailing bytes are typed errors', async () => {
  const bytes = marshalPublic(akEccP256Template());
  await rejects(() => parsePublic(bytes.subarray(0, bytes.length - 1)), 'ERR_TPM_MALFORMED');
  await rejects(() => parsePublic(Buffer.concat([bytes, Buffer.from([0])])), 'ERR_TPM_MALFORMED');
  await rejects(() => parsePublic(Buffer.from('0099000b00000000', 'hex')), 'ERR_TPM_MALFORMED');
  await rejects(() => parsePublic(Buffer.from('0099000b000000000000', 'hex')), 'ERR_ATTEST_PUBLIC_INVALID');
});

test('object names are nameAlg ‖ H(TPMT_PUBLIC)', () => {
  const name = objectName(akEccP256Template());
  assert.is(name.length, 34);
  assert.is(name.readUInt16BE(0), TPM_ALG.SHA256);
  assert.equal(objectName(marshalPublic(akEccP256Template())), name);
});

test.run();
