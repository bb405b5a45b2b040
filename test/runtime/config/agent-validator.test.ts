/**
 * The agent's precompiled config validator (agent-validator.gen.ts): up to date with the schema,
 * and giving exactly the answers of the runtime ajv validator (`loadConfigText(…, AGENT_ROLE)`) —
 * same accepted documents with the same defaults, same issues with the same paths and lines.
 * Also: loading it pulls in neither TypeBox nor ajv (the point of it: the idle agent's memory).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadAgentConfigText } from '../../../runtime/config/agent-load.ts';
import { AGENT_CONFIG_VERSION } from '../../../runtime/config/agent-role.ts';
import { AGENT_ROLE, loadConfigText } from '../../../runtime/config/load.ts';
import type { ConfigError } from '../../../runtime/errors.ts';
import { GENERATED, validatorSource } from '../../../scripts/gen-validators.ts';
import { rejects } from '../../helpers/rejects.ts';

const BASE = `version: 2
trustDomain: fleet.example
dataDir: /var/lib/edgeward
tpm: swtpm:path=/run/swtpm.sock
attestation: { method: tpm, pcrs: "sha256:0,1,2,7" }
upstream:
  endpoints: [https://issuer.fleet.example:8443]
  timeout: 5s
broker:
  listen: { port: 8883 }
  enrollment: { host: 0.0.0.0 }
`;

const VALID = [
  BASE,
  BASE.replace('version: 2', 'version: 1'),
  `${BASE}bridge:\n  host: mqtt.cloud.example\n  caFile: /etc/edgeward/cloud.pem\n  topics: [{ local: devices/+/up, remotePrefix: gw/ }]\n  buffer: { maxMessages: 100 }\n  reconnect: 2s\n`,
  `${BASE}factory:\n  rootsFile: /etc/edgeward/mfg.pem\n  idField: serialNumber\n  allowList: [sensor-1, sensor_2]\n`,
  `${BASE}sealing: { pcrPolicy: "sha256:0,7" }\nrotation: { backoffInitial: 250ms, backoffFactor: 1.5, breakerFailures: 3 }\nadmin: { metricsPort: 9100 }\nlog: { level: debug }\n`,
];

const INVALID = [
  BASE.replace('https://issuer', 'http://issuer'),
  BASE.replace('timeout: 5s', 'timeout: soon'),
  BASE.replace('dataDir:', 'datadir: /x\ndataDir:'),
  BASE.replace('tpm: swtpm:path=/run/swtpm.sock', 'tpm: tcp://tpm'),
  BASE.replace('method: tpm', 'method: magic'),
  BASE.replace('trustDomain: fleet.example\n', ''),
  BASE.replace('port: 8883', 'port: 70000'),
  `${BASE}bridge:\n  host: mqtt.cloud.example\n  topics: []\n  extra: 1\n`,
  `${BASE}factory:\n  rootsFile: ""\n  idField: uid\n  allowList: ["../etc"]\n`,
  `${BASE}log: { level: loud }\n`,
  BASE.replace('version: 2', 'version: 3'),
  BASE.replace('version: 2', 'version: two'),
  'just a string\n',
  'a: [1\n',
  // Issue 15, item 8: configs the agent cannot run.
  BASE.replace('method: tpm, pcrs: "sha256:0,1,2,7"', 'method: join-token'),
  BASE.replace('method: tpm, pcrs: "sha256:0,1,2,7"', 'method: x509pop, certificate: /etc/f.pem'),
  BASE.replace('listen: { port: 8883 }', 'listen: { port: 8883 }\n  maxPacketSize: 1e99'),
  BASE.replace('listen: { port: 8883 }', 'listen: { port: 8883 }\n  maxPacketSize: 268435456'),
  BASE.replace('listen: { port: 8883 }', 'listen: { port: 8883 }\n  maxConnections: 1e99'),
  BASE.replace('listen: { port: 8883 }', 'listen: { port: 8883 }\n  handshakeTimeoutMs: 5'),
];

async function outcome(load: () => unknown): Promise<unknown> {
  try {
    return { ok: load() };
  } catch (err) {
    const e = err as ConfigError;
    return { code: e.code, issues: e.issues };
  }
}

test('the generated validator is up to date with agent-schema.ts', () => {
  assert.ok(
    readFileSync(GENERATED.agent.file, 'utf8') === validatorSource('agent'),
    'run: node --import tsx scripts/gen-validators.ts --write',
  );
});

test('valid configs: the same document and defaults from both validators', async () => {
  for (const text of VALID) {
    const a = await outcome(() => loadAgentConfigText(text, {}, 'a.yaml'));
    const b = await outcome(() => loadConfigText(text, AGENT_ROLE, {}, 'a.yaml'));
    assert.equal(a, b);
    assert.ok((a as { ok?: { version: number } }).ok?.version === AGENT_CONFIG_VERSION, JSON.stringify(a));
  }
});

test('invalid configs: the same code, issues, paths and lines from both validators', async () => {
  for (const text of INVALID) {
    const a = await outcome(() => loadAgentConfigText(text, {}, 'a.yaml'));
    const b = await outcome(() => loadConfigText(text, AGENT_ROLE, {}, 'a.yaml'));
    assert.equal(a, b, text);
    assert.ok((a as { code?: string }).code?.startsWith('ERR_CONFIG_'), JSON.stringify(a));
  }
});

test('every problem of a bad file is listed at once with its line', async () => {
  const err = await rejects<ConfigError>(
    () => loadAgentConfigText(INVALID[8] as string, {}, 'agent.yaml'),
    'ERR_CONFIG_INVALID',
  );
  const paths = [...new Set(err.issues.map((i) => i.path))].sort();
  assert.equal(paths, ['factory.allowList[0]', 'factory.idField', 'factory.rootsFile']);
  assert.ok(
    err.issues.every((i) => / \(line 1[3-5]\)$/.test(i.message)),
    JSON.stringify(err.issues),
  );
});

test('configs the agent cannot run are refused with the key and the line (issue 15, item 8)', async () => {
  const cases: [string, string, RegExp][] = [
    [
      BASE.replace('method: tpm, pcrs: "sha256:0,1,2,7"', 'method: join-token'),
      'attestation.joinTokenFile',
      /is required \(line 5\)$/,
    ],
    [
      BASE.replace('method: tpm, pcrs: "sha256:0,1,2,7"', 'method: x509pop, certificate: /etc/f.pem'),
      'attestation.key',
      /is required \(line 5\)$/,
    ],
    [
      BASE.replace('listen: { port: 8883 }', 'listen: { port: 8883 }\n  maxPacketSize: 1e99'),
      'broker.maxPacketSize',
      /268435455 \(line 11\)$/,
    ],
    [
      BASE.replace('listen: { port: 8883 }', 'listen: { port: 8883 }\n  maxConnections: 1e99'),
      'broker.maxConnections',
      /\(line 11\)$/,
    ],
  ];
  for (const [text, path, message] of cases) {
    const err = await rejects<ConfigError>(
      () => loadAgentConfigText(text, {}, 'agent.yaml'),
      'ERR_CONFIG_INVALID',
    );
    assert.equal(
      err.issues.map((i) => i.path),
      [path],
      JSON.stringify(err.issues),
    );
    assert.match(err.issues[0]?.message ?? '', message);
  }
  // What each method needs, given, is accepted.
  loadAgentConfigText(
    BASE.replace('method: tpm, pcrs: "sha256:0,1,2,7"', 'method: join-token, joinTokenFile: /etc/t'),
  );
  loadAgentConfigText(
    BASE.replace(
      'method: tpm, pcrs: "sha256:0,1,2,7"',
      'method: x509pop, certificate: /etc/f.pem, key: /etc/k.pem',
    ),
  );
});

test('environment overrides apply before validation', async () => {
  const cfg = loadAgentConfigText(BASE, { EDGEWARD_UPSTREAM: 'https://a.example, https://b.example' });
  assert.equal(cfg.upstream.endpoints, ['https://a.example', 'https://b.example']);
  await rejects(() => loadAgentConfigText(BASE, { EDGEWARD_LOG_LEVEL: 'loud' }), 'ERR_CONFIG_INVALID');
});

test('loading the agent config pulls in neither TypeBox nor ajv code', () => {
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-validator-'));
  const log = join(dir, 'loaded.txt');
  const hooks = `import { appendFileSync } from 'node:fs';
    export async function load(url, ctx, next) { appendFileSync(${JSON.stringify(log)}, url + '\\n'); return next(url, ctx); }`;
  const probe = `
    const { register } = await import('node:module');
    register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hooks)}));
    const { loadAgentConfigText } = await import(${JSON.stringify(new URL('../../../runtime/config/agent-load.ts', import.meta.url).href)});
    loadAgentConfigText(${JSON.stringify(BASE)});
    const { createRequire } = await import('node:module');
    console.log(JSON.stringify(Object.keys(createRequire(import.meta.url).cache)));`;
  try {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', probe], {
      encoding: 'utf8',
    });
    assert.is(r.status, 0, r.stderr);
    const loaded = [
      ...readFileSync(log, 'utf8').split('\n'),
      ...(JSON.parse(r.stdout.trim().split('\n').pop() as string) as string[]),
    ];
    assert.ok(
      loaded.some((f) => f.includes('agent-validator.gen')),
      'the probe saw the validator load',
    );
    assert.ok(
      loaded.some((f) => f.includes('node_modules/yaml')),
      'the probe saw packages load',
    );
    assert.equal(
      loaded.filter((f) => /node_modules\/(ajv|@sinclair)/.test(f)),
      [],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the README's agent config example is valid", () => {
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
  const block = /An agent config[^\n]*\n\n```yaml\n([\s\S]+?)```/.exec(readme)?.[1];
  assert.ok(block, 'README has the agent config example');
  const cfg = loadAgentConfigText(block as string);
  assert.is(cfg.bridge?.topics[0]?.local, 'devices/+/telemetry');
  assert.equal(cfg.factory?.allowList, ['sensor-1', 'sensor-2']);
});

test.run();
