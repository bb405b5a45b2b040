/**
 * Fuzz: the agent's upstream client against a hostile issuer. A real HTTPS server on loopback
 * answers the HTTPS + CBOR client (runtime/upstream/client.ts) and the identity exchange
 * (runtime/agent/exchange.ts, join-token attestation) with what a broken or malicious issuer
 * sends: random, mutated, truncated and oversized bodies, wrong content types, every status code,
 * identities whose certificates are not for the CSR's key, expired chains, chains for another
 * SPIFFE ID or trust domain, a CA where a leaf belongs, and answers that never finish (a drip or
 * silence, cut by the client's timeout on the injected virtual clock). Every outcome must be a
 * success or a typed ERR_ code, never a crash or a hang (fast-check, seeded; see helpers/fuzz.ts).
 */
import 'reflect-metadata';
import { generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, encode } from 'cbor-x';
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { JoinTokenAttestor } from '../../attestors/join-token/attestor.ts';
import { exchange } from '../../runtime/agent/exchange.ts';
import { createDevIssuerFiles } from '../../runtime/issuer/dev.ts';
import { createRootCa } from '../../runtime/svid/authority.ts';
import { encodeBundle } from '../../runtime/svid/bundle.ts';
import { parseCsr } from '../../runtime/svid/csr.ts';
import { createSigner } from '../../runtime/svid/signer.ts';
import { httpsUpstream } from '../../runtime/upstream/client.ts';
import { CBOR_CONTENT_TYPE, PATHS } from '../../runtime/upstream/protocol.ts';
import type { UpstreamEndpoint } from '../../runtime/upstream/types.ts';
import { VirtualClock } from '../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../sim/random.ts';
import { corpus, expectTypedAsync, fuzz, mutated } from './helpers/fuzz.ts';

const TD = 'fleet.example';
const HOUR = 3_600_000;

interface Answer {
  status: number;
  type: string;
  body: Buffer;
  /** 'drip': headers and one byte, then silence; 'silent': no answer at all. */
  stall?: 'drip' | 'silent';
}

const dir = mkdtempSync(join(tmpdir(), 'edgeward-fuzz-upstream-'));
const now = Date.now();
// Test composition root: the TLS certificate must be valid for OpenSSL's real clock.
const clock = new VirtualClock(now);
const random = seededRandom('fuzz-upstream');
const dev = await createDevIssuerFiles(join(dir, 'issuer'), { trustDomain: TD, clock, random });
let answer: (path: string, body: Buffer) => Answer = () => ({
  status: 200,
  type: CBOR_CONTENT_TYPE,
  body: encode({}),
});
const stalled = new Set<import('node:http').ServerResponse>();
/** Called when the server stalls a response (call() waits for this or for the answer). */
let onStall = (): void => {};
const server: Server = createServer({ cert: dev.tls.cert, key: dev.tls.key }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const a = answer(req.url ?? '/', Buffer.concat(chunks));
    if (a.stall === 'silent') {
      stalled.add(res);
      onStall();
      return;
    }
    res.writeHead(a.status, { 'content-type': a.type });
    if (a.stall === 'drip') {
      res.write(a.body.subarray(0, 1));
      stalled.add(res);
      onStall();
      return;
    }
    res.end(a.body);
  });
});
server.listen(0, '127.0.0.1');
await new Promise((r) => server.once('listening', r));
const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
const TIMEOUT_MS = 5_000;
const upstream = httpsUpstream({
  endpoints: [url],
  ca: [new X509Certificate(dev.ca.certificate).toString()],
  clock,
  timeoutMs: TIMEOUT_MS,
});
const ep = upstream.endpoints[0] as UpstreamEndpoint;

/**
 * A call whose answer may never finish: once the server has stalled a response (its event), move
 * the virtual clock past the client's timeout; otherwise wait for the answer (a hang fails in
 * expectTypedAsync after 5 s real).
 */
async function call(fn: () => Promise<unknown>): Promise<string> {
  const stall = new Promise<'stalled'>((resolve) => {
    onStall = () => resolve('stalled');
  });
  let guard: NodeJS.Timeout | undefined;
  const hang = new Promise<'hang'>((resolve) => {
    guard = setTimeout(() => resolve('hang'), 5_000); // neither: expectTypedAsync reports the hang
  });
  const p = fn();
  const first = await Promise.race([
    p.then(
      () => 'settled' as const,
      () => 'settled' as const,
    ),
    stall,
    hang,
  ]);
  clearTimeout(guard);
  onStall = () => {};
  if (first === 'stalled') await clock.advance(TIMEOUT_MS);
  const out = await expectTypedAsync(() => p);
  for (const res of stalled) res.destroy();
  stalled.clear();
  return out;
}

const validBegin = encode({ sessionId: 's1', nonce: new Uint8Array(32), expiresAt: now + 60_000 });

test('transport: any status, content type and body gives a value or a typed code', async () => {
  const bodies = fc.oneof(
    fc.uint8Array({ maxLength: 512 }).map((b) => Buffer.from(b)),
    mutated(validBegin).map((b) => Buffer.from(b)),
    fc.integer({ min: 1, max: validBegin.length - 1 }).map((n) => validBegin.subarray(0, n)),
    fc.constant(Buffer.alloc(16 * 64 * 1024 + 10, 0x41)),
  );
  const answers = fc.record({
    status: fc.oneof(
      fc.constantFrom(200, 201, 204, 301, 400, 401, 403, 404, 409, 413, 415, 429, 500, 503),
      fc.integer({ min: 200, max: 599 }),
    ),
    type: fc.constantFrom(
      CBOR_CONTENT_TYPE,
      `${CBOR_CONTENT_TYPE}; x=1`,
      'application/json',
      'text/html',
      'application/octet-stream',
      '',
    ),
    body: bodies,
  });
  const seen = new Set<string>();
  await fuzz(
    'upstream-transport',
    fc.asyncProperty(answers, async (a) => {
      answer = () => a;
      seen.add(await call(() => ep.post(PATHS.attestBegin, { method: 'join-token', token: 'x' })));
    }),
    120,
  );
  assert.ok(seen.has('ERR_UPSTREAM_PROTOCOL'), [...seen].join(','));
  assert.ok(seen.has('ERR_UPSTREAM_REJECTED') && seen.has('ERR_UPSTREAM_UNAVAILABLE'), [...seen].join(','));
});

test('transport: a drip or a silent issuer is cut by the timeout on the injected clock', async () => {
  for (const stall of ['drip', 'silent'] as const) {
    answer = () => ({ status: 200, type: CBOR_CONTENT_TYPE, body: validBegin, stall });
    assert.is(await call(() => ep.post(PATHS.attestBegin, {})), 'ERR_UPSTREAM_UNREACHABLE', stall);
  }
});

// --- identities: what attest/finish answers, built for the CSRs the agent sent -------------

// The issuer's CA in these answers: valid from long before to long after the windows signed.
const caKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const ca = {
  certificate: createRootCa({
    trustDomain: TD,
    privateKey: caKey,
    notBefore: now - 10 * HOUR,
    notAfter: now + 48 * HOUR,
    random,
  }),
  privateKey: caKey,
};
const signer = createSigner({
  certificate: ca.certificate,
  privateKey: ca.privateKey,
  trustDomain: TD,
  random,
});
const gwId = `spiffe://${TD}/gateway/gw-1`;

type Twist =
  | 'valid'
  | 'leaf-not-for-csr'
  | 'ca-not-for-ca-csr'
  | 'expired'
  | 'not-yet-valid'
  | 'other-spiffe-id-in-cert'
  | 'device-id-claimed'
  | 'other-trust-domain'
  | 'leaf-is-ca'
  | 'chain-swapped'
  | 'garbage-der'
  | 'empty-chain'
  | 'bundle-garbage'
  | 'bundle-other-root';

function identity(twist: Twist, csr: Uint8Array, caCsr: Uint8Array): Record<string, unknown> {
  const spki = (d: Uint8Array): Uint8Array => parseCsr(d).spki;
  const stranger = (): Uint8Array => {
    const k: KeyObject = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    return k.export({ type: 'spki', format: 'der' });
  };
  const t0 = twist === 'expired' ? now - 3 * HOUR : twist === 'not-yet-valid' ? now + HOUR : now - 60_000;
  const id = twist === 'other-spiffe-id-in-cert' ? `spiffe://${TD}/gateway/gw-2` : gwId;
  const claimed =
    twist === 'device-id-claimed'
      ? `${gwId}/device/d1`
      : twist === 'other-trust-domain'
        ? 'spiffe://evil.example/gateway/gw-1'
        : gwId;
  const leaf = signer.sign({
    profile: twist === 'leaf-is-ca' ? 'device-ca' : 'svid',
    spiffeId: twist === 'device-id-claimed' ? claimed : id,
    spki: twist === 'leaf-not-for-csr' ? stranger() : spki(csr),
    notBefore: t0,
    notAfter: t0 + HOUR,
  });
  const dca = signer.sign({
    profile: 'device-ca',
    spiffeId: gwId,
    spki: twist === 'ca-not-for-ca-csr' ? stranger() : spki(caCsr),
    notBefore: t0,
    notAfter: t0 + 24 * HOUR,
  });
  let svidChain: Uint8Array[] = [leaf];
  let deviceCaChain: Uint8Array[] = [dca];
  if (twist === 'chain-swapped') [svidChain, deviceCaChain] = [deviceCaChain, svidChain];
  if (twist === 'garbage-der') svidChain = [Buffer.from('not a certificate')];
  if (twist === 'empty-chain') svidChain = [];
  const roots = twist === 'bundle-other-root' ? [] : [ca.certificate];
  return {
    spiffeId: claimed,
    svidChain,
    deviceCaChain,
    bundle: twist === 'bundle-garbage' ? '{"keys":[{"kty":"EC"}]}' : encodeBundle({ roots, sequence: 1 }),
    bundleSequence: 1,
    nextNonce: new Uint8Array(32),
  };
}

const tokenFile = join(dir, 'token');
writeFileSync(tokenFile, 'fuzz-join-token-0123456789', { mode: 0o600 });
const attestor = new JoinTokenAttestor({ tokenFile });
await attestor.start();
const deps = {
  attestor,
  trustDomain: TD,
  newKey: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
  now: () => now,
};

function issuerAnswering(build: (finish: Record<string, Uint8Array>) => Answer): void {
  answer = (path, body) => {
    if (path.endsWith(PATHS.attestBegin)) return { status: 200, type: CBOR_CONTENT_TYPE, body: validBegin };
    return build(decode(body) as Record<string, Uint8Array>);
  };
}

test('identities: every twisted answer is refused with ERR_UPSTREAM_PROTOCOL; the honest one is taken', async () => {
  const twists: Twist[] = [
    'leaf-not-for-csr',
    'ca-not-for-ca-csr',
    'expired',
    'not-yet-valid',
    'other-spiffe-id-in-cert',
    'device-id-claimed',
    'other-trust-domain',
    'leaf-is-ca',
    'chain-swapped',
    'garbage-der',
    'empty-chain',
    'bundle-garbage',
    'bundle-other-root',
  ];
  for (const twist of twists) {
    issuerAnswering((f) => ({
      status: 200,
      type: CBOR_CONTENT_TYPE,
      body: encode(identity(twist, f.csr as Uint8Array, f.caCsr as Uint8Array)),
    }));
    assert.is(await call(() => exchange({ mode: 'attest' }, ep, deps)), 'ERR_UPSTREAM_PROTOCOL', twist);
  }
  issuerAnswering((f) => ({
    status: 200,
    type: CBOR_CONTENT_TYPE,
    body: encode(identity('valid', f.csr as Uint8Array, f.caCsr as Uint8Array)),
  }));
  const got = await exchange({ mode: 'attest' }, ep, deps);
  assert.is(got.live.svid.spiffeId, gwId);
  assert.is(new X509Certificate(got.record.svidChain[0] as Uint8Array).ca, false);
});

test('identities: mutated honest answers and arbitrary maps give typed codes only', async () => {
  const shapes = fc.oneof(
    fc.integer({ min: 0, max: 1_000_000 }).map((salt) => ({ salt, kind: 'mutate' as const })),
    fc
      .dictionary(
        fc.constantFrom('spiffeId', 'svidChain', 'deviceCaChain', 'bundle', 'nextNonce', 'x'),
        fc.anything(),
      )
      .map((map) => ({ map, kind: 'map' as const })),
  );
  await fuzz(
    'upstream-identity',
    fc.asyncProperty(shapes, fc.integer({ min: 0, max: 2 ** 31 }), async (shape, seed) => {
      issuerAnswering((f) => {
        if (shape.kind === 'map') return { status: 200, type: CBOR_CONTENT_TYPE, body: encode(shape.map) };
        const honest = Buffer.from(encode(identity('valid', f.csr as Uint8Array, f.caCsr as Uint8Array)));
        const [bytes] = fc.sample(mutated(honest), { seed, numRuns: 1 });
        return { status: 200, type: CBOR_CONTENT_TYPE, body: Buffer.from(bytes as Uint8Array) };
      });
      await call(() => exchange({ mode: 'attest' }, ep, deps));
    }),
    40,
  );
});

test('corpus: kept hostile answers replay to typed codes', async () => {
  for (const entry of corpus('upstream')) {
    const body = Buffer.from(entry.hex ?? '', 'hex');
    const e = entry as typeof entry & { status?: number; type?: string; expect?: string };
    answer = () => ({ status: e.status ?? 200, type: e.type ?? CBOR_CONTENT_TYPE, body });
    assert.is(await call(() => ep.post(PATHS.attestBegin, {})), e.expect, e.name);
  }
});

test.after(async () => {
  await attestor.close();
  for (const res of stalled) res.destroy();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

test.run();
