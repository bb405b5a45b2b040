/**
 * `npm run bench ca-key`: device enrollment latency with the delegated CA key in the TPM
 * (TPM2_Sign) vs in software (node:crypto), issue 14 item 5.
 *
 * Four agents run in this process, each the production way (config → planFromConfig →
 * runAgent, TPM attestation against the real issuer in-process): on swtpm and on the TypeScript
 * simulator, each once with the CA key in the TPM (the default for a TPM attestor) and once with a
 * software CA key (`caKeys: softwareCaKeys`), everything else equal (same attestor, transport,
 * sealed store). A device enrolls over the agent's enrollment listener with a join token from the
 * admin socket: TLS handshake, token redemption, CSR check, device SVID signed, issuance recorded
 * in the store, answer. Timed: the device's `enroll()` call only (tokens and device keys are made
 * beforehand). Rounds of BENCH_CAKEY_BLOCK (10) enrollments alternate between the four agents
 * until each has BENCH_CAKEY_N (200); p50/p99 per agent and the TPM/software ratios printed. The
 * enrollment rate limit (10 per minute per address) is lifted for the bench. A second table
 * times the CA key's `sign()` alone (a 400-byte TBSCertificate), the part the backends differ in.
 */
import { generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openTransport } from '../attestors/tpm/transport/open.ts';
import { adminRequest } from '../runtime/admin/client.ts';
import { softwareCaKeys } from '../runtime/agent/ca-keys.ts';
import { newP256Key } from '../runtime/agent/keys.ts';
import { planFromConfig } from '../runtime/agent/plan.ts';
import { type RunningAgent, runAgent } from '../runtime/agent/run.ts';
import { loadAgentConfigText } from '../runtime/config/agent-load.ts';
import { systemClock } from '../runtime/core/clock.ts';
import { nullLogger } from '../runtime/core/logger.ts';
import { cryptoRandom } from '../runtime/core/random.ts';
import { launchSwtpm } from '../sim/swtpm/launcher.ts';
import { openSimTransport } from '../sim/tpm/index.ts';
import { startTpmIssuer } from '../test/runtime/agent/helpers/tpm-issuer.ts';
import { enroll } from '../transport/enroll/est-client.ts';

const N = Number(process.env.BENCH_CAKEY_N ?? 200);
const BLOCK = Number(process.env.BENCH_CAKEY_BLOCK ?? 10);
const PCRS = 'sha256:0,1,2,3,4,5,6,7';

interface Variant {
  readonly name: string;
  readonly tpm: 'swtpm' | 'sim';
  readonly caKey: 'tpm' | 'software';
  running?: RunningAgent;
  port?: number;
  readonly ms: number[];
}

function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1));
  return s[i] as number;
}

async function untilEnrollmentListener(r: RunningAgent): Promise<number> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const a = r.listeners().find((l) => l.name === 'enrollment')?.address;
    if (a !== undefined) return Number(a.slice(a.lastIndexOf(':') + 1));
    if (Date.now() > deadline)
      throw new Error(`no enrollment listener: ${JSON.stringify(r.agent.status().upstream)}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

export default async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-bench-cakey-'));
  const swtpms: Awaited<ReturnType<typeof launchSwtpm>>[] = [];
  const closers: (() => Promise<void>)[] = [];
  try {
    const variants: Variant[] = [
      { name: 'swtpm, CA key in TPM', tpm: 'swtpm', caKey: 'tpm', ms: [] },
      { name: 'swtpm, CA key software', tpm: 'swtpm', caKey: 'software', ms: [] },
      { name: 'sim, CA key in TPM', tpm: 'sim', caKey: 'tpm', ms: [] },
      { name: 'sim, CA key software', tpm: 'sim', caKey: 'software', ms: [] },
    ];
    // One issuer trusting both manufacturer CAs.
    const simState = (i: number) => join(dir, `sim-${i}`);
    const tpms = await Promise.all(
      variants.map(async (v, i) => {
        if (v.tpm === 'swtpm') {
          const s = await launchSwtpm();
          swtpms.push(s);
          return { spec: s.spec, root: s.root, intermediate: s.intermediate };
        }
        await (await openSimTransport(simState(i))).close();
        const pem = (f: string) => new X509Certificate(readFileSync(join(simState(i), f)));
        return {
          spec: `sim:${simState(i)}`,
          root: pem('manufacturer-root-ca.pem'),
          intermediate: pem('manufacturer-intermediate-ca.pem'),
        };
      }),
    );
    const { issuer, files } = await startTpmIssuer(dir, {
      roots: tpms.map((t) => t.root),
      intermediates: tpms.map((t) => t.intermediate),
      pcrSelection: PCRS,
    });
    closers.push(() => issuer.close());
    for (const [i, v] of variants.entries()) {
      const spec = (tpms[i] as { spec: string }).spec;
      const config = loadAgentConfigText(
        [
          'version: 2',
          'trustDomain: fleet.example',
          `dataDir: ${join(dir, `data-${i}`)}`,
          `tpm: ${spec}`,
          `attestation: { method: tpm, pcrs: "${PCRS}" }`,
          `upstream: { endpoints: ["${issuer.url}"], caFile: ${files.paths.caCertificate} }`,
          'broker: { listen: { port: 0 }, enrollment: { port: 0 } }',
          `admin: { socket: ${join(dir, `admin-${i}.sock`)} }`,
        ].join('\n'),
      );
      const plan = await planFromConfig(config, {
        clock: systemClock,
        random: cryptoRandom,
        logger: nullLogger,
        openTpm: () => (spec.startsWith('sim:') ? openSimTransport(spec.slice(4)) : openTransport(spec)),
      });
      const tuned = {
        ...plan,
        agent: { ...plan.agent, ...(v.caKey === 'software' ? { caKeys: softwareCaKeys(newP256Key) } : {}) },
        ...(plan.broker === undefined
          ? {}
          : { broker: { ...plan.broker, limits: { ...plan.broker.limits, enrollPerMinute: 1_000_000 } } }),
      };
      v.running = await runAgent(tuned, { logger: nullLogger });
      closers.push(() => (v.running as RunningAgent).stop());
      v.port = await untilEnrollmentListener(v.running);
      const backend = v.running.agent.svidSource.current()?.ca.key.backend;
      if (backend !== v.caKey) throw new Error(`${v.name}: the CA key is ${backend}`);
    }

    const once = async (v: Variant, deviceId: string, key: KeyObject): Promise<void> => {
      const r = v.running as RunningAgent;
      const { token } = await adminRequest<{ token: string }>(r.adminSocket, 'POST', '/v1/device-tokens', {
        id: deviceId,
        ttlMs: 600_000,
      });
      const t0 = performance.now();
      const id = await enroll({
        host: '127.0.0.1',
        port: v.port as number,
        deviceId,
        token,
        key,
        now: () => Date.now(),
      });
      v.ms.push(performance.now() - t0);
      // The answer must be a real SVID for the device under this gateway's CA.
      const [leaf, ca] = id.chain;
      if (leaf === undefined || ca === undefined || !leaf.verify(ca.publicKey)) throw new Error('bad chain');
    };
    // Warm-up: one enrollment each (loads the TPM key, JIT).
    const keys = Array.from(
      { length: BLOCK },
      () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
    );
    for (const [i, v] of variants.entries()) await once(v, `warm-${i}`, keys[0] as KeyObject);
    for (const v of variants) v.ms.length = 0;
    for (let done = 0; done < N; done += BLOCK)
      for (const [i, v] of variants.entries())
        for (let k = 0; k < BLOCK && done + k < N; k++)
          await once(v, `d${i}-${done + k}`, keys[k] as KeyObject);

    // The signature call alone, through the agents' CA keys (what enrollment adds per device).
    const signMs = new Map<Variant, number[]>(variants.map((v) => [v, []]));
    const tbs = Buffer.alloc(400, 0x5a);
    for (let done = 0; done < N; done += BLOCK)
      for (const v of variants) {
        const key = v.running?.agent.svidSource.current()?.ca.key;
        if (key === undefined) throw new Error('no CA key');
        for (let k = 0; k < BLOCK; k++) {
          const t0 = performance.now();
          await key.sign(tbs);
          signMs.get(v)?.push(performance.now() - t0);
        }
      }

    const f = (x: number) => x.toFixed(2).padStart(8);
    console.log(`device enrollment latency, ms (n = ${N} each, alternated in blocks of ${BLOCK})`);
    console.log(`${'agent'.padEnd(26)}      p50      p99     mean`);
    for (const v of variants) {
      const mean = v.ms.reduce((a, b) => a + b, 0) / v.ms.length;
      console.log(`${v.name.padEnd(26)} ${f(quantile(v.ms, 0.5))} ${f(quantile(v.ms, 0.99))} ${f(mean)}`);
    }
    console.log(`\nCA key sign() of a 400-byte TBSCertificate alone, ms (n = ${N} each)`);
    for (const v of variants) {
      const xs = signMs.get(v) ?? [];
      console.log(`${v.name.padEnd(26)} ${f(quantile(xs, 0.5))} ${f(quantile(xs, 0.99))}`);
    }
    for (const t of ['swtpm', 'sim'] as const) {
      const [a, b] = [
        variants.find((v) => v.tpm === t && v.caKey === 'tpm'),
        variants.find((v) => v.tpm === t && v.caKey === 'software'),
      ] as [Variant, Variant];
      console.log(
        `${t}: TPM / software  p50 ${(quantile(a.ms, 0.5) / quantile(b.ms, 0.5)).toFixed(2)}×  p99 ${(quantile(a.ms, 0.99) / quantile(b.ms, 0.99)).toFixed(2)}×  (+${(quantile(a.ms, 0.5) - quantile(b.ms, 0.5)).toFixed(2)} ms at p50)`,
      );
    }
  } finally {
    for (const c of closers.reverse()) await c().catch(() => {});
    for (const s of swtpms) await s.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}
