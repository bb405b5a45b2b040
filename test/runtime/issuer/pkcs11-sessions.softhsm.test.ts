/**
 * PKCS#11 sessions do not pile up over CA rotations (SoftHSM2, sessions counted by the module's
 * own session info): an issuer whose CA key is in the token rotates six times in the token, and
 * after each it holds the sessions of the signing key only, the retired keys' closed while their
 * CAs stay in the bundle and their key objects stay in the token (not destroyed); none after
 * close. A key closed while signatures are under way lets them finish and refuses new ones.
 */
import { generateKeyPairSync, verify, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ISSUER_ROLE, loadConfigFile } from '../../../runtime/config/load.ts';
import { systemClock } from '../../../runtime/core/clock.ts';
import { nullLogger } from '../../../runtime/core/logger.ts';
import { cryptoRandom } from '../../../runtime/core/random.ts';
import { createDevIssuerFiles } from '../../../runtime/issuer/dev.ts';
import { issuerOptionsFromConfig } from '../../../runtime/issuer/from-config.ts';
import { createPkcs11Ca } from '../../../runtime/issuer/pkcs11/ca-create.ts';
import { generatePkcs11CaKey } from '../../../runtime/issuer/pkcs11/key.ts';
import { CK, Pkcs11Module } from '../../../runtime/issuer/pkcs11/module.ts';
import { login } from '../../../runtime/issuer/pkcs11/token.ts';
import { startIssuer } from '../../../runtime/issuer/start.ts';
import { openMemoryStore } from '../../../runtime/issuer/store.ts';
import { rejects } from '../../helpers/rejects.ts';
import {
  openSessions,
  SOFTHSM2_MODULE,
  type SoftHsmToken,
  softHsmToken,
  USER_PIN,
} from '../../helpers/softhsm.ts';

const dir = mkdtempSync(join(tmpdir(), 'edgeward-pkcs11-sessions-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** The private key objects in the token (logged in: they are private objects). */
async function privateKeys(t: SoftHsmToken): Promise<number> {
  const m = await Pkcs11Module.open(t.module);
  const api = m.api;
  const slot = api.C_GetSlotList(true).find((s) => api.C_GetTokenInfo(s).label.trimEnd() === t.label);
  const s = api.C_OpenSession(slot as Buffer, CK.CKF_SERIAL_SESSION);
  try {
    login(m, s, USER_PIN); // already logged in through the issuer's sessions: fine
    api.C_FindObjectsInit(s, [{ type: CK.CKA_CLASS, value: CK.CKO_PRIVATE_KEY }]);
    const n = api.C_FindObjects(s, 100).length;
    api.C_FindObjectsFinal(s);
    return n;
  } finally {
    api.C_CloseSession(s);
    await m.release();
  }
}

test('six CA rotations in the token: the issuer keeps the signing key’s 4 sessions only, retired key objects stay', async () => {
  const t = softHsmToken();
  const dev = await createDevIssuerFiles(join(dir, 'dev'), {
    trustDomain: 'fleet.example',
    clock: systemClock,
    random: cryptoRandom,
  });
  const out = join(dir, 'ca.pem');
  await createPkcs11Ca({
    uri: t.uri('issuer-ca'),
    module: t.module,
    pinFile: t.pinFile,
    trustDomain: 'fleet.example',
    out,
    ttlMs: 30 * 86_400_000,
    clock: systemClock,
    random: cryptoRandom,
  });
  const f = join(dir, 'issuer.yaml');
  writeFileSync(
    f,
    `version: 3
trustDomain: fleet.example
listen: { host: 127.0.0.1, port: 0, certificate: ${dev.paths.tlsCertificate}, key: ${dev.paths.tlsKey} }
ca:
  certificate: ${out}
  key: ${t.uri('issuer-ca')}
  pkcs11: { module: ${SOFTHSM2_MODULE}, pinFile: ${t.pinFile} }
store: { leveldb: { dir: ${join(dir, 'store')} } }
attestation:
  joinToken: { enabled: true }
health: { host: 127.0.0.1, port: 0 }
log: { level: error }
`,
  );
  const cfg = await loadConfigFile(f, ISSUER_ROLE, {}, { now: Date.now() });
  const running = await startIssuer(
    await issuerOptionsFromConfig(cfg, {
      store: await openMemoryStore(),
      clock: systemClock,
      random: cryptoRandom,
      logger: nullLogger,
    }),
  );
  const spki = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
    format: 'der',
    type: 'spki',
  });
  const counts: number[] = [];
  try {
    assert.is(await openSessions(t.label), 4, 'the configured key: a pool of 4 sessions');
    for (let i = 1; i <= 6; i++) {
      await running.issuer.rotateCa('op-test', { immediate: true });
      const active = running.issuer.roots()[0] as X509Certificate;
      const op = await running.issuer.createOperatorCertificate(`op${i}`, spki, 3_600_000);
      assert.ok(new X509Certificate(op.certificate).verify(active.publicKey), `signed by CA #${i + 1}`);
      // The retired CAs stay in the bundle (what they signed is still valid).
      assert.is(running.issuer.roots().length, i + 1);
      // The retired key's close lets what it signs finish first: counted once it has.
      counts.push(await openSessions(t.label));
    }
    assert.equal(counts, [4, 4, 4, 4, 4, 4], 'the signing key’s sessions only, after each rotation');
    assert.equal(await running.issuer.readiness(), []);
    assert.is(await privateKeys(t), 7, 'every key object still in the token (none destroyed)');
  } finally {
    await running.close();
  }
  assert.is(await openSessions(t.label), 0, 'none after close');
});

test('a key closed while signing: the signatures under way finish, a new one is ERR_ISSUER_PKCS11_TOKEN, sessions closed', async () => {
  const t = softHsmToken();
  const key = await generatePkcs11CaKey({ uri: t.uri('k'), module: t.module, pinFile: t.pinFile });
  const data = Buffer.from('tbs');
  const under = [...Array(16)].map(() => key.sign(data));
  const closed = key.close();
  await rejects(() => key.sign(data), 'ERR_ISSUER_PKCS11_TOKEN');
  for (const [i, sig] of (await Promise.all(under)).entries())
    assert.ok(verify('sha256', data, key.publicKey, sig), `signature ${i}`);
  await closed;
  assert.is(await openSessions(t.label), 0);
});

test.run();
