/**
 * The `npm run bench issuer` row of issue 19: SVIDs signed per second with the CA key behind the
 * signing seam (`createCaSigner`), the file key (`softwareCaKey`, node:crypto) beside a P-256 key
 * in a SoftHSM2 token (PKCS#11: C_Sign on libuv's thread pool, four sessions), in one run,
 * alternating rounds, medians and the ratio (SoftHSM2's ECDSA is slower than node:crypto's:
 * about 0.6 is the floor to aim for), and the event loop's delay while signing
 * (perf_hooks monitorEventLoopDelay p99; each of the `INFLIGHT` signers yields to the loop after
 * every certificate, as requests do). Every certificate is checked against the CA. Without
 * SoftHSM2 or the pkcs11js binding the row says why and the file key's still prints.
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { cryptoRandom } from '../runtime/core/random.ts';
import { createRootCaWithKey } from '../runtime/svid/authority.ts';
import { type CaKey, softwareCaKey } from '../runtime/svid/ca-key.ts';
import { createCaSigner, spkiOf } from '../runtime/svid/signer.ts';
import { median } from './stats.ts';

const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 1500);
const ROUNDS = 3;
const INFLIGHT = 8;
const H = 3_600_000;

interface Measured {
  rate: number;
  p99Ms: number;
}

async function measure(key: CaKey, spkis: readonly Buffer[], check: Buffer[]): Promise<Measured> {
  const now = Date.now();
  const certificate = await createRootCaWithKey({
    trustDomain: 'fleet.example',
    key,
    notBefore: now - H,
    notAfter: now + 365 * 24 * H,
    random: cryptoRandom,
  });
  const signer = createCaSigner({ certificate, key, trustDomain: 'fleet.example', random: cryptoRandom });
  const ca = new X509Certificate(certificate);
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  const start = performance.now();
  const deadline = start + ROUND_MS;
  let n = 0;
  const out: Buffer[] = [];
  await Promise.all(
    Array.from({ length: INFLIGHT }, async () => {
      while (performance.now() < deadline) {
        const i = n++;
        const t = Date.now();
        const s = await signer.issue({
          profile: 'svid',
          spiffeId: `spiffe://fleet.example/gateway/gw-${i}`,
          spki: spkis[i % spkis.length] as Buffer,
          notBefore: t,
          notAfter: t + H,
        });
        if (i % 97 === 0) out.push(s.der);
        await new Promise((r) => setImmediate(r));
      }
    }),
  );
  const rate = (n * 1000) / (performance.now() - start);
  delay.disable();
  for (const der of out) if (!new X509Certificate(der).verify(ca.publicKey)) check.push(der);
  return { rate, p99Ms: delay.percentile(99) / 1e6 };
}

/** A SoftHSM2 token with a generated CA key, or why there is none. */
async function softHsmKey(): Promise<CaKey | string> {
  try {
    const { softHsmToken } = await import('../test/helpers/softhsm.ts');
    const { generatePkcs11CaKey } = await import('../runtime/issuer/pkcs11/key.ts');
    const t = softHsmToken();
    return await generatePkcs11CaKey({ uri: t.uri('bench-ca'), module: t.module, pinFile: t.pinFile });
  } catch (err) {
    return `skipped: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`;
  }
}

export async function pkcs11Row(): Promise<void> {
  const spkis = Array.from({ length: 32 }, () =>
    spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey),
  );
  const file = softwareCaKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
  const hsm = await softHsmKey();
  const bad: Buffer[] = [];
  const f: Measured[] = [];
  const p: Measured[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    f.push(await measure(file, spkis, bad));
    if (typeof hsm !== 'string') p.push(await measure(hsm, spkis, bad));
  }
  const row = (name: string, m: Measured[]) =>
    `  ${name.padEnd(32)} ${median(m.map((x) => x.rate))
      .toFixed(0)
      .padStart(8)}   ${median(m.map((x) => x.p99Ms))
      .toFixed(1)
      .padStart(6)} ms`;
  console.log(
    `CA key behind the signing seam     SVIDs/s   loop delay p99 (median of ${ROUNDS}, ${INFLIGHT} in flight)`,
  );
  console.log(row('file key (node:crypto)', f));
  if (typeof hsm === 'string') console.log(`  PKCS#11 (SoftHSM2)               ${hsm}`);
  else {
    console.log(row('PKCS#11 (SoftHSM2, pkcs11js)', p));
    const ratio = median(p.map((x) => x.rate)) / median(f.map((x) => x.rate));
    console.log(`  ratio PKCS#11 / file             ${ratio.toFixed(2).padStart(8)}   (floor ~0.6)`);
    await hsm.close();
  }
  if (bad.length > 0) throw new Error(`${bad.length} certificates signed through the seam did not verify`);
}
