/**
 * The composition root (`runAgent`) on a virtual clock with a real LevelDB store and real sockets:
 * the broker presents the gateway's local server identity, and a gateway restarted after its
 * upstream SVID expired (the issuer away) serves its broker again at once, with `edgeward status`
 * saying local service is up and when it stops.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { adminRequest } from '../../../runtime/admin/client.ts';
import type { StatusReport } from '../../../runtime/admin/report.ts';
import { type AgentPlan, type RunningAgent, runAgent } from '../../../runtime/agent/run.ts';
import { MemoryLogger } from '../../../runtime/core/logger.ts';
import { verifyX509Svid } from '../../../runtime/spiffe/verify.ts';
import { keyFileProtector } from '../../../runtime/store/key-file.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../../sim/random.ts';
import { FakeIssuer } from './helpers/fake-issuer.ts';
import { MIN } from './helpers/harness.ts';
import { TestTokenAttestor } from './helpers/test-attestor.ts';

/** Resolves once runAgent prints its banner, i.e. after the broker listens and its listeners are known. */
function bannerWatch(): { out: (line: string) => void; printed: Promise<void> } {
  let resolve!: () => void;
  const printed = new Promise<void>((r) => {
    resolve = r;
  });
  return { out: (line) => (line.startsWith('edgeward agent:') ? resolve() : undefined), printed };
}

let clock = new VirtualClock(Math.floor(Date.now() / 1000) * 1000);
const random = seededRandom('run-local-service');
const issuer = new FakeIssuer({ now: () => clock.now() }, random);
issuer.svidTtlMs = 10 * MIN;
const dataDir = mkdtempSync(join(tmpdir(), 'edgeward-run-local-'));

const plan = (logger: MemoryLogger): AgentPlan => ({
  trustDomain: issuer.trustDomain,
  dataDir,
  attestor: new TestTokenAttestor(),
  protector: async () => keyFileProtector(join(dataDir, 'kek'), random, logger),
  upstream: issuer.upstream(['https://issuer-a.test']),
  agent: { breaker: { failures: 1000, openMs: MIN } },
  broker: { listen: { host: '127.0.0.1', port: 0 }, enrollment: { host: '127.0.0.1', port: 0 } },
  admin: { socket: join(dataDir, 'admin.sock') },
});

/** The chain the MQTT listener presents, leaf first. */
async function presented(running: RunningAgent): Promise<X509Certificate[]> {
  const address = running.listeners().find((l) => l.name === 'mqtt')?.address as string;
  const port = Number(address.split(':').pop());
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const peer = s.getPeerCertificate(true);
      const chain = [new X509Certificate(peer.raw)];
      if (peer.issuerCertificate && peer.issuerCertificate.raw !== peer.raw)
        chain.push(new X509Certificate(peer.issuerCertificate.raw));
      s.destroy();
      resolve(chain);
    });
    s.once('error', reject);
  });
}

test('runAgent: the broker presents the local server identity; after a restart past the upstream SVID it serves at once', async () => {
  const first = new MemoryLogger();
  const banner1 = bannerWatch();
  let running = await runAgent(plan(first), { logger: first, clock, random, out: banner1.out });
  await clock.advance(0); // the first attestation
  await banner1.printed;
  const gatewayId = running.agent.status().spiffeId as string;
  const bundle = running.agent.bundleSource.getBundleFor(issuer.trustDomain);
  let chain = await presented(running);
  const asServer = () => verifyX509Svid(chain, { now: clock.now(), bundle, purpose: 'server' });
  assert.is(asServer().spiffeId, gatewayId);
  assert.is(asServer().signerId, gatewayId, 'signed by the delegated CA');
  const svidEnd = running.agent.svidSource.getX509Svid().notAfter;

  // The issuer goes away; the upstream SVID expires; the gateway loses power.
  issuer.faults.set('*', 'down');
  await clock.advance(svidEnd - clock.now() + 5 * MIN);
  await running.stop();

  clock = new VirtualClock(clock.now());
  const second = new MemoryLogger();
  const banner2 = bannerWatch();
  running = await runAgent(plan(second), { logger: second, clock, random, out: banner2.out });
  await banner2.printed; // no clock advance, no upstream answer
  assert.is(running.agent.status().serving, false, 'the upstream SVID is expired');
  chain = await presented(running);
  assert.is(asServer().spiffeId, gatewayId);
  const status = await adminRequest<StatusReport>(running.adminSocket, 'GET', '/v1/status');
  assert.is(status.local?.up, true);
  assert.is(status.local?.stopsAt, status.deviceCa?.notAfter);
  assert.ok((status.local?.budgetRemainingSeconds ?? 0) > 0);
  await running.stop();
});

test.run();
