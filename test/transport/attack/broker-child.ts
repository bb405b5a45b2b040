/**
 * TEST ONLY: the broker in a child process, for the kill -9 tests. argv[2] is a JSON file with
 * the PKI material (PEM) and broker limits, argv[3] a directory for the LevelDB store holding
 * the session journal. It prints `PORT <n>` once listening, then every warn/error log line as
 * `LOG <json>`, and runs until killed.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';
import { systemClock } from '../../../runtime/core/clock.ts';
import type { LogFields, Logger } from '../../../runtime/core/logger.ts';
import {
  StaticBundleSource,
  StaticRevocationSource,
  StaticSvidSource,
} from '../../../runtime/sources/static.ts';
import { seededRandom } from '../../../sim/random.ts';
import { MemoryTokenStore } from '../../../transport/enroll/token-store.ts';
import { startBroker } from '../../../transport/mqtt/broker.ts';
import type { BrokerLimits } from '../../../transport/mqtt/limits.ts';
import type { JournalDb } from '../../../transport/mqtt/persistence/journal.ts';
import type { Policy } from '../../../transport/policy/schema.ts';
import { fixedDeviceSigner } from '../../helpers/device-signer.ts';

export interface ChildMaterial {
  trustDomain: string;
  gatewayId: string;
  svidChain: string[];
  svidKey: string;
  caChain: string[];
  caKey: string;
  roots: string[];
  limits?: BrokerLimits;
  policy?: Policy;
}

const m = JSON.parse(readFileSync(process.argv[2] as string, 'utf8')) as ChildMaterial;
const chain = m.svidChain.map((p) => new X509Certificate(p));
const key = createPrivateKey(m.svidKey);
const line =
  (level: string) =>
  (msg: string, fields: LogFields = {}) =>
    process.stdout.write(`LOG ${JSON.stringify({ level, msg, ...fields })}\n`);
const logger: Logger = { debug() {}, info: line('info'), warn: line('warn'), error: line('error') };
const db = new Level<string, Uint8Array>(join(process.argv[3] as string, 'store'), {
  keyEncoding: 'utf8',
  valueEncoding: 'view',
});
const journal = db.sublevel<string, Uint8Array>('mqtt', { keyEncoding: 'utf8', valueEncoding: 'view' });
const broker = await startBroker({
  svidSource: new StaticSvidSource(
    { spiffeId: m.gatewayId, chain, privateKey: key, notAfter: Date.parse(chain[0]?.validTo ?? '') },
    systemClock,
  ),
  bundleSource: new StaticBundleSource([
    { trustDomain: m.trustDomain, roots: m.roots.map((p) => new X509Certificate(p)), sequence: 1 },
  ]),
  revocationSource: new StaticRevocationSource(),
  deviceSigner: fixedDeviceSigner(
    {
      trustDomain: m.trustDomain,
      gatewayId: m.gatewayId,
      svidChain: chain,
      svidKey: key,
      caChain: m.caChain.map((p) => new X509Certificate(p)),
      caKey: createPrivateKey(m.caKey),
    },
    systemClock,
    seededRandom('broker-child'),
  ),
  tokenStore: new MemoryTokenStore(),
  trustDomain: m.trustDomain,
  clock: systemClock,
  logger,
  listen: { host: '127.0.0.1', port: 0 },
  ...(m.limits === undefined ? {} : { limits: m.limits }),
  ...(m.policy === undefined ? {} : { policy: m.policy }),
  persistence: { db: journal as unknown as JournalDb },
});
process.stdout.write(`PORT ${broker.addresses.mqtt.port}\n`);
