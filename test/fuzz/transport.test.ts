/**
 * Fuzz: what devices send the gateway's broker, over real sockets (transport/).
 * - Enrollment listener (EST over HTTPS): whole simpleenroll / simplereenroll requests mutated
 *   (request line, headers, lengths, base64, the CSR inside); the answer is a refusal (an HTTP
 *   status other than 200, with a `CODE: reason` body when it has one) or a closed connection —
 *   never a hang, never a crash, never a certificate — and a real token enrollment still works
 *   afterwards.
 * - Renewal over MQTT (CBOR on `$edgeward/renew/<id>`): requests with mutated CSRs get an error
 *   reply with an ERR_ code (or a valid chain); raw mutated payloads are dropped; the broker keeps
 *   serving and a valid renewal is answered at the end.
 * - In process: the EST body decoders (transport/enroll/pkcs7.ts, csr-identity.ts) and the
 *   renewal message decoder (mqtt/reserved.ts) on arbitrary input.
 */
import { generateKeyPairSync } from 'node:crypto';
import { connect } from 'node:tls';
import { encode } from 'cbor-x';
import fc from 'fast-check';
import type { MqttClient } from 'mqtt';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createCsr } from '../../runtime/svid/csr.ts';
import { assertCsrNames } from '../../transport/enroll/csr-identity.ts';
import { enroll } from '../../transport/enroll/est-client.ts';
import { base64Lines, decodeBase64Body, parseCertsOnly } from '../../transport/enroll/pkcs7.ts';
import { asRenewRequest, decodeCbor, RENEW_PREFIX, REPLY_PREFIX } from '../../transport/mqtt/reserved.ts';
import { type Rig, rig } from '../transport/setup.ts';
import { expectTyped, fuzz, mutated } from './helpers/fuzz.ts';

let r: Rig;
let device: MqttClient;
const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const csr = createCsr(key);
/** An HTTP/1.1 EST request as a client writes it. */
const httpRequest = (op: string, headers: string, body: string): Buffer =>
  Buffer.from(
    `POST /.well-known/est/${op} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/pkcs10\r\n${headers}` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );

test.before(async () => {
  try {
    r = await rig({ limits: { enrollPerMinute: 1_000_000 } });
    const dev = await r.pki.device('fuzz-1');
    device = await r.connect(dev);
    await device.subscribeAsync(`${REPLY_PREFIX}fuzz-1`, { qos: 1 });
  } catch (err) {
    console.error('set-up failed:', err); // uvu reports a failing hook without its reason
    throw err;
  }
});
test.after(async () => {
  await r.close();
});

/** Send raw bytes to the enrollment listener; collect everything until it closes. */
function sendEnrollment(bytes: Buffer): Promise<Buffer> {
  const at = r.broker.addresses.enrollment as { host: string; port: number };
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect({ host: at.host, port: at.port, rejectUnauthorized: false }, () => s.end(bytes));
    const watchdog = setTimeout(() => {
      s.destroy();
      reject(new Error('hang: the enrollment listener neither answered nor closed within 5 s'));
    }, 5_000);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(watchdog);
      resolve(Buffer.concat(chunks));
    });
  });
}

test('enrollment: mutated EST requests get a refusal with its code or a close, never a hang or a certificate', async () => {
  const body = base64Lines(csr);
  const basic = `Authorization: Basic ${Buffer.from('fuzz-2:ewt1.c2Vuc29y.YWJjZGVm').toString('base64')}\r\n`;
  const seeds = [httpRequest('simpleenroll', basic, body), httpRequest('simplereenroll', '', body)];
  await fuzz(
    'est-requests',
    fc.asyncProperty(mutated(...seeds), async (bytes) => {
      const text = (await sendEnrollment(bytes)).toString('latin1');
      if (text.length === 0) return; // closed without an answer
      const m = /^HTTP\/1\.1 (\d{3}) /.exec(text);
      assert.ok(m !== null, `not an HTTP answer: ${text.slice(0, 80)}`);
      assert.is.not(m?.[1], '200', 'a mutated request enrolled a device');
      const answer = text.slice(text.indexOf('\r\n\r\n') + 4);
      if (answer.length > 0) assert.match(answer, /^ERR_[A-Z0-9_]+: /);
    }),
    80,
  );
});

test('renewal: mutated CSRs get a typed error reply; raw garbage is dropped; the broker keeps serving', async () => {
  const replies = new Map<string, (v: unknown) => void>();
  device.on('message', (_t, payload) => {
    const v = decodeCbor(payload) as { id?: string } | undefined;
    if (v?.id !== undefined) replies.get(v.id)?.(v);
  });
  let n = 0;
  const ask = (body: unknown, id: string): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const watchdog = setTimeout(() => reject(new Error(`hang: no renewal reply for ${id}`)), 5_000);
      replies.set(id, (v) => {
        clearTimeout(watchdog);
        replies.delete(id);
        resolve(v);
      });
      device.publish(`${RENEW_PREFIX}fuzz-1`, encode(body), { qos: 1 });
    });
  await fuzz(
    'renew-payloads',
    fc.asyncProperty(mutated(csr), mutated(encode({ id: 'x', csr })), async (badCsr, garbage) => {
      await device.publishAsync(`${RENEW_PREFIX}fuzz-1`, garbage, { qos: 1 });
      const id = `r${n++}`;
      const reply = (await ask({ id, csr: badCsr }, id)) as { error?: { code: string }; chain?: unknown[] };
      if (reply.error !== undefined) assert.match(reply.error.code, /^ERR_[A-Z0-9_]+$/);
      else assert.ok(Array.isArray(reply.chain) && reply.chain.length > 0);
    }),
    80,
  );
  const ok = (await ask({ id: 'final', csr }, 'final')) as { chain?: unknown[] };
  assert.ok(Array.isArray(ok.chain) && ok.chain.length > 0, 'a valid renewal after the fuzzing');
});

test('in process: EST body decoders and the renewal message decoder on arbitrary input', async () => {
  const certs = Buffer.from(decodeBase64Body(base64Lines(r.pki.gateway.cert.raw)));
  const p7 = (await import('../../transport/enroll/pkcs7.ts')).certsOnly([certs, r.pki.root.cert.raw]);
  await fuzz(
    'est-values',
    fc.asyncProperty(
      mutated(p7),
      mutated(csr),
      fc.string({ maxLength: 200 }),
      async (bytes, badCsr, text) => {
        for (const out of [
          expectTyped(() => parseCertsOnly(bytes)),
          expectTyped(() => decodeBase64Body(text)),
          expectTyped(() => decodeBase64Body(bytes)),
        ])
          if (out !== 'ok') assert.is(out, 'ERR_ENROLL_PROTOCOL');
        const names = expectTyped(() => assertCsrNames(badCsr, 'edgeward', 'spiffe://x/y'));
        if (names !== 'ok')
          assert.ok(['ERR_ENROLL_CSR_INVALID', 'ERR_ENROLL_CSR_IDENTITY'].includes(names), names);
      },
    ),
    500,
  );
  await fuzz(
    'renew-values',
    fc.property(fc.anything({ maxDepth: 3, withTypedArray: true, withMap: true }), (v) => {
      assert.is(
        expectTyped(() => asRenewRequest(v)),
        'ok',
      );
    }),
    500,
  );
  await fuzz(
    'cbor-payloads',
    fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
      assert.is(
        expectTyped(() => asRenewRequest(decodeCbor(b))),
        'ok',
      );
    }),
    500,
  );
});

test('a real token enrollment still works after the fuzzing', async () => {
  const at = r.broker.addresses.enrollment as { host: string; port: number };
  const token = await r.joinToken('after-fuzz');
  const got = await enroll({
    host: at.host,
    port: at.port,
    deviceId: 'after-fuzz',
    key,
    token,
    now: () => r.clock.now(),
  });
  assert.match(got.spiffeId, /\/device\/after-fuzz$/);
});

test.run();
