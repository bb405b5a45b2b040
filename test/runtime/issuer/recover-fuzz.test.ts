/**
 * Fuzz the new routes (`/v1/recover/begin`, `/v1/recover/finish`, `/v1/devices/issued`) with
 * hostile bodies: over real HTTPS, valid CBOR bodies mutated byte-wise must get a typed answer
 * (200, or a 4xx with an ERR_ code — never a 500 or a dropped connection); in process, fields
 * replaced by hostile values must end in a typed refusal or a valid answer, never an untyped
 * error or ERR_ISSUER_INTERNAL. The gateway still recovers afterwards.
 */
import { sign } from 'node:crypto';
import { rmSync } from 'node:fs';
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { issuerCbor } from '../../../runtime/issuer/store.ts';
import { parseCsr } from '../../../runtime/svid/csr.ts';
import { caPopSignedData } from '../../../runtime/svid/pop.ts';
import {
  type AttestBeginResponse,
  type IssuedIdentity,
  PATHS,
  type RecoverBeginResponse,
} from '../../../runtime/upstream/protocol.ts';
import { expectTypedAsync, fuzz, mutated } from '../../fuzz/helpers/fuzz.ts';
import { errorCode, type Harness, harness, keyAndCsr, TD } from './harness.ts';

let h: Harness;
const svid = keyAndCsr();
const ca = keyAndCsr();
let id: IssuedIdentity;
test.before(async () => {
  h = await harness(
    { joinToken: { enabled: true } },
    { rateLimit: { perAddress: 1_000_000, perGateway: 1_000_000, windowMs: 60_000 } },
  );
  const token = await h.running.issuer.createJoinToken('gw-fz', 600_000);
  const b = (await h.call('POST', PATHS.attestBegin, { method: 'join-token', token }))
    .body as AttestBeginResponse;
  const fin = await h.call('POST', PATHS.attestFinish, {
    method: 'join-token',
    sessionId: b.sessionId,
    csr: svid.csr,
    caCsr: ca.csr,
  });
  assert.is(fin.status, 200, fin.text);
  id = fin.body as IssuedIdentity;
});
test.after(async () => {
  await h.running.close();
  rmSync(h.dir, { recursive: true, force: true });
});

const enc = (v: unknown): Buffer => Buffer.from(issuerCbor.encode(v));
const caDer = () => id.deviceCaChain[0] as Uint8Array;
const peer = () => ({ cert: id.svidChain[0] as Uint8Array, key: svid.key });

async function finishBody(): Promise<Record<string, unknown>> {
  const b = (await h.call('POST', PATHS.recoverBegin, { caChain: [caDer()] })).body as RecoverBeginResponse;
  const k = keyAndCsr();
  const spki = parseCsr(k.csr).spki;
  return {
    sessionId: b.sessionId,
    csr: k.csr,
    caSignature: sign('sha256', caPopSignedData(b.nonce, spki), { key: ca.key, dsaEncoding: 'der' }),
  };
}

const entry = {
  spiffeId: `spiffe://${TD}/gateway/gw-fz/device/d1`,
  serial: '4abc',
  notBefore: 1,
  notAfter: 4_000_000_000_000,
  issuedAt: 1,
};

test('HTTPS: mutated bodies on the recovery and issuance-log routes get typed answers, never a 500', async () => {
  const seeds = [
    { path: PATHS.recoverBegin, body: enc({ caChain: [caDer()] }) },
    { path: PATHS.recoverFinish, body: enc(await finishBody()) },
    { path: PATHS.devicesIssued, body: enc({ entries: [entry, { ...entry, serial: '4abd' }] }) },
  ];
  const arb = fc.nat({ max: seeds.length - 1 }).chain((i) =>
    mutated((seeds[i] as { body: Buffer }).body).map((b) => ({
      path: (seeds[i] as { path: string }).path,
      b,
    })),
  );
  await fuzz(
    'issuer-recover-http',
    fc.asyncProperty(arb, async ({ path, b }) => {
      const res = await h.call('POST', path, undefined, {
        raw: b,
        ...(path === PATHS.devicesIssued ? peer() : {}),
      });
      if (res.status === 200) return;
      assert.ok(
        res.status >= 400 && res.status < 500,
        `${path}: status ${res.status} ${res.text.slice(0, 200)}`,
      );
      assert.ok(errorCode(res.body)?.startsWith('ERR_'), `${path}: ${res.text.slice(0, 200)}`);
    }),
    120,
  );
});

const hostile = fc.oneof(
  fc.constantFrom(null, undefined, true, 0, -1, 2 ** 53, Number.NaN, '', 'x'),
  fc.string({ maxLength: 200 }),
  fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
  fc.array(
    fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)),
    { maxLength: 6 },
  ),
  fc.dictionary(
    fc.constantFrom('__proto__', 'constructor', 'spiffeId', 'serial'),
    fc.jsonValue({ maxDepth: 2 }),
  ),
  fc.jsonValue({ maxDepth: 3 }),
);

test('in process: hostile fields are refused with typed codes (never ERR_ISSUER_INTERNAL)', async () => {
  const issuer = h.running.issuer;
  const ctx = { address: '127.0.0.1' };
  const mtls = { ...ctx, peerCertificate: id.svidChain[0] as Uint8Array };
  const finish = await finishBody();
  const bases: Record<string, Record<string, unknown>> = {
    begin: { caChain: [caDer()] },
    finish,
    devices: { entries: [entry] },
    entry: entry,
  };
  await fuzz(
    'issuer-recover-shape',
    fc.asyncProperty(
      fc.constantFrom('begin', 'finish', 'devices', 'entry'),
      fc.array(
        fc.tuple(
          fc.constantFrom(
            'caChain',
            'sessionId',
            'csr',
            'caCsr',
            'caSignature',
            'quote',
            'pcrValues',
            'serverNames',
            'entries',
            'spiffeId',
            'serial',
            'notBefore',
            'notAfter',
            'issuedAt',
          ),
          hostile,
        ),
        { minLength: 1, maxLength: 3 },
      ),
      async (route, edits) => {
        const edited = Object.assign({ ...bases[route] }, Object.fromEntries(edits));
        const body = issuerCbor.decode(enc(route === 'entry' ? { entries: [edited] } : edited));
        const out = await expectTypedAsync(() =>
          route === 'begin'
            ? issuer.recoverBegin(body, ctx)
            : route === 'finish'
              ? issuer.recoverFinish(body, ctx)
              : issuer.devicesIssued(body, mtls),
        );
        assert.is.not(out, 'ERR_ISSUER_INTERNAL');
      },
    ),
    300,
  );
});

test('the gateway still recovers after the fuzzing', async () => {
  const r = await h.call('POST', PATHS.recoverFinish, await finishBody());
  assert.is(r.status, 200, r.text);
  assert.is((r.body as IssuedIdentity).spiffeId, `spiffe://${TD}/gateway/gw-fz`);
});

test.run();
