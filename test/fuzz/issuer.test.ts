/**
 * Fuzz: the issuer's front door (runtime/issuer/http.ts, validate.ts, issuer.ts) with hostile
 * request bodies.
 * - Over real HTTPS on 127.0.0.1: valid CBOR request bodies mutated byte-wise (bit flips, length
 *   lies in CBOR heads, truncation, nesting) on every POST route, and arbitrary query strings.
 *   Every answer must be a CBOR error body with an ERR_ code and a 4xx status (never a 500, never
 *   a dropped connection), and the issuer must still enroll a gateway afterwards.
 * - In process: decoded bodies with fields replaced by arbitrary CBOR values (wrong types, huge
 *   strings, nested maps, prototype keys) fed to attestBegin / attestFinish / renewFinish /
 *   addManifest: a typed refusal or a valid answer.
 */
import { rmSync } from 'node:fs';
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { issuerCbor } from '../../runtime/issuer/store.ts';
import { type AttestBeginResponse, PATHS } from '../../runtime/upstream/protocol.ts';
import { errorCode, type Harness, harness, keyAndCsr } from '../runtime/issuer/harness.ts';
import { corpus, entryBytes, expectTypedAsync, fuzz, mutated } from './helpers/fuzz.ts';

let h: Harness;
test.before(async () => {
  h = await harness(
    { joinToken: { enabled: true } },
    { rateLimit: { perAddress: 1_000_000, perGateway: 1_000_000, windowMs: 60_000 } },
  );
});
test.after(async () => {
  await h.running.close();
  rmSync(h.dir, { recursive: true, force: true });
});

const enc = (v: unknown): Buffer => Buffer.from(issuerCbor.encode(v));
const svid = keyAndCsr();
const ca = keyAndCsr();

async function enrollOnce(name: string): Promise<void> {
  const token = await h.running.issuer.createJoinToken(name, 600_000);
  const begin = await h.call('POST', PATHS.attestBegin, { method: 'join-token', token });
  assert.is(begin.status, 200, begin.text);
  const sessionId = (begin.body as AttestBeginResponse).sessionId;
  const fin = await h.call('POST', PATHS.attestFinish, {
    method: 'join-token',
    sessionId,
    csr: svid.csr,
    caCsr: ca.csr,
  });
  assert.is(fin.status, 200, fin.text);
}

function seeds(): { path: string; body: Buffer }[] {
  return [
    { path: PATHS.attestBegin, body: enc({ method: 'join-token', token: 'x'.repeat(40) }) },
    {
      path: PATHS.attestBegin,
      body: enc({ method: 'tpm', ekPublic: Buffer.alloc(300, 1), akPublic: Buffer.alloc(90, 2) }),
    },
    { path: PATHS.attestBegin, body: enc({ method: 'x509pop', chain: [Buffer.alloc(400, 3)] }) },
    {
      path: PATHS.attestFinish,
      body: enc({ method: 'join-token', sessionId: 'abc', csr: svid.csr, caCsr: ca.csr }),
    },
    { path: PATHS.renewFinish, body: enc({ sessionId: 'abc', csr: svid.csr, caCsr: ca.csr }) },
    { path: PATHS.manifests, body: enc({ manifest: '{"format":"edgeward-firmware-manifest/1"}' }) },
  ];
}

test('valid enrollment works before fuzzing', async () => {
  await enrollOnce('gw-before');
});

test('HTTPS: mutated CBOR bodies on every POST route get a typed 4xx error body', async () => {
  const all = seeds();
  const arb = fc
    .nat({ max: all.length - 1 })
    .chain((i) =>
      mutated((all[i] as { body: Buffer }).body).map((b) => ({ path: (all[i] as { path: string }).path, b })),
    );
  await fuzz(
    'issuer-http',
    fc.asyncProperty(arb, async ({ path, b }) => {
      const res = await h.call('POST', path, undefined, { raw: b });
      const code = errorCode(res.body);
      assert.ok(
        res.status >= 400 && res.status < 500,
        `${path}: status ${res.status} ${res.text.slice(0, 200)}`,
      );
      assert.ok(code?.startsWith('ERR_'), `${path}: error code ${String(code)}`);
    }),
    150,
  );
});

test('HTTPS: hostile query strings and content types are refused with typed codes', async () => {
  await fuzz(
    'issuer-query',
    fc.asyncProperty(
      fc.string({ maxLength: 30 }),
      fc.constantFrom(
        'application/json',
        'text/plain',
        '',
        'application/cbor; charset=x',
        'APPLICATION/CBOR',
      ),
      async (since, type) => {
        const q = await h.call('GET', `${PATHS.revocations}?since=${encodeURIComponent(since)}`);
        assert.ok(
          q.status === 200 || errorCode(q.body) === 'ERR_ISSUER_BAD_REQUEST',
          `since=${since}: ${q.status}`,
        );
        const r = await h.call(
          'POST',
          PATHS.attestBegin,
          { method: 'join-token', token: 'y'.repeat(20) },
          { contentType: type },
        );
        assert.ok(r.status >= 400 && r.status < 500, `${type}: ${r.status}`);
        assert.ok(errorCode(r.body)?.startsWith('ERR_'));
      },
    ),
    60,
  );
});

/** A CBOR-encodable hostile value: wrong types, big strings, nested maps and arrays, bytes. */
const hostileValue = fc.oneof(
  fc.constantFrom(null, undefined, true, 0, -1, 2 ** 53, Number.NaN, '', 'tpm', 'join-token', 'x509pop'),
  fc.string({ maxLength: 300 }),
  fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
  fc.array(
    fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)),
    { maxLength: 30 },
  ),
  fc.dictionary(fc.constantFrom('__proto__', 'constructor', 'method', 'a'), fc.jsonValue({ maxDepth: 2 })),
  fc.jsonValue({ maxDepth: 4 }),
);

test('in process: fields replaced by hostile values are refused with typed codes', async () => {
  const issuer = h.running.issuer;
  const ctx = { address: '127.0.0.1' };
  const base: Record<string, Record<string, unknown>> = {
    begin: { method: 'join-token', token: 'z'.repeat(30) },
    finish: { method: 'join-token', sessionId: 's', csr: svid.csr, caCsr: ca.csr },
    renew: { sessionId: 's', csr: svid.csr, caCsr: ca.csr, quote: Buffer.alloc(4), pcrValues: [] },
    manifest: { manifest: 'x' },
  };
  const fields = fc.constantFrom(
    'method',
    'token',
    'sessionId',
    'csr',
    'caCsr',
    'quote',
    'pcrValues',
    'signature',
    'chain',
    'ekPublic',
    'akPublic',
    'manifest',
  );
  await fuzz(
    'issuer-shape',
    fc.asyncProperty(
      fc.constantFrom('begin', 'finish', 'renew', 'manifest'),
      fc.array(fc.tuple(fields, hostileValue), { minLength: 1, maxLength: 3 }),
      fc.boolean(),
      async (route, edits, wholeBody) => {
        const body: unknown = wholeBody
          ? (edits[0] as [string, unknown])[1]
          : Object.assign({ ...base[route] }, Object.fromEntries(edits));
        // Through the wire codec, as the HTTP layer would hand it over.
        const decoded = issuerCbor.decode(enc(body));
        const out = await expectTypedAsync(() =>
          route === 'begin'
            ? issuer.attestBegin(decoded, ctx)
            : route === 'finish'
              ? issuer.attestFinish(decoded, ctx)
              : route === 'renew'
                ? issuer.renewFinish(decoded, ctx)
                : issuer.addManifest(decoded, ctx),
        );
        if (out === 'ok') assert.is(route, 'begin', `${route} accepted a hostile body`);
      },
    ),
    300,
  );
});

test('corpus replays over HTTPS with its recorded outcomes', async () => {
  for (const e of corpus('issuer')) {
    const [, path] = e.name.split(':');
    const res = await h.call('POST', path ?? '/', undefined, { raw: entryBytes(e) });
    assert.is(errorCode(res.body), e.expect, `${e.name}: ${e.note} (status ${res.status})`);
  }
});

test('the issuer still enrolls a gateway after the fuzzing', async () => {
  await enrollOnce('gw-after');
});

test.run();
