import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AGENT_ROLE, ISSUER_ROLE, loadConfigText } from '../../../runtime/config/load.ts';
import { parseDuration } from '../../../runtime/config/types.ts';
import type { ConfigError } from '../../../runtime/errors.ts';
import { rejects } from '../../helpers/rejects.ts';

const AGENT = `version: 1
trustDomain: fleet.example
dataDir: /var/lib/edgeward
tpm: device:/dev/tpmrm0
attestation:
  method: tpm
  pcrs: sha256:0,1,2,7
upstream:
  endpoints:
    - https://issuer.fleet.example:8443
broker:
  listen: { port: 8883 }
`;

const ISSUER = `version: 1
trustDomain: fleet.example
listen: { host: 0.0.0.0, port: 8443, certificate: /etc/edgeward/tls.pem, key: /etc/edgeward/tls.key }
ca: { certificate: /etc/edgeward/ca.pem, key: /etc/edgeward/ca.key }
storeDir: /var/lib/edgeward-issuer
svidTtl: 1h
attestation:
  tpm: { manufacturerRoots: [/etc/edgeward/roots/infineon.pem] }
  joinToken: { enabled: true }
`;

const issuesOf = async (text: string, env = {}) =>
  (await rejects<ConfigError>(() => loadConfigText(text, AGENT_ROLE, env), 'ERR_CONFIG_INVALID')).issues;

test('a valid agent config is accepted, typed and given defaults', () => {
  const cfg = loadConfigText(AGENT, AGENT_ROLE);
  assert.is(cfg.trustDomain, 'fleet.example');
  assert.equal(cfg.upstream.endpoints, ['https://issuer.fleet.example:8443']);
  assert.is(cfg.broker?.listen?.host, '127.0.0.1');
  assert.is(cfg.broker?.listen?.port, 8883);
});

test('a valid issuer config is accepted', () => {
  const cfg = loadConfigText(ISSUER, ISSUER_ROLE);
  assert.is(cfg.listen.port, 8443);
  assert.is(parseDuration(cfg.svidTtl ?? ''), 3_600_000);
});

test('a non-https upstream is rejected with its path and line', async () => {
  const issues = await issuesOf(AGENT.replace('https://issuer', 'http://issuer'));
  assert.equal(
    issues.map((i) => i.path),
    ['upstream.endpoints[0]'],
  );
  assert.match(issues[0]?.message ?? '', /^must be https URL \(line 10\)$/);
});

test('unknown keys are rejected by name, every error reported at once', async () => {
  const text = AGENT.replace('dataDir:', 'datadir: /x\ndataDir:').replace(
    'method: tpm',
    'method: tpm\n  pcr: sha256:0',
  );
  const issues = await issuesOf(text);
  assert.equal(issues.map((i) => `${i.path}: ${i.message.replace(/ \(line \d+\)$/, '')}`).sort(), [
    'attestation.pcr: unknown key',
    'datadir: unknown key',
  ]);
});

test('missing required keys and wrong types are each reported', async () => {
  const text = AGENT.replace('trustDomain: fleet.example\n', '').replace('port: 8883', 'port: "eighty"');
  const issues = await issuesOf(text);
  const paths = issues.map((i) => i.path).sort();
  assert.equal(paths, ['broker.listen.port', 'trustDomain']);
});

test('enumerations and formats say what is allowed', async () => {
  const issues = await issuesOf(
    AGENT.replace('method: tpm', 'method: magic').replace('device:/dev/tpmrm0', 'tcp:1'),
  );
  assert.ok(issues.some((i) => i.path === 'attestation.method'));
  assert.ok(issues.some((i) => i.path === 'tpm' && i.message.startsWith('must be a TPM transport')));
});

test('a missing, newer or malformed version is refused with ERR_CONFIG_VERSION', async () => {
  await rejects(() => loadConfigText(AGENT.replace('version: 1\n', ''), AGENT_ROLE), 'ERR_CONFIG_VERSION');
  const err = await rejects<ConfigError>(
    () => loadConfigText(AGENT.replace('version: 1', 'version: 9'), AGENT_ROLE),
    'ERR_CONFIG_VERSION',
  );
  assert.match(err.message, /newer than this edgeward understands/);
});

test('YAML syntax errors and non-mapping documents are typed errors with a line', async () => {
  const err = await rejects<ConfigError>(
    () => loadConfigText('version: 1\n  bad: [', AGENT_ROLE),
    'ERR_CONFIG_INVALID',
  );
  assert.match(err.issues[0]?.message ?? '', /^line \d+:/);
  await rejects(() => loadConfigText('- a\n- b\n', AGENT_ROLE), 'ERR_CONFIG_INVALID');
  await rejects(() => loadConfigText('a: 1\na: 2\n', AGENT_ROLE), 'ERR_CONFIG_INVALID');
});

test('documented environment variables override, and are validated like the file', async () => {
  const cfg = loadConfigText(AGENT, AGENT_ROLE, {
    EDGEWARD_UPSTREAM: 'https://a.example, https://b.example',
    EDGEWARD_LOG_LEVEL: 'debug',
    EDGEWARD_CA_KEY: 'ignored',
  });
  assert.equal(cfg.upstream.endpoints, ['https://a.example', 'https://b.example']);
  assert.is(cfg.log?.level, 'debug');
  const issues = await issuesOf(AGENT, { EDGEWARD_LOG_LEVEL: 'loud' });
  assert.ok(issues.some((i) => i.path === 'log.level'));
});

test.run();
