/**
 * Issue 17 item 5: two real issuer replicas (in-process HTTPS servers on one store and one CA).
 * Replica A dies in the middle of the agent's renewal (its connections cut while it handles
 * renew/begin, then its port refuses): the renewal is retried on replica B within the same
 * attempt, and the breaker — set to open at the FIRST counted failure — stays closed. (A replica
 * answering 503 ERR_ISSUER_DRAINING maps to ERR_UPSTREAM_UNAVAILABLE, which fails over the same
 * way: refusal-codes.test.ts and rotation.test.ts's 503 fault.)
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { JoinTokenAttestor } from '../../../attestors/join-token/attestor.ts';
import { nullLogger } from '../../../runtime/core/logger.ts';
import { cryptoRandom } from '../../../runtime/core/random.ts';
import { createDevIssuerFiles } from '../../../runtime/issuer/dev.ts';
import { type RunningIssuer, startIssuer } from '../../../runtime/issuer/start.ts';
import { type IssuerStore, openMemoryStore } from '../../../runtime/issuer/store.ts';
import { httpsUpstream } from '../../../runtime/upstream/client.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { HOUR, harness } from './helpers/harness.ts';

const TD = 'fleet.example';

async function scenario(single: boolean) {
  const dir = mkdtempSync(join(tmpdir(), 'replica-dies-'));
  const clock = new VirtualClock(Date.now()); // the issuers' and the agent's
  const shared = await openMemoryStore();
  const files = await createDevIssuerFiles(join(dir, 'ca'), {
    trustDomain: TD,
    clock,
    random: cryptoRandom,
  });
  let killA: (() => void) | undefined;
  const seen: string[] = [];
  // Replica A's view of the store: when armed, the replica dies while storing a renewal session.
  const storeA: IssuerStore = {
    kind: shared.kind,
    get: (k) => shared.get(k),
    getEntry: (k) => shared.getEntry(k),
    getEntries: (k) => shared.getEntries(k),
    list: (p, o) => shared.list(p, o),
    nextSequence: (n) => shared.nextSequence(n),
    dropSequences: (p, lt) => shared.dropSequences(p, lt),
    subscribe: (c, l) => shared.subscribe(c, l),
    tryLock: (n) => shared.tryLock(n),
    close: async () => {},
    batch: async (ops) => {
      if (killA !== undefined && ops.some((op) => op.type === 'put' && op.key.startsWith('session/'))) {
        const kill = killA;
        killA = undefined;
        seen.push('A died mid-request');
        kill();
      }
      return shared.batch(ops);
    },
  };
  const replica = (store: IssuerStore): Promise<RunningIssuer> =>
    startIssuer({
      trustDomain: TD,
      store,
      ca: files.ca,
      tls: files.tls,
      clock,
      random: cryptoRandom,
      logger: nullLogger,
      methods: { joinToken: { enabled: true } },
      closeStore: false,
    });
  const a = await replica(storeA);
  const b = await replica(shared);
  const caPem = new X509Certificate(files.ca.certificate).toString();
  writeFileSync(join(dir, 'token'), await a.issuer.createJoinToken('gw-1', 600_000), { mode: 0o600 });
  const attestor = new JoinTokenAttestor({ tokenFile: join(dir, 'token') });
  await attestor.start();
  const h = await harness({}, { startAgent: false });
  const upstream = httpsUpstream({ endpoints: single ? [a.url] : [a.url, b.url], ca: [caPem], clock });
  const agent = await h.restart({
    clock,
    trustDomain: TD,
    attestor,
    upstream,
    breaker: { failures: 1, openMs: 24 * HOUR },
  });
  // Settles at the next identity change, or at a failed attempt (so a regression fails, not hangs).
  let retried: (() => void) | undefined;
  const warn = h.logger.warn.bind(h.logger);
  h.logger.warn = (msg, fields = {}) => {
    warn(msg, fields);
    if (fields.event === 'identity.retry') retried?.();
  };
  const changed = () =>
    new Promise<void>((r) => {
      retried = r;
      agent.svidSource.onChange(() => r());
    });
  try {
    let next = changed();
    await h.clock.advance(0);
    await next;
    const first = agent.svidSource.getX509Svid();
    assert.is(first.spiffeId, `spiffe://${TD}/gateway/gw-1`);
    assert.is(agent.status().upstream.endpoint, a.url, 'attested through A');

    killA = () => a.abort({ keepListening: single });
    next = changed();
    await h.clock.advance(0.6 * HOUR);
    await next;
    assert.equal(seen, ['A died mid-request']);
    const renewed = agent.svidSource.getX509Svid();
    assert.ok(renewed.notAfter > first.notAfter, 'renewed');
    const st = agent.status();
    assert.is(
      st.upstream.endpoint,
      single ? a.url : b.url,
      single ? 'the same URL, again' : 'renewed through B',
    );
    assert.is(st.breaker.state, 'closed');
    assert.is(st.upstream.consecutiveFailures, 0);
    const failover = h.logger.lines.filter((l) => l.fields.event === 'upstream.failover');
    assert.is(failover.length, 1);
    assert.is(failover[0]?.fields.endpoint, a.url);
    assert.is(failover[0]?.fields.code, 'ERR_UPSTREAM_UNREACHABLE');
    assert.is(
      h.logger.lines.filter((l) => l.fields.event === 'identity.retry').length,
      0,
      'no failed attempt',
    );
  } finally {
    await agent.stop();
    await a.close();
    await b.close();
    await shared.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a replica killed mid-renewal: retried on the next endpoint, the breaker stays closed', () =>
  scenario(false));

test('one URL (a load balancer): a connection reset mid-renewal is retried once on the same URL, the breaker stays closed', () =>
  scenario(true));

test.run();
