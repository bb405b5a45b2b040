/**
 * The offline budget (issue 14 item 1): the delegated CA's lifetime is the issuer's
 * `offlineBudget` (default 7d), or an operator's per-gateway override stored in the gateway
 * record and audited, and never more than what is left of the issuer CA. The override applies
 * to the next CA issued (attestation, renewal with a CA CSR, recovery with one). Also through
 * the CLI: `edgeward issuer gateway budget --name N --budget D|configured`.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../../runtime/cli/main.ts';
import { Issuer } from '../../../runtime/issuer/issuer.ts';
import type { GatewayRecord } from '../../../runtime/issuer/records.ts';
import { openMemoryStore } from '../../../runtime/issuer/store.ts';
import { createRootCa } from '../../../runtime/svid/authority.ts';
import { parseCertificate } from '../../../runtime/svid/certificate.ts';
import type { IssuedIdentity } from '../../../runtime/upstream/protocol.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../../sim/random.ts';
import { captureIo } from '../../helpers/cli-io.ts';
import { rejects } from '../../helpers/rejects.ts';
import { keyAndCsr, TD } from './harness.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const ctx = { address: '192.0.2.9' };

async function issuerWith(o: {
  budgetMs?: number;
  caLeftMs?: number;
  svidTtlMs?: number;
  store?: Awaited<ReturnType<typeof openMemoryStore>>;
}) {
  const clock = new VirtualClock(Math.floor(Date.now() / 1000) * 1000);
  const random = seededRandom('budget');
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const store = o.store ?? (await openMemoryStore());
  const issuer = await Issuer.create({
    trustDomain: TD,
    store,
    ca: {
      certificate: createRootCa({
        trustDomain: TD,
        privateKey: key,
        notBefore: clock.now() - 1000,
        notAfter: clock.now() + (o.caLeftMs ?? 365 * DAY),
        random,
      }),
      privateKey: key,
    },
    clock,
    random,
    methods: { joinToken: { enabled: true } },
    rateLimit: { perAddress: 1000, perGateway: 1000, windowMs: 60_000 },
    ...(o.budgetMs === undefined ? {} : { offlineBudgetMs: o.budgetMs }),
    ...(o.svidTtlMs === undefined ? {} : { svidTtlMs: o.svidTtlMs }),
  });
  const enroll = async (name: string) => {
    const token = await issuer.createJoinToken(name, 600_000);
    const b = await issuer.attestBegin({ method: 'join-token', token }, ctx);
    const k = keyAndCsr();
    const id = await issuer.attestFinish(
      { method: 'join-token', sessionId: b.sessionId, csr: k.csr, caCsr: keyAndCsr().csr },
      ctx,
    );
    return { id, peer: { ...ctx, peerCertificate: id.svidChain[0] as Uint8Array } };
  };
  /** Renew with a CA CSR: a new delegated CA under the gateway's current budget. */
  const renewCa = async (peer: { address: string; peerCertificate: Uint8Array }) => {
    const rb = await issuer.renewBegin(peer);
    return issuer.renewFinish(
      { sessionId: rb.sessionId, csr: keyAndCsr().csr, caCsr: keyAndCsr().csr },
      peer,
    );
  };
  const caLife = (id: IssuedIdentity) =>
    parseCertificate(id.deviceCaChain[0] as Uint8Array).notAfter - clock.now();
  return { issuer, store, clock, enroll, renewCa, caLife };
}

test('the delegated CA lives the configured budget (default 7d); an override applies to the next CA, audited', async () => {
  const d = await issuerWith({});
  const gw = await d.enroll('gw-1');
  assert.is(d.caLife(gw.id), 7 * DAY);
  const c = await issuerWith({ budgetMs: 3 * DAY });
  const g = await c.enroll('gw-1');
  assert.is(c.caLife(g.id), 3 * DAY);
  await c.issuer.setOfflineBudget('gw-1', 10 * DAY);
  assert.is((await c.store.get<GatewayRecord>('gw/gw-1'))?.offlineBudgetMs, 10 * DAY);
  assert.is(c.caLife(g.id), 3 * DAY, 'the CA it holds keeps its NotAfter');
  const renewed = await c.renewCa(g.peer);
  assert.is(c.caLife(renewed), 10 * DAY);
  // Back to the configured budget.
  await c.issuer.setOfflineBudget('gw-1', undefined);
  assert.is((await c.store.get<GatewayRecord>('gw/gw-1'))?.offlineBudgetMs, undefined);
  const peer = { ...ctx, peerCertificate: renewed.svidChain[0] as Uint8Array };
  assert.is(c.caLife(await c.renewCa(peer)), 3 * DAY);
  const events = (await c.issuer.auditEvents()).filter((e) => e.event === 'budget');
  assert.equal(
    events.map((e) => [e.gateway, e.detail]),
    [
      ['gw-1', `offline budget: ${10 * DAY} ms`],
      ['gw-1', 'offline budget: the configured one'],
    ],
  );
  await d.issuer.close();
  await c.issuer.close();
});

test('an override set before the gateway exists applies at its attestation; it keeps a disabled gateway disabled', async () => {
  const c = await issuerWith({});
  await c.issuer.setOfflineBudget('gw-early', 2 * DAY);
  const g = await c.enroll('gw-early');
  assert.is(c.caLife(g.id), 2 * DAY);
  await c.issuer.setDisabled('gw-early', true);
  await c.issuer.setOfflineBudget('gw-early', 5 * DAY);
  const rec = await c.store.get<GatewayRecord>('gw/gw-early');
  assert.equal([rec?.disabled, rec?.offlineBudgetMs, rec?.method], [true, 5 * DAY, 'join-token']);
  await c.issuer.close();
});

test('the CA never outlives the issuer CA: min(budget, what is left of the issuer CA)', async () => {
  const c = await issuerWith({ budgetMs: 7 * DAY, caLeftMs: 2 * DAY });
  const g = await c.enroll('gw-short');
  const issuerCaEnd = parseCertificate(c.issuer.caCertificate).notAfter;
  assert.is(parseCertificate(g.id.deviceCaChain[0] as Uint8Array).notAfter, issuerCaEnd);
  await c.issuer.close();
});

test('the gateway SVID never outlives its budget, even when svidTtl grew after an override was set', async () => {
  const first = await issuerWith({});
  await first.issuer.setOfflineBudget('gw-tight', HOUR);
  await first.issuer.close();
  const c = await issuerWith({ svidTtlMs: 3 * HOUR, store: first.store });
  const g = await c.enroll('gw-tight');
  assert.is(c.caLife(g.id), HOUR);
  assert.is(parseCertificate(g.id.svidChain[0] as Uint8Array).notAfter - c.clock.now(), HOUR);
  await c.issuer.close();
});

test('override bounds: > 0, at most 30d, not shorter than the SVID; bad names refused', async () => {
  const c = await issuerWith({});
  await rejects(() => c.issuer.setOfflineBudget('gw-1', 0), 'ERR_ISSUER_BAD_REQUEST');
  await rejects(() => c.issuer.setOfflineBudget('gw-1', 31 * DAY), 'ERR_ISSUER_BAD_REQUEST');
  await rejects(() => c.issuer.setOfflineBudget('gw-1', 30 * 60_000), 'ERR_ISSUER_BAD_REQUEST');
  await rejects(() => c.issuer.setOfflineBudget('../x', DAY), 'ERR_ISSUER_BAD_REQUEST');
  await c.issuer.setOfflineBudget('gw-1', 30 * DAY);
  await c.issuer.setOfflineBudget('gw-1', HOUR);
  await c.issuer.close();
});

test('CLI: edgeward issuer gateway budget sets, clears and refuses, and the audit shows it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'issuer-budget-cli-'));
  try {
    const io = () => captureIo({ cwd: dir });
    assert.is(await main(['issuer', 'dev-ca', '--dir', join(dir, 'dev'), '--trust-domain', TD], io()), 0);
    const d = join(dir, 'dev');
    const cfg = join(dir, 'issuer.yaml');
    writeFileSync(
      cfg,
      `version: 2
trustDomain: ${TD}
listen: { host: 127.0.0.1, port: 0, certificate: ${d}/tls.pem, key: ${d}/tls.key }
ca: { certificate: ${d}/ca.pem, key: ${d}/ca.key }
storeDir: ${join(dir, 'store')}
offlineBudget: 3d
attestation:
  joinToken: { enabled: true }
log: { level: error }
`,
    );
    const run = async (...args: string[]) => {
      const t = io();
      const code = await main(['issuer', 'gateway', 'budget', '--offline', '--config', cfg, ...args], t);
      return { code, out: t.stdout.join('\n'), err: t.stderr.join('\n') };
    };
    const set = await run('--name', 'gw-1', '--budget', '14d');
    assert.equal([set.code, set.out], [0, 'gateway gw-1: offline budget 14d']);
    assert.is((await run('--name', 'gw-1', '--budget', 'configured')).code, 0);
    const zero = await run('--name', 'gw-1', '--budget', '0s');
    assert.is(zero.code, 1);
    assert.match(zero.err, /ERR_ISSUER_BAD_REQUEST/);
    assert.is((await run('--name', 'gw-1', '--budget', 'soon')).code, 2);
    assert.is((await run('--name', 'gw-1')).code, 2);
    const a = io();
    assert.is(await main(['issuer', 'audit', '--offline', '--config', cfg], a), 0);
    const budget = a.stdout.map((l) => JSON.parse(l)).filter((e) => e.event === 'budget');
    assert.equal(
      budget.map((e) => e.detail),
      [`offline budget: ${14 * DAY} ms`, 'offline budget: the configured one'],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
