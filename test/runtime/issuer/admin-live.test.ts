/**
 * Issue 17 items 3 and 4 against a RUNNING issuer (a spawned `edgeward issuer` process): operator
 * commands over its 0600 admin socket (never the store: --offline is refused while it runs),
 * revoke while running refuses the gateway's renewal, the socket refuses another uid, the mTLS
 * admin port admits an operator certificate and refuses a gateway SVID and a device certificate,
 * /healthz /readyz /metrics (readyz 503 when the CA key file is loosened), and SIGTERM drains: an
 * in-flight request finishes, new connections are refused, exit 0.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../../runtime/cli/main.ts';
import { cryptoRandom } from '../../../runtime/core/random.ts';
import { issuerCbor } from '../../../runtime/issuer/store.ts';
import { createSigner } from '../../../runtime/svid/signer.ts';
import type { AttestBeginResponse, IssuedIdentity } from '../../../runtime/upstream/protocol.ts';
import { captureIo } from '../../helpers/cli-io.ts';
import { keyAndCsr, TD } from './harness.ts';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'issuer-live-'));
chmodSync(dir, 0o755); // others may traverse: the socket's own mode is what refuses them
const dev = join(dir, 'dev');
const socket = join(dir, 'run', 'admin.sock');
const cfg = join(dir, 'issuer.yaml');

let proc: ChildProcess;
let out = '';
let front = '';
let health = '';
let adminTls = '';
let caPem = '';

async function waitFor(re: RegExp): Promise<RegExpExecArray> {
  for (;;) {
    const m = re.exec(out);
    if (m !== null) return m;
    if (proc.exitCode !== null) throw new Error(`issuer exited ${proc.exitCode}: ${out}`);
    await new Promise((r) => proc.stdout?.once('data', r));
  }
}

test.before(async () => {
  assert.is(await main(['issuer', 'dev-ca', '--dir', dev, '--trust-domain', TD], captureIo()), 0);
  mkdirSync(join(dir, 'run'), { mode: 0o755 });
  writeFileSync(
    cfg,
    `version: 2
trustDomain: ${TD}
listen: { host: 127.0.0.1, port: 0, certificate: ${dev}/tls.pem, key: ${dev}/tls.key }
ca: { certificate: ${dev}/ca.pem, key: ${dev}/ca.key }
storeDir: ${join(dir, 'store')}
health: { host: 127.0.0.1, port: 0 }
admin: { socket: ${socket}, listen: { host: 127.0.0.1, port: 0 } }
attestation:
  joinToken: { enabled: true }
log: { level: error }
`,
  );
  caPem = readFileSync(join(dev, 'ca.pem'), 'utf8');
  proc = spawn(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'runtime/cli/bin.ts'), 'issuer', '--config', cfg],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  proc.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  proc.stderr?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  front = (await waitFor(/listening on (https:\/\/\S+)/))[1] as string;
  adminTls = (await waitFor(/admin mTLS (\S+)/))[1] as string;
  health = (await waitFor(/health (http:\/\/\S+)/))[1] as string;
});

test.after(() => {
  if (proc.exitCode === null) proc.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

const cli = async (...args: string[]) => {
  const t = captureIo();
  const code = await main(['issuer', ...args], t);
  return { code, out: t.stdout.join('\n'), err: t.stderr.join('\n') };
};

function https(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  tls: { cert?: string; key?: string } = {},
): Promise<{ status: number; body: unknown; text: string }> {
  const payload = body === undefined ? Buffer.alloc(0) : Buffer.from(issuerCbor.encode(body));
  const u = new URL(path, base.startsWith('http') ? base : `https://${base}`);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method,
        ca: caPem,
        agent: false,
        ...tls,
        headers: { 'content-type': 'application/cbor', 'content-length': payload.length },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const buf = Buffer.concat(chunks);
          const type = String(res.headers['content-type'] ?? '');
          resolve({
            status: res.statusCode ?? 0,
            body: type.startsWith('application/cbor') && buf.length > 0 ? issuerCbor.decode(buf) : undefined,
            text: buf.toString('utf8'),
          });
        });
      },
    );
    req.on('error', reject);
    req.end(method === 'GET' ? undefined : payload);
  });
}

const httpGet = (path: string): Promise<{ status: number; text: string }> =>
  new Promise((resolve, reject) => {
    get(`${health}${path}`, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
    }).on('error', reject);
  });

const pem = (der: Uint8Array) => new X509Certificate(Buffer.from(der)).toString();
const keyPem = (k: KeyObject) => k.export({ format: 'pem', type: 'pkcs8' }) as string;
const code = (b: unknown) => (b as { error?: { code?: string } } | undefined)?.error?.code;

let gw: { id: IssuedIdentity; key: KeyObject; caKey: KeyObject } | undefined;

async function enroll(name: string) {
  const t = await cli('token', 'create', '--config', cfg, '--name', name, '--ttl', '10m');
  assert.is(t.code, 0, t.err);
  const begin = await https(front, 'POST', '/v1/attest/begin', { method: 'join-token', token: t.out });
  assert.is(begin.status, 200, begin.text);
  const k = keyAndCsr();
  const ca = keyAndCsr();
  const fin = await https(front, 'POST', '/v1/attest/finish', {
    method: 'join-token',
    sessionId: (begin.body as AttestBeginResponse).sessionId,
    csr: k.csr,
    caCsr: ca.csr,
  });
  assert.is(fin.status, 200, fin.text);
  return { id: fin.body as IssuedIdentity, key: k.key, caKey: ca.key };
}

test('the admin socket is 0600 and operator commands act on the running issuer', async () => {
  assert.is(statSync(socket).mode & 0o777, 0o600);
  gw = await enroll('gw-live');
  const tokens = await cli('token', 'create', '--socket', socket, '--name', 'gw-later');
  assert.is(tokens.code, 0, tokens.err);
  const listed = await cli('tokens', 'list', '--socket', socket);
  const rows = listed.out.split('\n').map((l) => JSON.parse(l));
  assert.equal(
    rows.map((r) => r.name),
    ['gw-later'],
    'the used token is gone, the new one listed, never the token itself',
  );
  assert.not.ok(listed.out.includes(tokens.out));
  const gws = await cli('gateways', 'list', '--config', cfg);
  assert.equal(
    gws.out.split('\n').map((l) => JSON.parse(l).name),
    ['gw-live'],
  );
  const show = await cli('gateway', 'show', '--config', cfg, '--name', 'gw-live');
  assert.is(JSON.parse(show.out).method, 'join-token');
  const missing = await cli('gateway', 'show', '--config', cfg, '--name', 'nope');
  assert.is(missing.code, 1);
  assert.match(missing.err, /ERR_ISSUER_NOT_FOUND/);
  const offline = await cli('disable', '--offline', '--config', cfg, '--name', 'gw-live');
  assert.is(offline.code, 1, 'the store of a running issuer is never opened');
  assert.match(offline.err, /ERR_ISSUER_NOT_RUNNING/);
});

test('revoke while running: the renewal is refused right after, and the audit says who', async () => {
  const g = gw as NonNullable<typeof gw>;
  const tls = { cert: pem(g.id.svidChain[0] as Uint8Array), key: keyPem(g.key) };
  const before = await https(front, 'POST', '/v1/renew/begin', {}, tls);
  assert.is(before.status, 200, before.text);
  const r = await cli('revoke', '--config', cfg, '--spiffe-id', `spiffe://${TD}/gateway/gw-live`);
  assert.is(r.code, 0, r.err);
  const after = await https(front, 'POST', '/v1/renew/begin', {}, tls);
  assert.is(after.status, 403);
  assert.is(code(after.body), 'ERR_ISSUER_REVOKED');
  const revs = await cli('revocations', 'list', '--config', cfg);
  assert.is(JSON.parse(revs.out).value, `spiffe://${TD}/gateway/gw-live`);
  assert.is(
    JSON.parse((await cli('gateway', 'show', '--config', cfg, '--name', 'gw-live')).out).revoked,
    true,
  );
  const tail = await cli('audit', 'tail', '--config', cfg, '--limit', '50');
  const events = tail.out.split('\n').map((l) => JSON.parse(l));
  const rev = events.find((e) => e.event === 'revoke');
  assert.is(rev?.by, 'local-socket');
  assert.ok(events.some((e) => e.event === 'refuse' && e.code === 'ERR_ISSUER_REVOKED'));
});

test('the admin socket refuses another uid (setpriv), and is reachable by it once loosened', () => {
  const probe = `require('node:http').request({socketPath:${JSON.stringify(socket)},path:'/v1/admin/gateways'},r=>{console.log('status',r.statusCode);r.resume()}).on('error',e=>console.log('error',e.code)).end()`;
  const asNobody = () =>
    spawnSync(
      'setpriv',
      ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, '-e', probe],
      {
        encoding: 'utf8',
      },
    );
  assert.match(asNobody().stdout, /error EACCES/);
  chmodSync(socket, 0o666);
  try {
    assert.match(asNobody().stdout, /status 200/, 'the control: only the mode kept it out');
  } finally {
    chmodSync(socket, 0o600);
  }
});

test('mTLS admin port: an operator certificate is admitted and audited by its ID; a gateway SVID and a device certificate are refused', async () => {
  const certs = join(dir, 'operators');
  const made = await cli(
    'operator',
    'create',
    '--config',
    cfg,
    '--name',
    'alice',
    '--ttl',
    '1h',
    '--out',
    certs,
  );
  assert.is(made.code, 0, made.err);
  assert.is(statSync(join(certs, 'alice.key')).mode & 0o777, 0o600);
  const asAlice = await cli(
    'disable',
    '--admin',
    adminTls,
    '--operator-cert',
    join(certs, 'alice.pem'),
    '--operator-key',
    join(certs, 'alice.key'),
    '--ca',
    join(dev, 'ca.pem'),
    '--name',
    'gw-other',
  );
  assert.is(asAlice.code, 0, asAlice.err);
  const events = (await cli('audit', '--config', cfg)).out.split('\n').map((l) => JSON.parse(l));
  assert.ok(
    events.some(
      (e) => e.event === 'disable' && e.gateway === 'gw-other' && e.by === `spiffe://${TD}/operator/alice`,
    ),
  );

  const g = await enroll('gw-2');
  const svid = { cert: pem(g.id.svidChain[0] as Uint8Array), key: keyPem(g.key) };
  const asGateway = await https(adminTls, 'GET', '/v1/admin/gateways', undefined, svid);
  assert.is(asGateway.status, 403);
  assert.is(JSON.parse(asGateway.text).error.code, 'ERR_ISSUER_ADMIN_FORBIDDEN');
  const dcaDer = g.id.deviceCaChain[0] as Uint8Array;
  const deviceKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const now = Date.now();
  const deviceDer = createSigner({
    certificate: dcaDer,
    privateKey: g.caKey,
    trustDomain: TD,
    random: cryptoRandom,
  }).sign({
    profile: 'svid',
    spiffeId: `spiffe://${TD}/gateway/gw-2/device/d1`,
    spki: deviceKey.publicKey.export({ format: 'der', type: 'spki' }),
    notBefore: now - 60_000,
    notAfter: now + 3_600_000,
  });
  const asDevice = await https(adminTls, 'GET', '/v1/admin/gateways', undefined, {
    cert: pem(deviceDer) + pem(dcaDer),
    key: keyPem(deviceKey.privateKey),
  });
  assert.is(asDevice.status, 403);
  assert.is(JSON.parse(asDevice.text).error.code, 'ERR_ISSUER_ADMIN_FORBIDDEN');
  const none = await https(adminTls, 'GET', '/v1/admin/gateways');
  assert.is(JSON.parse(none.text).error.code, 'ERR_ISSUER_ADMIN_FORBIDDEN');
  const refused = (await cli('audit', '--config', cfg)).out
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((e) => e.event === 'refuse' && e.code === 'ERR_ISSUER_ADMIN_FORBIDDEN');
  assert.is(refused.length, 3, 'each refused admin request is audited');
});

test('probes: healthz, readyz (503 with the reason while the CA key file is loosened), metrics parse', async () => {
  assert.equal(await httpGet('/healthz'), { status: 200, text: 'ok\n' });
  assert.equal(await httpGet('/readyz'), { status: 200, text: 'ready\n' });
  chmodSync(join(dev, 'ca.key'), 0o644);
  try {
    const r = await httpGet('/readyz');
    assert.is(r.status, 503);
    assert.match(r.text, /^ca-key: ERR_ISSUER_KEY_PERMISSIONS /m);
  } finally {
    chmodSync(join(dev, 'ca.key'), 0o600);
  }
  assert.is((await httpGet('/readyz')).status, 200);
  const m = await httpGet('/metrics');
  assert.is(m.status, 200);
  const lines = m.text.trimEnd().split('\n');
  for (const l of lines)
    if (!l.startsWith('#'))
      assert.match(
        l,
        /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-z_]+="(?:[^"\\]|\\.)*"(?:,[a-z_]+="(?:[^"\\]|\\.)*")*\})? (?:-?\d+(?:\.\d+)?(?:e[+-]?\d+)?|\+Inf)$/,
        l,
      );
  assert.ok(
    lines.includes('edgeward_issuer_requests_total{op="attest.finish",method="join-token",code="ok"} 2'),
    m.text,
  );
  assert.ok(
    lines.includes('edgeward_issuer_requests_total{op="renew.begin",method="",code="ERR_ISSUER_REVOKED"} 1'),
    m.text,
  );
  assert.ok(
    lines.some((l) =>
      l.startsWith('edgeward_issuer_request_duration_seconds_bucket{op="attest.finish",le="+Inf"} 2'),
    ),
  );
  assert.ok(lines.some((l) => /^edgeward_issuer_ca_not_after_seconds \d{10}$/.test(l)));
  assert.ok(lines.includes('edgeward_issuer_ready 1'));
});

test('SIGTERM drains: an in-flight request finishes, readyz says draining, new connections are refused, exit 0', async () => {
  const t = await cli('token', 'create', '--config', cfg, '--name', 'gw-drain');
  const body = Buffer.from(issuerCbor.encode({ method: 'join-token', token: t.out }));
  const u = new URL(front);
  const sock = connect({ host: u.hostname, port: Number(u.port), ca: caPem, servername: 'localhost' });
  await new Promise((r) => sock.once('secureConnect', r));
  let answer = '';
  sock.on('data', (c: Buffer) => {
    answer += c.toString('latin1');
  });
  const ended = new Promise((r) => sock.once('end', r));
  sock.write(
    `POST /v1/attest/begin HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/cbor\r\ncontent-length: ${body.length}\r\n\r\n`,
  );
  sock.write(body.subarray(0, 5));
  while (!/edgeward_issuer_in_flight_requests 1\n/.test((await httpGet('/metrics')).text));
  const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
  proc.kill('SIGTERM');
  let ready = await httpGet('/readyz');
  while (ready.status === 200) ready = await httpGet('/readyz');
  assert.equal(ready, { status: 503, text: 'draining: shutting down\n' });
  const refused = await https(front, 'GET', '/v1/bundle').then(
    () => 'answered',
    (e: NodeJS.ErrnoException) => e.code,
  );
  assert.is(refused, 'ECONNREFUSED');
  sock.write(body.subarray(5));
  await ended; // the server answers, then closes the connection (it is draining)
  assert.match(answer, /^HTTP\/1\.1 200 /, answer);
  assert.is(await exited, 0);
  assert.match(out, /edgeward issuer stopped\n/);
  const none = await cli('gateways', 'list', '--socket', socket);
  assert.is(none.code, 1);
  assert.match(none.err, /ERR_ISSUER_NOT_RUNNING/);
});

test.run();
