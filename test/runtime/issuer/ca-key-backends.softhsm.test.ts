/**
 * The issuer's signing seam with both backends, the same checks for each: a file key
 * (`softwareCaKey`) and a P-256 key generated inside a SoftHSM2 token (`generatePkcs11CaKey`).
 * Signatures are DER ECDSA that verify under the key's public key, also 64 at once (the
 * PKCS#11 backend's session pool); the template signer over the key gives exactly the
 * TBSCertificate of the synchronous file-key signer and certificates that verify under the CA;
 * a root made through the seam is self-signed; CaSet signs SVIDs and delegated CAs with either.
 */
import { generateKeyPairSync, type KeyObject, verify, X509Certificate } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CaSet } from '../../../runtime/issuer/ca.ts';
import { generatePkcs11CaKey } from '../../../runtime/issuer/pkcs11/key.ts';
import { openMemoryStore } from '../../../runtime/issuer/store.ts';
import { createRootCaWithKey } from '../../../runtime/svid/authority.ts';
import { type CaKey, softwareCaKey } from '../../../runtime/svid/ca-key.ts';
import { parseCertificate } from '../../../runtime/svid/certificate.ts';
import { createCaSigner, createSigner, spkiOf } from '../../../runtime/svid/signer.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../../sim/random.ts';
import { softHsmToken } from '../../helpers/softhsm.ts';

const H = 3_600_000;
const TD = 'fleet.example';
const random = seededRandom('ca-key-backends');
const clock = new VirtualClock(Date.UTC(2026, 0, 1));
const devSpki = spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);

interface Backend {
  readonly name: string;
  key(): Promise<CaKey>;
  /** The synchronous file-key signer, for the same-TBS check (file backend only). */
  readonly privateKey?: KeyObject;
}

const fileKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const backends: Backend[] = [
  { name: 'file key', key: async () => softwareCaKey(fileKey), privateKey: fileKey },
  {
    name: 'PKCS#11 (SoftHSM2)',
    key: () => {
      const t = softHsmToken();
      return generatePkcs11CaKey({ uri: t.uri('issuer-ca'), module: t.module, pinFile: t.pinFile });
    },
  },
];

const root = (key: CaKey) =>
  createRootCaWithKey({
    trustDomain: TD,
    key,
    notBefore: clock.now() - H,
    notAfter: clock.now() + 400 * 24 * H,
    random,
  });

for (const b of backends) {
  test(`${b.name}: DER ECDSA signatures that verify, 64 at once`, async () => {
    const key = await b.key();
    try {
      const data = Array.from({ length: 64 }, (_, i) => Buffer.from(`tbs ${i}`));
      const sigs = await Promise.all(data.map((d) => key.sign(d)));
      for (const [i, sig] of sigs.entries()) {
        assert.is(sig[0], 0x30, 'a DER SEQUENCE');
        assert.ok(verify('sha256', data[i] as Buffer, key.publicKey, sig), `signature ${i}`);
      }
      assert.not.ok(verify('sha256', Buffer.from('other'), key.publicKey, sigs[0] as Buffer));
    } finally {
      await key.close();
    }
  });

  test(`${b.name}: a root made through the seam is self-signed; SVIDs and delegated CAs verify under it`, async () => {
    const key = await b.key();
    try {
      const caDer = await root(key);
      const ca = new X509Certificate(caDer);
      assert.ok(ca.verify(ca.publicKey) && ca.ca);
      assert.equal(ca.publicKey.export({ format: 'der', type: 'spki' }), key.spki);
      const signer = createCaSigner({ certificate: caDer, key, trustDomain: TD, random });
      const req = {
        profile: 'svid' as const,
        spiffeId: `spiffe://${TD}/gateway/gw-1`,
        spki: devSpki,
        notBefore: clock.now(),
        notAfter: clock.now() + H,
        serial: Buffer.from('4011223344556677889900aabbccddee', 'hex'),
      };
      const svid = await signer.issue(req);
      assert.ok(new X509Certificate(svid.der).verify(ca.publicKey));
      const { serial: _, ...noSerial } = req;
      const dca = await signer.issue({ ...noSerial, profile: 'device-ca' });
      assert.ok(new X509Certificate(dca.der).verify(ca.publicKey) && new X509Certificate(dca.der).ca);
      if (b.privateKey !== undefined) {
        const sync = createSigner({ certificate: caDer, privateKey: b.privateKey, trustDomain: TD, random });
        assert.equal(parseCertificate(svid.der).tbs, parseCertificate(sync.issue(req).der).tbs);
      }
    } finally {
      await key.close();
    }
  });

  test(`${b.name}: CaSet signs with { certificate, key }`, async () => {
    const key = await b.key();
    const store = await openMemoryStore();
    try {
      const certificate = await root(key);
      const cas = await CaSet.open({
        trustDomain: TD,
        active: { certificate, key },
        store,
        clock,
        random,
        maxTtlMs: 30 * 24 * H,
      });
      const signed = await cas.signer.issue({
        profile: 'svid',
        spiffeId: `spiffe://${TD}/gateway/gw-2`,
        spki: devSpki,
        notBefore: clock.now(),
        notAfter: clock.now() + H,
      });
      assert.ok(new X509Certificate(signed.der).verify(new X509Certificate(certificate).publicKey));
      assert.is(cas.activeKeyPair().key, key);
      assert.is(cas.activeKeyPair().key.backend, b.privateKey === undefined ? 'pkcs11' : 'software');
      await cas.close();
    } finally {
      await store.close();
      await key.close();
    }
  });
}

test.run();
