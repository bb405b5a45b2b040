/**
 * Child process of `bench/broker.bench.ts`: runs the edgeward broker (or, with `--bare`, Node's
 * floor: a bare `tls.Server` with mqtt-packet and trivial routing — what any MQTT server on Node
 * pays at least; with `--plain`,
 * aedes on `tls.Server` without any hook: the reference) on port 0 from the PEM material in
 * the JSON file given as argv[2], prints `PORT <n>` and serves until stdin closes.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type TLSSocket } from 'node:tls';

interface Material {
  trustDomain: string;
  gatewayId: string;
  key: string;
  chain: string[];
  roots: string[];
  caCert: string;
  caKey: string;
}

const m = JSON.parse(readFileSync(process.argv[2] as string, 'utf8')) as Material;
const bare = process.argv.includes('--bare');
const plain = process.argv.includes('--plain');
let port: number;
let stop: () => Promise<void>;
if (bare) {
  const held = new Set<TLSSocket>();
  const server = createServer({
    key: m.key,
    cert: m.chain.join(''),
    ca: m.roots.join(''),
    requestCert: true,
    rejectUnauthorized: true,
  });
  // The least an MQTT server on Node pays: mqtt-packet (aedes' own codec, a dependency of aedes
  // and mqtt) parses and writes; CONNECT gets a fixed CONNACK, SUBSCRIBE records a `prefix/#` or
  // exact filter, a PUBLISH is written to every matching subscriber at QoS 1 and acknowledged.
  // No sessions, authorization, retained messages, persistence or flow control: not a broker.
  const mqttPacket = (await import('mqtt-packet')).default;
  const subs: { filter: string; wildcard: boolean; socket: TLSSocket }[] = [];
  let nextId = 0;
  const matches = (f: (typeof subs)[0], topic: string) =>
    f.wildcard ? topic.startsWith(f.filter) : topic === f.filter;
  server.on('secureConnection', (s) => {
    held.add(s);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p) => {
      if (p.cmd === 'connect')
        s.write(mqttPacket.generate({ cmd: 'connack', returnCode: 0, sessionPresent: false }));
      else if (p.cmd === 'subscribe') {
        for (const sub of p.subscriptions) {
          const wildcard = sub.topic.endsWith('/#');
          subs.push({ filter: wildcard ? sub.topic.slice(0, -1) : sub.topic, wildcard, socket: s });
        }
        s.write(
          mqttPacket.generate({
            cmd: 'suback',
            messageId: p.messageId ?? 0,
            granted: p.subscriptions.map(() => 1),
          }),
        );
      } else if (p.cmd === 'publish') {
        for (const sub of subs) {
          if (!matches(sub, p.topic)) continue;
          nextId = (nextId % 65535) + 1;
          sub.socket.write(
            mqttPacket.generate({
              cmd: 'publish',
              topic: p.topic,
              payload: p.payload,
              qos: 1,
              messageId: nextId,
              retain: false,
              dup: false,
            }),
          );
        }
        if (p.qos === 1) s.write(mqttPacket.generate({ cmd: 'puback', messageId: p.messageId ?? 0 }));
      } else if (p.cmd === 'pingreq') s.write(mqttPacket.generate({ cmd: 'pingresp' }));
      else if (p.cmd === 'disconnect') s.end();
    });
    s.on('data', (d: Buffer) => parser.parse(d));
    s.on('end', () => s.end());
    s.on('error', () => s.destroy());
    s.on('close', () => {
      held.delete(s);
      for (let i = subs.length - 1; i >= 0; i--) if (subs[i]?.socket === s) subs.splice(i, 1);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
  stop = async () => {
    for (const s of held) s.destroy();
    server.close();
  };
} else if (plain) {
  // The reference: aedes on a tls.Server with no hooks at all (what BENCHMARKS.md measured).
  const { Aedes } = await import('aedes');
  const aedes = await Aedes.createBroker();
  const server = createServer(
    { key: m.key, cert: m.chain.join(''), ca: m.roots.join(''), requestCert: true, rejectUnauthorized: true },
    (s) => aedes.handle(s),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
  stop = () => new Promise((r) => aedes.close(() => server.close(() => r())));
} else {
  // Loaded only here, so that the --bare floor measures Node and OpenSSL alone.
  const { systemClock } = await import('../runtime/core/clock.ts');
  const { cryptoRandom } = await import('../runtime/core/random.ts');
  const { StaticBundleSource, StaticRevocationSource, StaticSvidSource } = await import(
    '../runtime/sources/static.ts'
  );
  const { fixedDeviceSigner } = await import('../test/helpers/device-signer.ts');
  const { MemoryTokenStore } = await import('../transport/enroll/token-store.ts');
  const { startBroker } = await import('../transport/mqtt/broker.ts');
  const chain = m.chain.map((p) => new X509Certificate(p));
  const svid = {
    spiffeId: m.gatewayId,
    chain,
    privateKey: createPrivateKey(m.key),
    notAfter: Math.min(...chain.map((c) => Date.parse(c.validTo))),
  };
  const bundle = {
    trustDomain: m.trustDomain,
    roots: m.roots.map((p) => new X509Certificate(p)),
    sequence: 1,
  };
  const broker = await startBroker({
    svidSource: new StaticSvidSource(svid, systemClock),
    bundleSource: new StaticBundleSource([bundle]),
    revocationSource: new StaticRevocationSource(),
    deviceSigner: fixedDeviceSigner(
      {
        trustDomain: m.trustDomain,
        gatewayId: m.gatewayId,
        svidChain: chain,
        svidKey: svid.privateKey,
        caChain: [new X509Certificate(m.caCert)],
        caKey: createPrivateKey(m.caKey),
      },
      systemClock,
      cryptoRandom,
    ),
    tokenStore: new MemoryTokenStore(),
    trustDomain: m.trustDomain,
    clock: systemClock,
    listen: { host: '127.0.0.1', port: 0 },
    limits: { maxConnections: 5000 },
    policy: {
      version: 1,
      rules: [
        { match: '{self}/device/*', publish: ['devices/{device}/#'], subscribe: ['devices/{device}/#'] },
        { match: '{self}/svc/*', subscribe: ['devices/+/#'] },
      ],
    },
  });
  port = broker.addresses.mqtt.port;
  stop = () => broker.close();
}
process.stdout.write(`PORT ${port}\n`);
process.stdin.resume();
process.stdin.on('end', () => {
  stop().then(() => process.exit(0));
});
