/**
 * Issuer fast path: X.509-SVIDs per second on one core, the pre-encoded template signer
 * (`runtime/svid/signer.ts`) against building each certificate with @peculiar/x509, side by
 * side, alternating, three rounds each; medians and the ratio. Every certificate produced is
 * parsed afterwards by `node:crypto` and its signature checked, so a fast wrong output fails.
 * Goal (issue 5): >= 5,000 SVIDs/s for the template path. Then the CA key row of issue 19
 * (`issuer-pkcs11.ts`): the file key beside a key in SoftHSM2, and the event-loop delay.
 */
import 'reflect-metadata';
import { generateKeyPairSync, webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { cryptoRandom } from '../runtime/core/random.ts';
import { createRootCa } from '../runtime/svid/authority.ts';
import { createSigner, spkiOf } from '../runtime/svid/signer.ts';
import { pkcs11Row } from './issuer-pkcs11.ts';
import { median } from './stats.ts';

const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 1500);
const ROUNDS = 3;
const H = 3_600_000;

export default async function run(): Promise<void> {
  const now = Date.now();
  const caKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const rootDer = createRootCa({
    trustDomain: 'fleet.example',
    privateKey: caKey,
    notBefore: now - H,
    notAfter: now + 365 * 24 * H,
    random: cryptoRandom,
  });
  const root = new X509Certificate(rootDer);
  const signer = createSigner({
    certificate: rootDer,
    privateKey: caKey,
    trustDomain: 'fleet.example',
    random: cryptoRandom,
  });
  const subjects = Array.from(
    { length: 32 },
    () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
  );
  const spkis = subjects.map((k) => spkiOf(k));

  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const signingKey = await webcrypto.subtle.importKey(
    'pkcs8',
    caKey.export({ format: 'der', type: 'pkcs8' }),
    alg,
    false,
    ['sign'],
  );
  const subjectCrypto = await Promise.all(
    spkis.map((s) => webcrypto.subtle.importKey('spki', s, alg, true, ['verify'])),
  );
  const rootX = new x509.X509Certificate(rootDer);
  const aki = await x509.AuthorityKeyIdentifierExtension.create(rootX, false);

  const template = (deadline: number, out: Buffer[]): number => {
    let n = 0;
    while (performance.now() < deadline) {
      const t = Date.now();
      out.push(
        signer.sign({
          profile: 'svid',
          spiffeId: `spiffe://fleet.example/gateway/gw-${n}`,
          spki: spkis[n % spkis.length] as Buffer,
          notBefore: t,
          notAfter: t + H,
        }),
      );
      n++;
    }
    return n;
  };
  const peculiar = async (deadline: number, out: ArrayBuffer[]): Promise<number> => {
    let n = 0;
    while (performance.now() < deadline) {
      const t = Date.now();
      const publicKey = subjectCrypto[n % subjectCrypto.length] as webcrypto.CryptoKey;
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)))
          .toString('hex')
          .replace(/^[89a-f]/, '4'),
        subject: `CN=gw-${n}`,
        issuer: rootX.subject,
        notBefore: new Date(t),
        notAfter: new Date(t + H),
        signingAlgorithm: alg,
        publicKey,
        signingKey,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([
            x509.ExtendedKeyUsage.serverAuth,
            x509.ExtendedKeyUsage.clientAuth,
          ]),
          await x509.SubjectKeyIdentifierExtension.create(publicKey),
          aki,
          new x509.SubjectAlternativeNameExtension([
            { type: 'url', value: `spiffe://fleet.example/gateway/gw-${n}` },
          ]),
        ],
      });
      out.push(cert.rawData);
      n++;
    }
    return n;
  };

  const rates = { template: [] as number[], peculiar: [] as number[] };
  const outT: Buffer[] = [];
  const outP: ArrayBuffer[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let start = performance.now();
    let n = template(start + ROUND_MS, outT);
    rates.template.push((n * 1000) / (performance.now() - start));
    start = performance.now();
    n = await peculiar(start + ROUND_MS, outP);
    rates.peculiar.push((n * 1000) / (performance.now() - start));
  }

  // Every output must be a valid certificate signed by the root.
  let bad = 0;
  for (const der of [...outT, ...outP.map((b) => Buffer.from(b))]) {
    const c = new X509Certificate(der);
    if (!c.verify(root.publicKey) || c.ca || !c.subjectAltName?.startsWith('URI:spiffe://')) bad++;
  }
  const t = median(rates.template);
  const p = median(rates.peculiar);
  console.log('issuance, one core                 SVIDs/s (median of 3)');
  console.log(`  template + node:crypto           ${t.toFixed(0).padStart(8)}`);
  console.log(`  @peculiar/x509                   ${p.toFixed(0).padStart(8)}`);
  console.log(`  ratio template / peculiar        ${(t / p).toFixed(1).padStart(8)}x`);
  console.log(`  goal >= 5,000/s                  ${t >= 5000 ? 'met' : 'NOT met'}`);
  console.log(`  outputs checked: ${outT.length + outP.length}, invalid: ${bad}`);
  if (bad > 0) throw new Error(`${bad} issued certificates failed to parse or verify`);
  await pkcs11Row();
}
