/**
 * Child process of `bench/enroll.bench.ts`: one gateway process serving EST
 * (`transport/enroll/est-server.ts`) with the product's device signer over the test PKI. (Until
 * its removal it served the CBOR-over-TLS exchange beside it, with the same signer and tokens:
 * the side-by-side numbers are in README.md.) Issues `argv[2]` join tokens per client variant,
 * prints one JSON line `{ servers, tokens, rootsPem }` and serves until stdin closes.
 */
import { systemClock } from '../runtime/core/clock.ts';
import { nullLogger } from '../runtime/core/logger.ts';
import { cryptoRandom } from '../runtime/core/random.ts';
import { buildPki } from '../test/helpers/pki.ts';
import { startEnrollment as startEst } from '../transport/enroll/est-server.ts';
import { issueJoinToken } from '../transport/enroll/join-token.ts';
import { MemoryTokenStore } from '../transport/enroll/token-store.ts';

const count = Number(process.argv[2] ?? 100);
const pki = await buildPki({ now: Date.now() });
const tokens = new MemoryTokenStore();
const common = {
  at: { host: '127.0.0.1', port: 0 },
  material: { key: pki.gateway.pem.key, cert: pki.gateway.pem.cert, ca: pki.bundlePem },
  servedUntil: () => Number.POSITIVE_INFINITY,
  onExpiredRefused: () => {},
  bundle: () => pki.bundle,
  signer: pki.signer(systemClock),
  tokens,
  clock: systemClock,
  logger: nullLogger,
  perMinute: 1_000_000,
  handshakeTimeoutMs: 30_000,
  maxConnections: 1024,
};
const servers: { name: string; port: number }[] = [];
const est = await startEst(common);
servers.push({ name: 'est', port: est.address.port });
servers.push({ name: 'est-known-roots', port: est.address.port });
const issued: Record<string, { deviceId: string; token: string }[]> = {};
for (const s of servers) {
  issued[s.name] = [];
  for (let i = 0; i < count; i++) {
    const deviceId = `${s.name}-${i}`;
    const { token } = await issueJoinToken({
      store: tokens,
      random: cryptoRandom,
      clock: systemClock,
      bundle: pki.bundle,
      deviceId,
      ttlMs: 3_600_000,
    });
    issued[s.name]?.push({ deviceId, token });
  }
}
process.stdout.write(`${JSON.stringify({ servers, tokens: issued, rootsPem: pki.bundlePem })}\n`);
process.stdin.resume();
process.stdin.once('end', () => process.exit(0));
