/**
 * Upstream failures carry their cause (`fields.reason`), on real sockets: a refused port, a TLS
 * server whose certificate chains to another CA, an expired server certificate, a host-name
 * mismatch, an HTTP 503, a server that never answers (timeout on the injected clock). And the
 * agent logs every endpoint it tried with its cause and shows them in its status.
 */

import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { systemClock } from '../../../runtime/core/clock.ts';
import type { AgentError } from '../../../runtime/errors.ts';
import { httpsUpstream } from '../../../runtime/upstream/client.ts';
import { PATHS } from '../../../runtime/upstream/protocol.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { makeCert } from '../../helpers/pki.ts';
import { rejects } from '../../helpers/rejects.ts';
import { harness } from '../agent/helpers/harness.ts';

const now = Date.now();
const DAY = 86_400_000;
const ca = await makeCert({ subject: 'CN=issuer root', ca: true, notBefore: now - DAY, notAfter: now + DAY });
const otherCa = await makeCert({
  subject: 'CN=other root',
  ca: true,
  notBefore: now - DAY,
  notAfter: now + DAY,
});
const leaf = (issuer: typeof ca, o: { notAfter?: number; ips?: string[] } = {}) =>
  makeCert({
    subject: 'CN=issuer',
    ips: o.ips ?? ['127.0.0.1'],
    notBefore: now - DAY,
    notAfter: o.notAfter ?? now + DAY,
    issuer,
  });
const good = await leaf(ca);
const foreign = await leaf(otherCa);
const expired = await leaf(ca, { notAfter: now - 60_000 });
const wrongName = await leaf(ca, { ips: ['192.0.2.7'] });
const CA_PEM = ca.cert.toString();

const servers: (HttpsServer | NetServer)[] = [];
const sockets = new Set<Socket>();
test.after(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

async function listen(s: HttpsServer | NetServer): Promise<string> {
  servers.push(s);
  s.on('connection', (c: Socket) => {
    sockets.add(c);
    c.on('close', () => sockets.delete(c));
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return `https://127.0.0.1:${(s.address() as { port: number }).port}`;
}

const tlsServer = (
  cert: { cert: { toString(): string }; key: { export(o: object): string | Buffer } },
  status = 503,
) =>
  listen(
    createHttpsServer(
      { cert: cert.cert.toString(), key: cert.key.export({ type: 'pkcs8', format: 'pem' }) },
      (_req, res) => {
        res.statusCode = status;
        res.end();
      },
    ),
  );

async function refusedUrl(): Promise<string> {
  const s = createNetServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return `https://127.0.0.1:${port}`;
}

/** One GET to `url`, which must fail with `code`; returns the error. */
function failure(url: string, code: string): Promise<AgentError> {
  const up = httpsUpstream({ endpoints: [url], ca: [CA_PEM], clock: systemClock, timeoutMs: 5_000 });
  return rejects<AgentError>(() => up.endpoints[0]?.get(PATHS.bundle), code);
}

test('a refused port: ERR_UPSTREAM_UNREACHABLE with reason ECONNREFUSED', async () => {
  const err = await failure(await refusedUrl(), 'ERR_UPSTREAM_UNREACHABLE');
  assert.is(err.fields.reason, 'ECONNREFUSED');
});

test('a server certificate from another CA: reason UNABLE_TO_VERIFY_LEAF_SIGNATURE', async () => {
  const err = await failure(await tlsServer(foreign), 'ERR_UPSTREAM_UNREACHABLE');
  assert.is(err.fields.reason, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
});

test('an expired server certificate: reason CERT_HAS_EXPIRED', async () => {
  const err = await failure(await tlsServer(expired), 'ERR_UPSTREAM_UNREACHABLE');
  assert.is(err.fields.reason, 'CERT_HAS_EXPIRED');
});

test('a certificate for another address: reason ERR_TLS_CERT_ALTNAME_INVALID', async () => {
  const err = await failure(await tlsServer(wrongName), 'ERR_UPSTREAM_UNREACHABLE');
  assert.is(err.fields.reason, 'ERR_TLS_CERT_ALTNAME_INVALID');
});

test('an HTTP error status: the status as reason and the matching code', async () => {
  const err = await failure(await tlsServer(good, 503), 'ERR_UPSTREAM_UNAVAILABLE');
  assert.is(err.fields.reason, 'HTTP 503');
  assert.is(err.fields.status, 503);
});

test('a server that accepts and never answers: reason timeout, on the injected clock', async () => {
  const server = createNetServer();
  const connected = new Promise<void>((r) => server.once('connection', () => r()));
  const url = await listen(server);
  const clock = new VirtualClock(now);
  const up = httpsUpstream({ endpoints: [url], ca: [CA_PEM], clock, timeoutMs: 10_000 });
  const pending = up.endpoints[0]?.get(PATHS.bundle).then(
    () => undefined,
    (e: AgentError) => e,
  );
  await connected; // the TCP connect happened for real: the timeout is the only way out now
  assert.equal(clock.pendingTimers(), [{ name: 'upstream-timeout', due: now + 10_000 }]);
  await clock.advance(9_999);
  assert.equal(clock.pendingTimers().length, 1, 'not before its time');
  await clock.advance(1);
  const err = await pending;
  assert.is(err?.code, 'ERR_UPSTREAM_UNREACHABLE');
  assert.is(err?.fields.reason, 'timeout');
});

test('the agent logs and reports every endpoint tried with its cause', async () => {
  const refused = await refusedUrl();
  const wrongCa = await tlsServer(foreign);
  const h = await harness({
    upstream: httpsUpstream({ endpoints: [refused, wrongCa], ca: [CA_PEM], clock: systemClock }),
    clock: systemClock,
    feedIntervalMs: 3_600_000,
  });
  const { agent, logger } = h;
  try {
    const deadline = Date.now() + 10_000;
    while (!logger.lines.some((l) => l.fields.event === 'identity.retry') && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    const retry = logger.lines.find((l) => l.fields.event === 'identity.retry');
    assert.ok(retry, 'a retry line was logged');
    assert.equal(retry?.fields.tried, [
      { endpoint: refused, code: 'ERR_UPSTREAM_UNREACHABLE', reason: 'ECONNREFUSED' },
      { endpoint: wrongCa, code: 'ERR_UPSTREAM_UNREACHABLE', reason: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' },
    ]);
    assert.is(retry?.fields.reason, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    const failovers = logger.lines.filter((l) => l.fields.event === 'upstream.failover');
    assert.equal(
      failovers.map((l) => l.fields.reason),
      ['ECONNREFUSED', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'],
    );
    const last = agent.status().upstream.lastError;
    assert.is(last?.reason, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    assert.is(last?.tried.length, 2);
  } finally {
    await agent.stop();
    await h.attestor.close();
    await h.store.close();
  }
});

test.run();
