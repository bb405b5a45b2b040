/**
 * Issue 17, "kill -9 one replica during a rotation storm of 100 simulated gateways → every
 * gateway still rotates, none re-attests from scratch". Three `edgeward issuer` daemons, each its
 * own OS process, on one throw-away PostgreSQL database (test/helpers/postgres.ts); 100 real
 * agents (join-token attestation, the real HTTPS client over all three URLs, each replica the
 * first choice of a third of them) on the real clock with 50 s SVIDs and a 90 s offline budget,
 * so every gateway renews every 6-14 s and renews its delegated CA too. Once every gateway has
 * renewed, one replica is killed with SIGKILL while it holds requests (a renew/finish among
 * them when that moment comes within 15 s, so a transaction may be cut mid-way).
 *
 * Asserted afterwards: every gateway renewed through an exchange begun after the kill; none
 * attested again or fell back to recovery; no attempt failed (failover within the attempt: the
 * breaker, set to open at the first counted failure, stayed closed everywhere); failovers were
 * from the dead replica (reset, refused), from a survivor only on a client timeout (a loaded
 * machine); a finish the dead replica answered, sent again unchanged to a survivor, gets the same
 * answer (finish-done.ts), and what it was finishing when it died, replayed at both survivors at
 * once, is issued at most once (both get the one answer);
 * the store is consistent: every issued record has its one audit event under its gateway, every
 * audited serial is recorded or expired, each gateway holds no SVID not accounted for by an
 * answer it got or an answer it lost, every answered serial was committed, the SVID each serves
 * is recorded, records bound what was issued; the survivors are ready and drain (SIGTERM) with
 * exit 0. Runtime is bounded: each wait has its own limit, no fixed sleeps.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { systemClock } from '../../../runtime/core/clock.ts';
import type { AuditEvent, GatewayRecord, IssuedRecord } from '../../../runtime/issuer/records.ts';
import { openPostgresStore } from '../../../runtime/issuer/store-postgres.ts';
import { httpsUpstream } from '../../../runtime/upstream/client.ts';
import { PATHS } from '../../../runtime/upstream/protocol.ts';
import { type Replica, replicaSet } from '../../helpers/issuer-replicas.ts';
import { stopTestCluster, testDatabase } from '../../helpers/postgres.ts';
import { CallLog, type CallRecord, StormGateway } from './storm-gateways.ts';

const GATEWAYS = 100;
const REPLICAS = 3;
const WAVE = 25;
/** The SVID lifetime and the offline budget (delegated CA lifetime) configured below. */
const SVID_TTL_MS = 50_000;
const BUDGET_MS = 90_000;
/** How a request to a killed process ends: cut mid-way, or refused afterwards. */
const GONE = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE']);
const TD = 'fleet.example';

test.after(() => stopTestCluster());

/** GET `url`: the status code (the probes are plain HTTP). */
async function status(url: string): Promise<number> {
  const r = await fetch(url);
  await r.arrayBuffer();
  return r.status;
}

test('kill -9 one of 3 replicas during a rotation storm of 100 gateways: every gateway still renews, none re-attests, nothing issued twice or lost', async () => {
  const t0 = performance.now();
  const dir = mkdtempSync(join(tmpdir(), 'storm-'));
  const dirs = [dir];
  const db = await testDatabase('storm');
  const set = await replicaSet({
    dir,
    url: db.url,
    trustDomain: TD,
    // Every gateway connects from 127.0.0.1 (a fleet behind one NAT or load balancer): the
    // per-address limit is lifted, and its window is short so each request counts few rows.
    // Renewals every 6-14 s (half-life of 50 s + the 30 s backdating, ±10 %).
    extra: [
      `svidTtl: ${SVID_TTL_MS / 1000}s`,
      `offlineBudget: ${BUDGET_MS / 1000}s`,
      'rateLimit: { perAddress: 1000000, perGateway: 1000000, window: 1s }',
    ].join('\n'),
  });
  const replicas: Replica[] = [];
  const gateways: StormGateway[] = [];
  const log = new CallLog();
  const store = await openPostgresStore({ url: db.url, poolSize: 2 });
  try {
    replicas.push(...(await Promise.all(Array.from({ length: REPLICAS }, (_, i) => set.start(i)))));
    const urls = replicas.map((r) => r.url);
    // One join token per gateway, made through each replica's admin socket in turn.
    const tokens = await Promise.all(
      Array.from({ length: GATEWAYS }, async (_, i) => {
        const r = await set.operator(
          replicas[i % REPLICAS] as Replica,
          'token',
          'create',
          '--name',
          `gw-${i}`,
        );
        assert.is(r.code, 0, r.err);
        return r.out.trim();
      }),
    );
    const started = performance.now();
    // The gateways' key files on tmpfs when there is one: each is created with an fsync.
    const gwDir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'storm-gw-'));
    dirs.push(gwDir);
    // Enrolled in waves (a join token is spent by an answer lost to a client timeout: the first
    // attestation is not what this test is about), each wave attested before the next starts.
    for (let w = 0; w < GATEWAYS; w += WAVE) {
      const wave = await Promise.all(
        Array.from({ length: Math.min(WAVE, GATEWAYS - w) }, (_, k) =>
          StormGateway.start({
            name: `gw-${w + k}`,
            token: tokens[w + k] as string,
            urls,
            first: (w + k) % REPLICAS,
            caPem: set.caPem,
            dir: gwDir,
            trustDomain: TD,
            log,
          }),
        ),
      );
      gateways.push(...wave);
      await log.until(
        () => wave.every((g) => g.rotations('attest') === 1),
        () =>
          `not attested: ${wave
            .filter((g) => g.rotations('attest') === 0)
            .map((g) => `${g.name} ${JSON.stringify(g.agent.status().upstream.lastError ?? {})}`)
            .join(', ')}`,
        30_000,
      );
    }
    const attested = performance.now();
    // Why a gateway is behind: its count, upstream state and its calls that did not succeed.
    const why = (g: StormGateway) =>
      `${g.name} ${JSON.stringify(g.agent.status().upstream.lastError?.tried ?? [])} ${JSON.stringify(
        log.calls
          .filter((c) => c.gateway === g.name && c.state !== 'ok')
          .map((c) => [c.path, c.state, c.reason]),
      )}`;
    await log.until(
      () => gateways.every((g) => g.rotations('renew') >= 1),
      () =>
        `not renewed: ${gateways
          .filter((g) => g.rotations('renew') < 1)
          .map(why)
          .join(', ')}`,
      30_000,
    );

    // Kill the replica first in line for gateways 0, 3, 6, ... while it holds a renew/finish and
    // another request; if that moment does not come within 15 s, at the next request.
    const victim = replicas[0] as Replica;
    const vi = victim.index;
    const busy = () => log.inFlight(vi, PATHS.renewFinish) >= 1 && log.inFlight(vi) >= 2;
    // Freeze it (SIGSTOP) at that moment: what it had not sent by then never reaches a gateway.
    // What it had sent is read on the gateways' next poll turns, which a survivor's answer to a
    // probe marks; the calls still in flight after that are cut for certain. A freeze that caught
    // nothing (every answer was already on its way) thaws it and waits for the next busy moment.
    let cut: CallRecord[] = [];
    for (let attempt = 1; cut.length === 0; attempt++) {
      await log
        .until(busy, 'victim busy', 15_000)
        .catch(() => log.until(() => log.inFlight(vi) >= 1, 'victim asked', 10_000));
      victim.signal('SIGSTOP');
      await status(`${(replicas[1] as Replica).healthUrl}/healthz`);
      cut = log.calls.filter((c) => c.replica === vi && c.state === 'in-flight');
      if (cut.length > 0) break;
      assert.ok(attempt < 10, 'ten freezes of the victim caught no request in flight');
      victim.signal('SIGCONT');
    }
    // Sessions the victim answered, to replay: those whose client SVID lives longest.
    const answered = log.calls
      .filter((c) => c.replica === vi && c.path === PATHS.renewFinish && c.state === 'ok' && c.by === 'agent')
      .sort((x, y) => (y.options?.clientSvid?.notAfter ?? 0) - (x.options?.clientSvid?.notAfter ?? 0))
      .slice(0, 5);
    const killIndex = log.calls.length;
    victim.kill();
    assert.is(await victim.exited, 'SIGKILL');
    const killedAt = performance.now();
    assert.ok(cut.length >= 1, 'the kill hit requests in flight');

    // A finish the victim answered, sent again unchanged to a survivor: the same answer (a lost answer).
    const survivors = replicas.filter((r) => r !== victim);
    const raw = httpsUpstream({ endpoints: urls, ca: [set.caPem], clock: systemClock });
    const replay = (c: CallRecord, r: Replica) =>
      log
        .track(raw.endpoints[r.index] as NonNullable<(typeof raw.endpoints)[0]>, r.index, c.gateway, 'replay')
        .post(c.path, c.body, c.options)
        .catch(() => undefined);
    assert.is(answered.length, 5, 'the victim had answered renewals');
    await Promise.all(answered.map((c) => replay(c, survivors[0] as Replica)));
    const again = new Set(answered.map((c) => c.sessionId));
    const firstSerial = new Map(answered.map((c) => [c.sessionId, c.serial]));
    for (const c of log.calls.filter((c) => c.by === 'replay' && again.has(c.sessionId)))
      assert.is(
        c.serial,
        firstSerial.get(c.sessionId),
        `${c.gateway}: ${c.state} ${c.code} ${c.reason} ${c.message}`,
      );

    // What the victim was doing when it died: cut (reset), or answered just before.
    await log.until(() => cut.every((c) => c.state !== 'in-flight'), 'the cut calls settle', 15_000);
    const lost = cut.filter((c) => c.state === 'failed');
    assert.ok(lost.length >= 1, `the kill cut at least one request (${cut.length} in flight)`);
    for (const c of lost)
      assert.ok(
        c.code === 'ERR_UPSTREAM_UNREACHABLE' && GONE.has(c.reason as string),
        `${c.gateway} ${c.path}: ${c.code} ${c.reason}`,
      );
    // The renew/finish requests it was cut in, replayed at both survivors at once: at most one issues
    // (the agent itself sends them again too: both answers name one serial, checked below).
    const lostFinishes = lost.filter((c) => c.path === PATHS.renewFinish);
    await Promise.all(lostFinishes.flatMap((c) => survivors.map((r) => replay(c, r))));

    // Every gateway renews with the victim gone: a renewal begun after the kill, answered.
    const renewedSince = (g: StormGateway) =>
      log.calls.some(
        (c, i) =>
          i >= killIndex &&
          c.gateway === g.name &&
          c.by === 'agent' &&
          c.path === PATHS.renewFinish &&
          c.state === 'ok',
      );
    await log.until(
      () => gateways.every(renewedSince),
      () =>
        `not renewed since the kill: ${gateways
          .filter((g) => !renewedSince(g))
          .map((g) => g.name)
          .join(', ')}`,
      45_000,
    );
    const renewedAfter = performance.now();
    await Promise.all(gateways.map((g) => g.agent.stop()));

    // --- The gateways' side: renewed, never attested again, never a failed attempt.
    for (const g of gateways) {
      assert.is(g.rotations('attest'), 1, `${g.name} attested once`);
      assert.is(g.rotations('recover'), 0, `${g.name} never fell back to recovery: ${why(g)}`);
      assert.is(
        g.count('identity.retry'),
        0,
        `${g.name}: no failed attempt ${JSON.stringify(g.events.find((e) => e.event === 'identity.retry')?.fields)}`,
      );
      assert.is(g.count('identity.refused') + g.count('identity.halted'), 0, `${g.name}: never refused`);
      const st = g.agent.status();
      assert.is(st.breaker.state, 'closed', `${g.name} breaker`);
      assert.is(st.upstream.consecutiveFailures, 0);
      assert.ok(st.upstream.endpoint !== victim.url, `${g.name} left the dead replica`);
    }
    // Failing over is for the dead replica (reset, refused); a survivor only when an answer took
    // longer than the client's timeout (a loaded machine), never a refusal.
    const failovers = gateways.flatMap((g) => g.events.filter((e) => e.event === 'upstream.failover'));
    const atVictim = failovers.filter((f) => f.fields.endpoint === victim.url);
    assert.ok(atVictim.length >= 1, 'gateways failed over from the dead replica');
    for (const f of atVictim)
      assert.ok(
        f.fields.code === 'ERR_UPSTREAM_UNREACHABLE' && GONE.has(String(f.fields.reason)),
        `failed over from the dead replica: ${JSON.stringify(f.fields)}`,
      );
    const slow = failovers.filter((f) => f.fields.endpoint !== victim.url);
    for (const f of slow)
      assert.is(f.fields.reason, 'timeout', `failed over from a survivor: ${JSON.stringify(f.fields)}`);
    // --- The store's side.
    const issued = new Map((await store.list<IssuedRecord>('issued/')).map(([k, v]) => [k.slice(7), v]));
    const audit = (await store.list<AuditEvent>('audit/')).map(([, v]) => v);
    const gws = new Map((await store.list<GatewayRecord>('gw/')).map(([k, v]) => [k.slice(3), v]));
    assert.is((await store.list('token/')).length, 0, 'every token consumed');
    assert.is(gws.size, GATEWAYS);
    const issuances = audit.filter(
      (e) => e.event === 'issue' || e.event === 'renew' || e.event === 'recover',
    );
    assert.is(audit.filter((e) => e.event === 'issue').length, GATEWAYS, 'one attestation per gateway');
    assert.is(audit.filter((e) => e.event === 'recover').length, 0, 'no recovery');
    const refusals = [...new Set(audit.filter((e) => e.event === 'refuse').map((e) => e.code))];
    assert.equal(refusals, [], 'no refusal: a finish sent again is answered again');
    assert.ok(audit.filter((e) => e.event === 'retry').length >= answered.length, 'the replays were retries');
    // Every certificate issued has exactly one audit event (the audit log is kept; expired issued
    // records are pruned): each record is audited under its gateway, each audited serial missing
    // from the records belongs to a certificate that has expired (at most the budget after its event).
    const audited = new Map<string, AuditEvent>();
    for (const e of issuances)
      for (const s of e.serials ?? []) {
        assert.not.ok(audited.has(s), `${s} audited twice`);
        audited.set(s, e);
      }
    const now = Date.now();
    for (const [s, r] of issued) {
      const e = audited.get(s);
      assert.ok(e !== undefined, `issued ${s} (${r.gateway}) has its audit event`);
      assert.is(r.gateway, e.gateway, `${s}: one gateway`);
      assert.is(r.spiffeId, `spiffe://${TD}/gateway/${e.gateway}`);
    }
    for (const [s, e] of audited)
      if (!issued.has(s)) {
        // An event's first serial is the SVID (svidTtl), the second the delegated CA (the budget).
        const life = e.serials?.[0] === s ? SVID_TTL_MS : BUDGET_MS;
        assert.ok(e.at + life <= now, `${s} (${e.gateway}) is neither recorded nor expired`);
      }
    // Each session answered with one identity, however often and whoever asked.
    const bySession = new Map<string, Set<string | undefined>>();
    for (const c of log.calls)
      if (c.sessionId !== undefined && c.state === 'ok')
        bySession.set(c.sessionId, (bySession.get(c.sessionId) ?? new Set()).add(c.serial));
    for (const [id, serials] of bySession)
      assert.is(serials.size, 1, `session ${id} answered with one serial`);
    for (const g of gateways) {
      // What the store says this gateway was issued (SVIDs: the first serial of each event).
      const ever = issuances.filter((e) => e.gateway === g.name).map((e) => e.serials?.[0] as string);
      const finishes = log.calls.filter((c) => c.gateway === g.name && c.sessionId !== undefined);
      const answered = finishes.filter((c) => c.serial !== undefined);
      for (const c of answered) {
        assert.ok(ever.includes(c.serial as string), `${g.name}: answered serial ${c.serial} was committed`);
        if ((c.notAfter as number) > now)
          assert.is(
            issued.get(c.serial as string)?.kind,
            'svid',
            `${g.name}: live serial ${c.serial} is recorded`,
          );
      }
      assert.is(issued.get(g.servedSerial())?.gateway, g.name, `${g.name}: the SVID it serves is recorded`);
      // An SVID nobody was answered with comes from a request whose answer was lost: at most one each.
      const lostAnswers = new Set(
        finishes.filter((c) => c.state === 'failed' && c.remoteCode === undefined).map((c) => c.sessionId),
      );
      const answeredSerials = new Set(answered.map((c) => c.serial)).size;
      assert.ok(
        ever.length - answeredSerials <= lostAnswers.size,
        `${g.name}: ${ever.length} SVIDs issued, ${answeredSerials} answered, ${lostAnswers.size} answers lost`,
      );
      const rec = gws.get(g.name) as GatewayRecord;
      assert.is(rec.disabled, false);
      const mine = [...issued.values()].filter((r) => r.gateway === g.name);
      assert.ok(
        rec.maxNotAfter >= Math.max(...mine.map((r) => r.notAfter)),
        `${g.name}: maxNotAfter bounds its certificates`,
      );
      for (const ca of rec.deviceCas ?? [])
        if (ca.notAfter > now)
          assert.is(
            issued.get(ca.serial)?.kind,
            'device-ca',
            `${g.name}: recorded CA ${ca.serial} was issued`,
          );
    }

    // --- The survivors: ready, and they drain with exit 0.
    for (const r of survivors)
      assert.is(await status(`${r.healthUrl}/readyz`), 200, `replica ${r.index} ready`);
    for (const r of survivors) assert.is(await r.stop(), 0, `replica ${r.index} drained:\n${r.output()}`);

    const renewals = audit.filter((e) => e.event === 'renew').length;
    console.log(
      `storm: ${GATEWAYS} gateways, ${REPLICAS} replicas; attested in ${((attested - started) / 1000).toFixed(1)} s; ` +
        `${renewals} renewals (${audit.filter((e) => e.event === 'renew' && (e.serials?.length ?? 0) > 1).length} with a new CA); ` +
        `killed with ${cut.length} requests in flight (${lost.length} cut, ${lostFinishes.length} renew/finish); ` +
        `${atVictim.length} failovers from the dead replica, ${slow.length} from a slow survivor; ` +
        `every gateway renewed since the kill within ${((renewedAfter - killedAt) / 1000).toFixed(1)} s; ` +
        `total ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
  } finally {
    await Promise.all(gateways.map((g) => g.agent.stop()));
    for (const r of replicas) r.kill();
    await Promise.all(replicas.map((r) => r.exited));
    await store.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});

test.run();
