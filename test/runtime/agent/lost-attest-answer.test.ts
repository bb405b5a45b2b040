/**
 * A lost attest finish answer (issue 17, the kill -9 storm): the issuer commits the issuance,
 * consuming the session and the single-use join token, and the replica dies before its answer
 * is written (its connections cut right after the COMMIT). The agent sends the very same finish
 * again (exchange.ts `PendingFinish`), on the next endpoint or, with one URL behind a load
 * balancer, on the same URL; the issuer answers it from `done/<sessionId>`
 * (runtime/issuer/finish-done.ts). The agent ends enrolled with its one join token, without a
 * person making a new one, and the issuer issued once.
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
import type { AuditEvent } from '../../../runtime/issuer/records.ts';
import { type RunningIssuer, startIssuer } from '../../../runtime/issuer/start.ts';
import { type IssuerStore, openMemoryStore } from '../../../runtime/issuer/store.ts';
import { httpsUpstream } from '../../../runtime/upstream/client.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { HOUR, harness } from './helpers/harness.ts';

const TD = 'fleet.example';

async function scenario(single: boolean) {
  const dir = mkdtempSync(join(tmpdir(), 'lost-answer-'));
  const clock = new VirtualClock(Date.now());
  const shared = await openMemoryStore();
  const files = await createDevIssuerFiles(join(dir, 'ca'), { trustDomain: TD, clock, random: cryptoRandom });
  let killA: (() => void) | undefined;
  const seen: string[] = [];
  // Replica A's view of the store: when armed, the replica dies right after an issuance committed.
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
      const out = await shared.batch(ops);
      if (killA !== undefined && ops.some((op) => op.type === 'put' && op.key.startsWith('done/'))) {
        const kill = killA;
        killA = undefined;
        seen.push('A died after its COMMIT');
        kill();
      }
      return out;
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
  killA = () => a.abort({ keepListening: single });
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
  // Settles at the identity, or at a failed attempt (so a regression fails, not hangs).
  let retried: (() => void) | undefined;
  const warn = h.logger.warn.bind(h.logger);
  h.logger.warn = (msg, fields = {}) => {
    warn(msg, fields);
    if (fields.event === 'identity.retry') retried?.();
  };
  try {
    const enrolled = new Promise<void>((r) => {
      retried = r;
      agent.svidSource.onChange(() => r());
    });
    await h.clock.advance(0);
    await enrolled;
    assert.equal(seen, ['A died after its COMMIT']);
    assert.is(agent.svidSource.getX509Svid().spiffeId, `spiffe://${TD}/gateway/gw-1`);
    assert.is(
      h.logger.lines.filter((l) => l.fields.event === 'identity.retry').length,
      0,
      'no failed attempt',
    );
    assert.is(agent.status().upstream.endpoint, single ? a.url : b.url);
    const audit = (await shared.list<AuditEvent>('audit/')).map(([, v]) => v.event);
    assert.is(audit.filter((e) => e === 'issue').length, 1, 'issued once');
    assert.is(audit.filter((e) => e === 'retry').length, 1, 'answered again once');
    assert.is(audit.filter((e) => e === 'refuse').length, 0);
    assert.is((await shared.list('issued/')).length, 2, 'one SVID and one delegated CA');
  } finally {
    await agent.stop();
    await a.close();
    await b.close();
    await shared.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the finish answer lost when replica A dies after its COMMIT: the same finish on B enrolls, one issuance', () =>
  scenario(false));

test('one URL: the connection reset after the COMMIT, the same finish again on the same URL enrolls', () =>
  scenario(true));

test.run();
