/**
 * `edgeward agent --dev` (what `npm start` runs): everything on one machine, state in
 * `./.edgeward/` — the TypeScript TPM simulator (`.edgeward/tpm`), an in-process issuer
 * (`.edgeward/issuer`, its TLS and CA files reused across restarts) that trusts the simulator's
 * manufacturer CA explicitly and accepts any PCR values (dev only), and the agent attesting to it
 * with real TPM 2.0 commands. Part of the composition root (`runtime/cli/`): it wires the issuer
 * and the agent together, so the agent never imports the issuer (ARCHITECTURE.md §6).
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AgentPlan } from '../agent/run.ts';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/logger.ts';
import type { Random } from '../core/random.ts';
import { attestorProtector } from '../store/protector.ts';
import { softwareCaKey } from '../svid/ca-key.ts';
import { httpsUpstream } from '../upstream/client.ts';

export const DEV_TRUST_DOMAIN = 'edgeward.dev';
const DEV_PCRS = 'sha256:0,1,2,3,4,5,6,7';

export async function devPlan(o: {
  dataDir: string;
  clock: Clock;
  random: Random;
  logger: Logger;
  mqttPort: number;
  enrollPort: number;
  metricsPort?: number;
}): Promise<AgentPlan> {
  const { clock, random, logger, dataDir } = o;
  const [
    { openSimTransport },
    { TpmAttestor },
    { createDevIssuerFiles },
    { startIssuer },
    { openLevelStore },
  ] = await Promise.all([
    import('../../sim/tpm/index.ts'),
    import('../../attestors/tpm/attestor.ts'),
    import('../issuer/dev.ts'),
    import('../issuer/start.ts'),
    import('../issuer/store.ts'),
  ]);
  const tpmDir = join(dataDir, 'tpm');
  const transport = await openSimTransport(tpmDir, { clock, random, logger });
  const pem = async (f: string) => new X509Certificate(await readFile(join(tpmDir, f)));
  const manufacturerRoots = [await pem('manufacturer-root-ca.pem')];
  const intermediates = [await pem('manufacturer-intermediate-ca.pem')];
  const files = await createDevIssuerFiles(join(dataDir, 'issuer'), {
    trustDomain: DEV_TRUST_DOMAIN,
    clock,
    random,
  });
  const issuer = await startIssuer({
    trustDomain: DEV_TRUST_DOMAIN,
    store: await openLevelStore(join(dataDir, 'issuer', 'store')),
    ca: files.ca,
    jwtSvid: { key: softwareCaKey(files.jwtKey) },
    tls: files.tls,
    clock,
    random,
    logger,
    methods: {
      tpm: { manufacturerRoots, intermediates, pcrSelection: DEV_PCRS, autoRegister: true, pcrPolicy: 'any' },
    },
  });
  logger.warn('dev mode: in-process issuer trusting the TPM simulator manufacturer CA; not for production', {
    event: 'dev.start',
    issuer: issuer.url,
  });
  const caPem = new X509Certificate(files.ca.certificate).toString();
  return {
    trustDomain: DEV_TRUST_DOMAIN,
    dataDir,
    attestor: new TpmAttestor({ transport, random, logger, pcrSelection: DEV_PCRS }),
    protector: async (a) => attestorProtector(a),
    upstream: httpsUpstream({ endpoints: [issuer.url], ca: [caPem], clock }),
    broker: {
      listen: { host: '127.0.0.1', port: o.mqttPort },
      enrollment: { host: '127.0.0.1', port: o.enrollPort },
    },
    admin: o.metricsPort === undefined ? {} : { metricsPort: o.metricsPort },
    // The Workload API on `.edgeward/workload.sock`, one entry `dev` for the uid running `npm start`.
    workload: { socket: join(dataDir, 'workload.sock'), devUid: process.getuid?.() ?? 0 },
    onStop: () => issuer.close(),
  };
}
