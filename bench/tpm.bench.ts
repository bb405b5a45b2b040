/**
 * `npm run bench tpm`: one full TPM attestation round — EK read (NV certificate + persistent handle
 * lookup), AK create, the issuer's software MakeCredential, ActivateCredential, quote of
 * sha256:0-7 — median of 20 per row, rows alternated round by round. Goal: ≤ 300 ms on swtpm.
 *
 * Rows: swtpm over a Unix socket with the RSA L-1 EK (PolicySecret) and with the ECC H-3 EK
 * (password), and swtpm over TCP. Other backends (the TypeScript simulator) reuse
 * `benchAttestation` with their own row.
 */
import { TpmAttestor } from '../attestors/tpm/attestor.ts';
import { openTransport } from '../attestors/tpm/transport/open.ts';
import type { TpmTransport } from '../attestors/tpm/transport/transport.ts';
import type { EkTemplateName } from '../attestors/tpm/verify/ek-public.ts';
import { checkAkPublic, makeCredential } from '../attestors/tpm/verify/index.ts';
import { cryptoRandom } from '../runtime/core/random.ts';
import { launchSwtpm } from '../sim/swtpm/launcher.ts';
import { median } from './stats.ts';

export interface BenchRow {
  readonly name: string;
  readonly transport: TpmTransport;
  readonly ek?: EkTemplateName;
}

const GOAL_MS = 300;

/** One round; returns its duration in ms. */
export async function attestationRound(transport: TpmTransport, ek?: EkTemplateName): Promise<number> {
  const started = performance.now();
  const a = new TpmAttestor({
    transport,
    random: cryptoRandom,
    ownsTransport: false,
    ...(ek !== undefined ? { ekPreference: [ek] } : {}),
  });
  await a.start();
  const begin = await a.begin();
  if (begin.method !== 'tpm') throw new Error('not tpm');
  const credential = cryptoRandom.bytes(32);
  const mc = makeCredential(begin.ekPublic, checkAkPublic(begin.akPublic).name, credential, cryptoRandom);
  const proof = await a.answer(
    {
      sessionId: 'b',
      nonce: cryptoRandom.bytes(32),
      credentialBlob: mc.credentialBlob,
      encryptedSecret: mc.encryptedSecret,
      pcrSelection: 'sha256:0,1,2,3,4,5,6,7',
      expiresAt: 0,
    },
    Buffer.from('bench-spki'),
  );
  if (proof.method !== 'tpm' || !Buffer.from(proof.activatedSecret).equals(credential))
    throw new Error('activation returned the wrong secret');
  await a.close();
  return performance.now() - started;
}

/** Alternate the rows for `rounds` rounds (after one warm-up each) and print medians and ratios. */
export async function benchAttestation(rows: readonly BenchRow[], rounds = 20): Promise<Map<string, number>> {
  const times = new Map<string, number[]>(rows.map((r) => [r.name, []]));
  for (const r of rows) await attestationRound(r.transport, r.ek);
  for (let i = 0; i < rounds; i++)
    for (const r of rows) times.get(r.name)?.push(await attestationRound(r.transport, r.ek));
  const medians = new Map([...times].map(([k, v]) => [k, median(v)]));
  const first = medians.get(rows[0]?.name ?? '') ?? 1;
  console.log(`full attestation round, median of ${rounds} (goal ≤ ${GOAL_MS} ms)`);
  console.log(
    `${'row'.padEnd(34)} ${'median ms'.padStart(10)} ${'vs row 1'.padStart(9)} ${'vs goal'.padStart(8)}`,
  );
  for (const [name, ms] of medians)
    console.log(
      `${name.padEnd(34)} ${ms.toFixed(1).padStart(10)} ${(ms / first).toFixed(2).padStart(8)}× ${(ms / GOAL_MS).toFixed(2).padStart(7)}×`,
    );
  return medians;
}

export default async function run(): Promise<void> {
  const unix = await launchSwtpm();
  const tcp = await launchSwtpm({ tcp: true });
  const tu = await openTransport(unix.spec);
  const tt = await openTransport(tcp.spec);
  try {
    await benchAttestation([
      { name: 'swtpm unix socket, RSA L-1 EK', transport: tu, ek: 'L-1' },
      { name: 'swtpm unix socket, ECC H-3 EK', transport: tu, ek: 'H-3' },
      { name: 'swtpm TCP, RSA L-1 EK', transport: tt, ek: 'L-1' },
    ]);
  } finally {
    await unix.stop(tu);
    await tcp.stop(tt);
    await tu.close();
    await tt.close();
  }
}
