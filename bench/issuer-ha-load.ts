/**
 * The load generator of `bench/issuer-ha.bench.ts`, in its own process: `node --import tsx
 * bench/issuer-ha-load.ts '<json>'` with { urls, tokens, ca (PEM), concurrency, ms }. Enrolls one
 * gateway per token (join-token attestation, spread over the replicas), then each of
 * `concurrency` workers renews its gateways round robin for `ms`: one POST /v1/renew/finish per
 * renewal on a fresh mTLS connection with the gateway's current SVID and the session the last
 * issuance handed out (SVID signed and committed by the replica). Prints one JSON line
 * { renewals, seconds, p50, p99, errors }.
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { request } from 'node:https';
import { performance } from 'node:perf_hooks';
import { issuerCbor } from '../runtime/issuer/store.ts';
import { createCsr } from '../runtime/svid/csr.ts';
import type { IssuedIdentity } from '../runtime/upstream/protocol.ts';

const o = JSON.parse(process.argv[2] ?? '{}') as {
  urls: string[];
  tokens: string[];
  ca: string;
  concurrency: number;
  ms: number;
};

function post(
  url: string,
  path: string,
  body: unknown,
  tls?: { cert: string; key: string },
): Promise<{ status: number; body: unknown }> {
  const payload = Buffer.from(issuerCbor.encode(body));
  const u = new URL(path, url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        ca: o.ca,
        agent: false,
        headers: { 'content-type': 'application/cbor', 'content-length': payload.length },
        ...(tls ?? {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const raw = Buffer.concat(chunks);
          resolve({
            status: res.statusCode ?? 0,
            body: raw.length === 0 ? undefined : issuerCbor.decode(raw),
          });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

interface Gw {
  url: string;
  keyPem: string;
  csr: Buffer;
  cert: string;
  session: string;
}

const keyAndCsr = () => {
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  return { key, csr: createCsr(key) };
};

const gws: Gw[] = [];
for (const [i, token] of o.tokens.entries()) {
  const url = o.urls[i % o.urls.length] as string;
  const b = await post(url, '/v1/attest/begin', { method: 'join-token', token });
  if (b.status !== 200) throw new Error(`attest begin ${b.status}`);
  const k = keyAndCsr();
  const f = await post(url, '/v1/attest/finish', {
    method: 'join-token',
    sessionId: (b.body as { sessionId: string }).sessionId,
    csr: k.csr,
    caCsr: keyAndCsr().csr,
  });
  if (f.status !== 200) throw new Error(`attest finish ${f.status} ${JSON.stringify(f.body)}`);
  const id = f.body as IssuedIdentity;
  gws.push({
    url,
    keyPem: k.key.export({ format: 'pem', type: 'pkcs8' }) as string,
    csr: k.csr,
    cert: new X509Certificate(Buffer.from(id.svidChain[0] as Uint8Array)).toString(),
    session: id.nextSessionId as string,
  });
}

// Enrolled: the driver starts measuring the replicas' CPU now.
process.stdout.write(`${JSON.stringify({ enrolled: gws.length })}\n`);
const latencies: number[] = [];
let errors = 0;
const start = performance.now();
const deadline = start + o.ms;
await Promise.all(
  Array.from({ length: o.concurrency }, async (_, w) => {
    const mine = gws.filter((_, i) => i % o.concurrency === w);
    for (let n = 0; performance.now() < deadline; n++) {
      const gw = mine[n % mine.length] as Gw;
      // Each renewal goes to the next replica (what the agent's endpoint list does on failover).
      const url = o.urls[(w + n) % o.urls.length] as string;
      const t0 = performance.now();
      const r = await post(
        url,
        '/v1/renew/finish',
        { sessionId: gw.session, csr: gw.csr },
        {
          cert: gw.cert,
          key: gw.keyPem,
        },
      ).catch(() => ({ status: 0, body: undefined }));
      if (r.status !== 200) {
        errors++;
        continue;
      }
      latencies.push(performance.now() - t0);
      const id = r.body as IssuedIdentity;
      gw.cert = new X509Certificate(Buffer.from(id.svidChain[0] as Uint8Array)).toString();
      gw.session = id.nextSessionId as string;
    }
  }),
);
const seconds = (performance.now() - start) / 1000;
latencies.sort((a, b) => a - b);
const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;
process.stdout.write(
  `${JSON.stringify({ renewals: latencies.length, seconds, p50: q(0.5), p99: q(0.99), errors })}\n`,
);
