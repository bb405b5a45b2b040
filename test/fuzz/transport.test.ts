/**
 * Fuzz: what devices send the gateway's broker, over real sockets (transport/).
 * - Enrollment listener (CBOR frames over TLS): valid request frames mutated (length prefix lies,
 *   truncated CBOR, wrong types, hostile CSRs); the answer is an error frame with an ERR_ code or
 *   a closed connection — never a hang, never a crash — and a real token enrollment still works
 *   afterwards.
 * - Renewal over MQTT (CBOR on `$edgeward/renew/<id>`): requests with mutated CSRs get an error
 *   reply with an ERR_ code (or a valid chain); raw mutated payloads are dropped; the broker keeps
 *   serving and a valid renewal is answered at the end.
 * - In process: the frame and message decoders (transport/enroll/wire.ts, mqtt/reserved.ts) on
 *   arbitrary values.
 */
import { generateKeyPairSync } from 'node:crypto';
import { connect } from 'node:tls';
import { decode, encode } from 'cbor-x';
import fc from 'fast-check';
import type { MqttClient } from 'mqtt';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createCsr } from '../../runtime/svid/csr.ts';
import { enroll } from '../../transport/enroll/client.ts';
import { asAnswer, asHello, asRequest } from '../../transport/enroll/wire.ts';
import { asRenewRequest, decodeCbor, RENEW_PREFIX, REPLY_PREFIX } from '../../transport/mqtt/reserved.ts';
import { type Rig, rig } from '../transport/setup.ts';
import { expectTyped, fuzz, mutated } from './helpers/fuzz.ts';

let r: Rig;
let device: MqttClient;
const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const csr = createCsr(key);
const frame = (v: unknown): Buffer => {
  const body = encode(v);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
};

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

/** Send raw bytes to the enrollment listener after its hello; collect everything until close. */
function sendEnrollment(bytes: Buffer): Promise<Buffer> {
  const at = r.broker.addresses.enrollment as { host: string; port: number };
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect({ host: at.host, port: at.port, rejectUnauthorized: false });
    const watchdog = setTimeout(() => {
      s.destroy();
      reject(new Error('hang: the enrollment listener neither answered nor closed within 5 s'));
    }, 5_000);
    let sent = false;
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      if (!sent) {
        sent = true;
        s.end(bytes);
      }
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(watchdog);
      resolve(Buffer.concat(chunks));
    });
  });
}

/** Frames in `buf` (u32 length + CBOR), decoded. */
function frames(buf: Buffer): unknown[] {
  const out: unknown[] = [];
  let off = 0;
  while (off + 4 <= buf.length) {
    const n = buf.readUInt32BE(off);
    if (off + 4 + n > buf.length) break;
    out.push(decode(buf.subarray(off + 4, off + 4 + n)));
    off += 4 + n;
  }
  return out;
}

test('enrollment: mutated request frames get a typed error frame or a close, never a hang', async () => {
  const seeds = [
    frame({ method: 'token', token: 'ewt1.sensor.abcdefabcdefabcdef', csr }),
    frame({ method: 'factory', csr }),
  ];
  await fuzz(
    'enroll-frames',
    fc.asyncProperty(mutated(...seeds), async (bytes) => {
      const got = frames(await sendEnrollment(bytes));
      assert.ok(got.length >= 1, 'no hello');
      asHello(got[0]);
      const answer = got[1];
      if (answer !== undefined) {
        const a = asAnswer(answer);
        assert.ok('error' in a, 'a mutated request enrolled a device');
        assert.match(a.error.code, /^ERR_[A-Z0-9_]+$/);
      }
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

test('in process: frame and message decoders on arbitrary values', async () => {
  await fuzz(
    'wire-values',
    fc.property(fc.anything({ maxDepth: 3, withTypedArray: true, withMap: true }), (v) => {
      for (const f of [asHello, asRequest, asAnswer]) {
        const out = expectTyped(() => f(v));
        if (out !== 'ok') assert.is(out, 'ERR_ENROLL_PROTOCOL');
      }
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
  const got = await enroll({ host: at.host, port: at.port, key, token, now: () => r.clock.now() });
  assert.match(got.spiffeId, /\/device\/after-fuzz$/);
});

test.run();
