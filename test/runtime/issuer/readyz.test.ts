/**
 * /readyz names what is wrong: a closed store is 503 with a `store:` reason (in process: the
 * spawned-daemon test, admin-live.test.ts, covers the CA key file); /healthz still answers.
 */
import { get } from 'node:http';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openMemoryStore } from '../../../runtime/issuer/store.ts';
import { harness } from './harness.ts';

const httpGet = (url: string): Promise<{ status: number; text: string }> =>
  new Promise((resolve, reject) => {
    get(url, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
    }).on('error', reject);
  });

test('readyz: 200 with an open store, 503 with the store reason once it is closed', async () => {
  const store = await openMemoryStore();
  const h = await harness(
    { joinToken: { enabled: true } },
    { store, health: { host: '127.0.0.1', port: 0 } },
  );
  const url = h.running.healthUrl as string;
  try {
    assert.equal(await httpGet(`${url}/readyz`), { status: 200, text: 'ready\n' });
    await store.close();
    const r = await httpGet(`${url}/readyz`);
    assert.is(r.status, 503);
    assert.match(r.text, /^store: /m);
    assert.is((await httpGet(`${url}/healthz`)).status, 200);
    assert.is((await httpGet(`${url}/nope`)).status, 404);
  } finally {
    await h.running.close();
  }
});

test.run();
