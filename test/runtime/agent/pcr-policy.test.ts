/**
 * `sealing.pcrPolicy` end to end at the agent level, on swtpm and on the TypeScript simulator:
 * config text → planFromConfig → TPM protector → runAgent. The TPM is "booted" by the injected
 * opener (swtpm: TPM reboot; simulator: power-on), which then measures a firmware digest into
 * PCR 7, as boot firmware does. With the same firmware the store opens after a restart and the
 * cached SVID is served at once; after a firmware change (PCR 7 extended differently) the data
 * key no longer unseals: the agent reports ERR_STORE_KEY (cause ERR_ATTESTOR_PCR_POLICY), wipes
 * the store, never serves the old identity, re-attests and seals a new store to the new PCRs.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execute } from '../../../attestors/tpm/client/execute.ts';
import { PCR_Extend } from '../../../attestors/tpm/commands/pcr.ts';
import { openTransport } from '../../../attestors/tpm/transport/open.ts';
import type { TpmTransport } from '../../../attestors/tpm/transport/transport.ts';
import { TPM_ALG } from '../../../attestors/tpm/wire/constants.ts';
import { planFromConfig } from '../../../runtime/agent/plan.ts';
import { type RunningAgent, runAgent } from '../../../runtime/agent/run.ts';
import { loadAgentConfigText } from '../../../runtime/config/agent-load.ts';
import { systemClock } from '../../../runtime/core/clock.ts';
import { MemoryLogger } from '../../../runtime/core/logger.ts';
import { cryptoRandom } from '../../../runtime/core/random.ts';
import { launchSwtpm } from '../../../sim/swtpm/launcher.ts';
import { openSimTransport } from '../../../sim/tpm/index.ts';
import { startTpmIssuer } from './helpers/tpm-issuer.ts';
import { untilServing } from './helpers/until-serving.ts';

const QUOTED = 'sha256:0,1,2,3,4,5,6,7';
const measure = (firmware: string) => createHash('sha256').update(`firmware ${firmware}`).digest();

async function extendPcr7(t: TpmTransport, firmware: string): Promise<void> {
  await execute(t, PCR_Extend, {
    pcrHandle: 7,
    digests: [{ hash: TPM_ALG.SHA256, digest: measure(firmware) }],
  });
}

interface Backend {
  spec: string;
  roots: X509Certificate[];
  intermediates: X509Certificate[];
  /** Boot the TPM and measure `firmware` into PCR 7; the agent gets the transport. */
  boot(firmware: string): Promise<TpmTransport>;
  stop(): Promise<void>;
}

async function swtpmBackend(): Promise<Backend> {
  const tpm = await launchSwtpm();
  return {
    spec: tpm.spec,
    roots: [tpm.root],
    intermediates: [tpm.intermediate],
    async boot(firmware) {
      const t = await openTransport(tpm.spec);
      await tpm.reboot(t);
      await extendPcr7(t, firmware);
      return t;
    },
    stop: () => tpm.stop(),
  };
}

async function simBackend(dir: string): Promise<Backend> {
  const state = join(dir, 'tpm');
  await (await openSimTransport(state)).close(); // provisions EKs and the manufacturer CA
  const pem = (f: string) => new X509Certificate(readFileSync(join(state, f)));
  return {
    spec: `sim:${state}`,
    roots: [pem('manufacturer-root-ca.pem')],
    intermediates: [pem('manufacturer-intermediate-ca.pem')],
    async boot(firmware) {
      const t = await openSimTransport(state); // a power-on: PCRs start at zero
      await extendPcr7(t, firmware);
      return t;
    },
    stop: async () => {},
  };
}

const serialOf = (r: RunningAgent): string | undefined =>
  r.agent.svidSource.current()?.svid.chain[0]?.serialNumber;

for (const kind of ['swtpm', 'sim'] as const) {
  test(`${kind}: a PCR-sealed store survives a restart and is replaced after a firmware change`, async () => {
    const dir = mkdtempSync(join(tmpdir(), `edgeward-pcr-${kind}-`));
    const backend = kind === 'swtpm' ? await swtpmBackend() : await simBackend(dir);
    const { issuer, files } = await startTpmIssuer(dir, {
      roots: backend.roots,
      intermediates: backend.intermediates,
      pcrSelection: QUOTED,
    });
    const config = loadAgentConfigText(
      [
        'version: 2',
        'trustDomain: fleet.example',
        `dataDir: ${join(dir, 'data')}`,
        `tpm: ${backend.spec}`,
        `attestation: { method: tpm, pcrs: "${QUOTED}" }`,
        'sealing: { pcrPolicy: "sha256:7" }',
        `upstream: { endpoints: ["${issuer.url}"], caFile: ${files.paths.caCertificate} }`,
        'rotation: { backoffInitial: 50ms, backoffCap: 200ms }',
        'broker: { listen: { port: 0 }, enrollment: { port: 0 } }',
      ].join('\n'),
    );
    let firmware = 'A';
    const start = async (logger: MemoryLogger) =>
      runAgent(
        await planFromConfig(config, {
          clock: systemClock,
          random: cryptoRandom,
          logger,
          openTpm: () => backend.boot(firmware),
        }),
        { logger },
      );
    const events = (l: MemoryLogger, e: string) => l.lines.filter((x) => x.fields.event === e);
    let running: RunningAgent | undefined;
    try {
      // First boot: attest, seal the data key to PCR 7 = measure(A).
      const first = new MemoryLogger();
      running = await start(first);
      await untilServing(running);
      const serialA = serialOf(running);
      assert.ok(serialA);
      await running.stop();

      // Same firmware: the key unseals, the cached identity is served at once.
      const same = new MemoryLogger();
      running = await start(same);
      assert.ok(running.agent.status().serving, 'served from the cache as soon as the agent started');
      assert.is(serialOf(running), serialA);
      assert.is(events(same, 'store.reset').length, 0);
      assert.is(events(same, 'identity.cached').length, 1);
      await running.stop();

      // New firmware: PCR 7 differs, the key does not unseal; the old store is never served.
      firmware = 'B';
      const changed = new MemoryLogger();
      running = await start(changed);
      const reset = events(changed, 'store.reset');
      assert.is(reset.length, 1);
      assert.is(reset[0]?.level, 'error');
      assert.is(reset[0]?.fields.reason, 'ERR_STORE_KEY');
      assert.is(reset[0]?.fields.cause, 'ERR_ATTESTOR_PCR_POLICY');
      assert.is(events(changed, 'identity.cached').length, 0);
      await untilServing(running);
      const serialB = serialOf(running);
      assert.ok(serialB !== undefined && serialB !== serialA, 'a new identity, not the old one');
      assert.is(events(changed, 'identity.rotated')[0]?.fields.via, 'attest');
      await running.stop();

      // The new store is sealed to the new PCRs: the next boot of firmware B serves it.
      const again = new MemoryLogger();
      running = await start(again);
      assert.ok(running.agent.status().serving);
      assert.is(serialOf(running), serialB);
      assert.is(events(again, 'store.reset').length, 0);
      await running.stop();
    } finally {
      await running?.stop(); // a failed assertion must not leave the agent's sockets open
      await issuer.close();
      await backend.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test.run();
