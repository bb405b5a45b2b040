/**
 * The delegated CA's name constraints, checked with the real OpenSSL CLI (`openssl verify` with
 * the delegated CA as `-untrusted`, the issuer root as `-CAfile`): a server leaf under the CA with
 * the DNS/IP names the issuer admitted verifies, one with any other host name or address does
 * not; device SVIDs (URI SAN only) verify, including a device id with a dot, which OpenSSL would
 * otherwise read as a host name from the CN (such leaves have an empty subject and a critical SAN).
 */
import { execFileSync } from 'node:child_process';
import { type KeyObject, X509Certificate } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { verifyX509Svid } from '../../../runtime/spiffe/verify.ts';
import { createSigner, spkiOf } from '../../../runtime/svid/signer.ts';
import type { AttestBeginResponse, IssuedIdentity } from '../../../runtime/upstream/protocol.ts';
import { seededRandom } from '../../../sim/random.ts';
import { type Harness, harness, keyAndCsr, TD } from './harness.ts';

const random = seededRandom('name-constraints');
let h: Harness;
test.before(async () => {
  h = await harness({ joinToken: { enabled: true } });
});
test.after(async () => {
  await h.running.close();
  rmSync(h.dir, { recursive: true, force: true });
});

const pem = (der: Uint8Array): string => new X509Certificate(Buffer.from(der)).toString();

async function enroll(name: string, serverNames?: string[]): Promise<{ ca: Uint8Array; caKey: KeyObject }> {
  const token = await h.running.issuer.createJoinToken(name, 600_000);
  const b = (await h.call('POST', '/v1/attest/begin', { method: 'join-token', token }))
    .body as AttestBeginResponse;
  const ca = keyAndCsr();
  const fin = await h.call('POST', '/v1/attest/finish', {
    method: 'join-token',
    sessionId: b.sessionId,
    csr: keyAndCsr().csr,
    caCsr: ca.csr,
    ...(serverNames === undefined ? {} : { serverNames }),
  });
  assert.is(fin.status, 200, fin.text);
  return { ca: (fin.body as IssuedIdentity).deviceCaChain[0] as Uint8Array, caKey: ca.key };
}

/** `openssl verify` of `leaf` under the delegated CA: 'OK' or OpenSSL's error line. */
function opensslVerify(ca: Uint8Array, leaf: Uint8Array, name: string): string {
  const f = (n: string, der: Uint8Array) => {
    const p = join(h.dir, `${name}-${n}.pem`);
    writeFileSync(p, pem(der));
    return p;
  };
  const root = join(h.dir, 'root.pem');
  writeFileSync(root, h.caPem);
  const at = String(Math.floor(h.clock.now() / 1000));
  try {
    const out = execFileSync(
      'openssl',
      ['verify', '-attime', at, '-CAfile', root, '-untrusted', f('ca', ca), f('leaf', leaf)],
      { encoding: 'utf8', stdio: 'pipe' },
    );
    return out.trim().endsWith(': OK') ? 'OK' : out;
  } catch (err) {
    const text = String((err as { stderr?: string }).stderr ?? err);
    return /error \d+ at \d+ depth lookup: (.*)/.exec(text)?.[1] ?? text;
  }
}

function signers(ca: Uint8Array, caKey: KeyObject, gateway: string) {
  const base = { certificate: ca, privateKey: caKey, trustDomain: TD, random, profiles: ['svid' as const] };
  const now = h.clock.now();
  const server = createSigner(base);
  const devices = createSigner({ ...base, scope: `spiffe://${TD}/gateway/${gateway}/device` });
  const leaf = (s: typeof server, spiffeId: string, serverNames: string[] = []) =>
    s.sign({
      profile: 'svid',
      spiffeId,
      spki: spkiOf(keyAndCsr().key),
      notBefore: now,
      notAfter: now + 600_000,
      serverNames,
    });
  return {
    server: (names: string[]) => leaf(server, `spiffe://${TD}/gateway/${gateway}`, names),
    device: (id: string) => leaf(devices, `spiffe://${TD}/gateway/${gateway}/device/${id}`),
  };
}

function constraintsText(ca: Uint8Array): string {
  const p = join(h.dir, 'nc.pem');
  writeFileSync(p, pem(ca));
  return execFileSync('openssl', ['x509', '-in', p, '-noout', '-ext', 'nameConstraints'], {
    encoding: 'utf8',
  });
}

test('admitted names: the CA permits exactly them; leaves with other names fail openssl verify', async () => {
  const { ca, caKey } = await enroll('gw-nc', ['gw1.local', '192.168.1.10']);
  const text = constraintsText(ca);
  assert.match(text, /critical/);
  const [permitted = '', excluded = ''] = text.split('Excluded:');
  assert.equal(
    [...permitted.matchAll(/(URI|DNS|IP):(\S+)/g)].map((m) => `${m[1]}:${m[2]}`),
    ['URI:fleet.example', 'DNS:gw1.local', 'IP:192.168.1.10/255.255.255.255'],
  );
  assert.match(excluded, /IP:0:0:0:0:0:0:0:0\/0:0:0:0:0:0:0:0/, 'no IPv6 admitted: all IPv6 excluded');
  const s = signers(ca, caKey, 'gw-nc');
  assert.is(opensslVerify(ca, s.server(['gw1.local', '192.168.1.10']), 'ok'), 'OK');
  assert.is(opensslVerify(ca, s.server(['gw1.local']), 'ok-dns'), 'OK');
  assert.is(opensslVerify(ca, s.server(['other.local']), 'other'), 'permitted subtree violation');
  assert.is(
    opensslVerify(ca, s.server(['gw1.local', 'evil.example.com']), 'mixed'),
    'permitted subtree violation',
  );
  assert.is(opensslVerify(ca, s.server(['192.168.1.11']), 'ip'), 'permitted subtree violation');
  // An IPv6 address matches no permitted iPAddress subtree (and all of IPv6 is excluded too).
  assert.is(opensslVerify(ca, s.server(['::1']), 'ip6'), 'permitted subtree violation');
  // RFC 5280 §4.2.1.10: a DNS constraint also permits names below it (stated, not hidden).
  assert.is(opensslVerify(ca, s.server(['x.gw1.local']), 'sub'), 'OK');
  // Device SVIDs (URI SAN only) verify, also with a dotted id.
  assert.is(opensslVerify(ca, s.device('dev-1'), 'dev'), 'OK');
  assert.is(opensslVerify(ca, s.device('a.b'), 'dotted'), 'OK');
  assert.is(opensslVerify(ca, s.device('sensor.kitchen.1'), 'dotted3'), 'OK');
});

test('no admitted names: every DNS name and address is excluded; device SVIDs still verify', async () => {
  const { ca, caKey } = await enroll('gw-none');
  const text = constraintsText(ca);
  assert.match(
    text,
    /Permitted:\s+URI:fleet\.example\s+Excluded:\s+DNS:\s+IP:0\.0\.0\.0\/0\.0\.0\.0\s+IP:0:0:0:0:0:0:0:0\/0:0:0:0:0:0:0:0/,
  );
  const s = signers(ca, caKey, 'gw-none');
  assert.is(opensslVerify(ca, s.server(['localhost']), 'dns'), 'excluded subtree violation');
  assert.is(opensslVerify(ca, s.server(['127.0.0.1']), 'ip'), 'excluded subtree violation');
  assert.is(opensslVerify(ca, s.server([]), 'uri-only'), 'OK');
  assert.is(opensslVerify(ca, s.device('dev-1'), 'dev'), 'OK');
  assert.is(opensslVerify(ca, s.device('a.b'), 'dotted'), 'OK');
});

test('a dotted device id: empty subject, critical URI SAN, and the SPIFFE verifier accepts it; others keep CN', async () => {
  const { ca, caKey } = await enroll('gw-dot', ['gw.local']);
  const s = signers(ca, caKey, 'gw-dot');
  const dotted = new X509Certificate(s.device('a.b'));
  assert.is(dotted.subject ?? '', '', 'empty subject');
  const plain = new X509Certificate(s.device('plain'));
  assert.is(plain.subject, 'CN=plain');
  const text = execFileSync('openssl', ['x509', '-noout', '-ext', 'subjectAltName'], {
    input: dotted.toString(),
    encoding: 'utf8',
  });
  assert.match(
    text,
    /Subject Alternative Name: critical\s+URI:spiffe:\/\/fleet\.example\/gateway\/gw-dot\/device\/a\.b/,
  );
  const v = verifyX509Svid([dotted, new X509Certificate(Buffer.from(ca))], {
    now: h.clock.now(),
    bundle: { trustDomain: TD, roots: [new X509Certificate(h.caPem)], sequence: 1 },
  });
  assert.is(v.spiffeId, `spiffe://${TD}/gateway/gw-dot/device/a.b`);
});

test.run();
