/**
 * The issuer config's bounds (issue 14 item 7) and its v1 → v2 migration: every duration > 0 and
 * bounded, svidTtl ≤ offlineBudget ≤ what is left of the issuer CA; each violation is an
 * `ERR_CONFIG_INVALID` issue with its path and line — from `loadConfigText`, from
 * `edgeward config check --role issuer`, and from the daemon, which exits 1 instead of dying with
 * a TypeError (`svidTtl: 0s` did).
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../../runtime/cli/main.ts';
import { ISSUER_ROLE, loadConfigFile, loadConfigText } from '../../../runtime/config/load.ts';
import type { ConfigError } from '../../../runtime/errors.ts';
import { createDevIssuerFiles } from '../../../runtime/issuer/dev.ts';
import { issuerOptionsFromConfig } from '../../../runtime/issuer/from-config.ts';
import { openMemoryStore } from '../../../runtime/issuer/store.ts';
import { VirtualClock } from '../../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../../sim/random.ts';
import { captureIo } from '../../helpers/cli-io.ts';
import { rejects } from '../../helpers/rejects.ts';

const DAY = 86_400_000;
const dir = mkdtempSync(join(tmpdir(), 'issuer-bounds-'));
// Now (the CLI checks against the real time), on a whole second (certificates keep whole seconds).
const clock = new VirtualClock(Math.floor(Date.now() / 1000) * 1000);
// A CA with 20 days left, to bound the offline budget against.
await createDevIssuerFiles(join(dir, 'dev'), {
  trustDomain: 'fleet.example',
  clock,
  random: seededRandom('bounds'),
  caTtlMs: 20 * DAY,
});
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** A v2 config; `extra` lines go at the end (line 9 onwards). */
function config(extra: string, version = 2): string {
  const d = join(dir, 'dev');
  return `version: ${version}
trustDomain: fleet.example
listen: { host: 127.0.0.1, port: 0, certificate: ${d}/tls.pem, key: ${d}/tls.key }
ca: { certificate: ${d}/ca.pem, key: ${d}/ca.key }
storeDir: ${join(dir, 'store')}
attestation:
  joinToken: { enabled: true }
log: { level: error }
${extra}`;
}

const issuesOf = async (text: string) =>
  (await rejects<ConfigError>(() => loadConfigText(text, ISSUER_ROLE), 'ERR_CONFIG_INVALID')).issues.map(
    (i) => `${i.path}: ${i.message}`,
  );

test('durations must be > 0: svidTtl 0s is a config error with its line, not a crash', async () => {
  assert.equal(await issuesOf(config('svidTtl: 0s\n')), ['svidTtl: must be greater than 0 (line 9)']);
  assert.equal(
    await issuesOf(
      config('offlineBudget: 0d\nsessionTtl: 0ms\nrateLimit: { window: 0s }\nbundleRefreshHint: 0s\n'),
    ),
    [
      'offlineBudget: must be greater than 0 (line 9)',
      'sessionTtl: must be greater than 0 (line 10)',
      'bundleRefreshHint: must be at least 1s (line 12)',
      'rateLimit.window: must be greater than 0 (line 11)',
    ],
  );
});

test('upper bounds: offlineBudget at most 30d, sessionTtl at most 1h, window at most 1d', async () => {
  assert.equal(await issuesOf(config('offlineBudget: 31d\n')), [
    'offlineBudget: must be at most 30d (line 9)',
  ]);
  assert.equal(await issuesOf(config('sessionTtl: 2h\nrateLimit: { window: 2d }\n')), [
    'sessionTtl: must be at most 1h (line 9)',
    'rateLimit.window: must be at most 1d (line 10)',
  ]);
  assert.is(loadConfigText(config('offlineBudget: 30d\nsvidTtl: 30d\n'), ISSUER_ROLE).offlineBudget, '30d');
});

test('jwtSvid.ttl is 30s..1h; the JWT key file must be 0600 like the CA key', async () => {
  const key = join(dir, 'dev', 'jwt.key');
  assert.equal(await issuesOf(config(`jwtSvid: { key: ${key}, ttl: 10s }\n`)), [
    'jwtSvid.ttl: must be at least 30s (line 9)',
  ]);
  assert.equal(await issuesOf(config(`jwtSvid: { key: ${key}, ttl: 2h }\n`)), [
    'jwtSvid.ttl: must be at most 1h (line 9)',
  ]);
  const cfg = loadConfigText(config(`jwtSvid: { key: ${key}, ttl: 5m, perGateway: 7 }\n`), ISSUER_ROLE);
  const deps = {
    store: await openMemoryStore(),
    clock,
    random: seededRandom('jwt'),
    logger: { debug() {}, info() {}, warn() {}, error() {} },
  };
  const opts = await issuerOptionsFromConfig(cfg, deps);
  assert.is(opts.jwtSvid?.ttlMs, 300_000);
  assert.is(opts.jwtSvid?.perGateway, 7);
  assert.is(opts.jwtSvid?.key?.backend, 'software');
  chmodSync(key, 0o644);
  try {
    await rejects(() => issuerOptionsFromConfig(cfg, deps), 'ERR_ISSUER_KEY_PERMISSIONS');
  } finally {
    chmodSync(key, 0o600);
    await deps.store.close();
  }
});

test('listen.handshakeTimeout 1s..5m, listen.requestTimeout 1s..10m, listen.maxConnections >= 1; they reach the listener', async () => {
  const listen = (extra: string) =>
    config('').replace(/^listen: \{ (.*) \}$/m, (_m, inner: string) => `listen: { ${inner}, ${extra} }`);
  assert.equal(await issuesOf(listen('handshakeTimeout: 500ms, requestTimeout: 11m')), [
    'listen.handshakeTimeout: must be at least 1s (line 3)',
    'listen.requestTimeout: must be at most 10m (line 3)',
  ]);
  assert.equal(await issuesOf(listen('handshakeTimeout: 6m, requestTimeout: 0s')), [
    'listen.handshakeTimeout: must be at most 5m (line 3)',
    'listen.requestTimeout: must be at least 1s (line 3)',
  ]);
  const zero = await issuesOf(listen('maxConnections: 0'));
  assert.is(zero.length, 1);
  assert.match(zero[0] ?? '', /^listen\.maxConnections: /);
  const deps = {
    store: await openMemoryStore(),
    clock,
    random: seededRandom('listen'),
    logger: { debug() {}, info() {}, warn() {}, error() {} },
  };
  try {
    const set = loadConfigText(
      listen('handshakeTimeout: 2s, requestTimeout: 45s, maxConnections: 100'),
      ISSUER_ROLE,
    );
    assert.equal((await issuerOptionsFromConfig(set, deps)).listenerLimits, {
      handshakeTimeoutMs: 2000,
      requestTimeoutMs: 45_000,
      maxConnections: 100,
    });
    // Unset: the listener's defaults (DEFAULT_LISTENER_LIMITS) apply.
    assert.equal(
      (await issuerOptionsFromConfig(loadConfigText(config(''), ISSUER_ROLE), deps)).listenerLimits,
      {},
    );
  } finally {
    await deps.store.close();
  }
});

test('svidTtl must fit inside the offline budget, named where the file sets it', async () => {
  assert.equal(await issuesOf(config('svidTtl: 2d\nofflineBudget: 1d\n')), [
    'svidTtl: svidTtl (2d) must not exceed offlineBudget (1d): the gateway SVID must fit inside its delegated CA (line 9)',
  ]);
  // Only the budget set, below the default SVID lifetime (1h).
  assert.equal(await issuesOf(config('offlineBudget: 30m\n')), [
    'offlineBudget: svidTtl (1h) must not exceed offlineBudget (30m): the gateway SVID must fit inside its delegated CA (line 9)',
  ]);
  // Only the SVID set, above the default budget (7d).
  assert.match(
    (await issuesOf(config('svidTtl: 8d\n')))[0] ?? '',
    /^svidTtl: svidTtl \(8d\) must not exceed offlineBudget \(7d\)/,
  );
});

test('the offline budget must fit in what is left of the issuer CA (read from ca.certificate at load)', async () => {
  const f = join(dir, 'big.yaml');
  writeFileSync(f, config('offlineBudget: 25d\n'));
  const err = await rejects<ConfigError>(
    () => loadConfigFile(f, ISSUER_ROLE, {}, { now: clock.now() }),
    'ERR_CONFIG_INVALID',
  );
  assert.is(err.issues.length, 1);
  assert.is(err.issues[0]?.path, 'offlineBudget');
  assert.match(
    err.issues[0]?.message ?? '',
    /^offlineBudget \(25d\) exceeds what is left of the issuer CA \(20d, until .*\) \(line 9\)$/,
  );
  // The default 7d fits; 19d fits; nearer the CA's end, 7d no longer does (line: the document's).
  writeFileSync(f, config(''));
  await loadConfigFile(f, ISSUER_ROLE, {}, { now: clock.now() });
  const late = await rejects<ConfigError>(
    () => loadConfigFile(f, ISSUER_ROLE, {}, { now: clock.now() + 15 * DAY }),
    'ERR_CONFIG_INVALID',
  );
  assert.match(
    late.issues[0]?.message ?? '',
    /^offlineBudget \(7d\) exceeds what is left of the issuer CA \(5d, until/,
  );
  const expired = await rejects<ConfigError>(
    () => loadConfigFile(f, ISSUER_ROLE, {}, { now: clock.now() + 21 * DAY }),
    'ERR_CONFIG_INVALID',
  );
  assert.equal(
    expired.issues.map((i) => i.path),
    ['ca.certificate'],
  );
  assert.match(expired.issues[0]?.message ?? '', /the issuer CA expired at .* \(line 4\)$/);
});

test('version 1 migrates: deviceCaTtl becomes offlineBudget; a v2 file with deviceCaTtl is refused by name', async () => {
  const cfg = loadConfigText(config('deviceCaTtl: 3d\nsvidTtl: 1h\n', 1), ISSUER_ROLE);
  assert.is(cfg.version, 3);
  assert.is(cfg.offlineBudget, '3d');
  assert.is((cfg as Record<string, unknown>).deviceCaTtl, undefined);
  // The migrated value is bounded like a new one.
  assert.equal(await issuesOf(config('deviceCaTtl: 45d\n', 1)), [
    'offlineBudget: must be at most 30d (line 9)',
  ]);
  assert.equal(await issuesOf(config('deviceCaTtl: 3d\n')), ['deviceCaTtl: unknown key (line 9)']);
  // And it reaches the issuer as its offline budget.
  const opts = await issuerOptionsFromConfig(cfg, {
    store: await openMemoryStore(),
    clock,
    random: seededRandom('x'),
    logger: { debug() {}, info() {}, warn() {}, error() {} },
  });
  assert.is(opts.offlineBudgetMs, 3 * DAY);
  await opts.store.close();
});

test('edgeward config check --role issuer reports the bounds with their lines; the daemon exits 1 on them', async () => {
  const f = join(dir, 'cli.yaml');
  writeFileSync(f, config('svidTtl: 0s\nofflineBudget: 40d\n'));
  const io = captureIo({ cwd: dir });
  assert.is(await main(['config', 'check', '--role', 'issuer', f], io), 1);
  assert.equal(io.stderr, [
    `${f}: offlineBudget: must be at most 30d (line 10) [ERR_CONFIG_INVALID]`,
    `${f}: svidTtl: must be greater than 0 (line 9) [ERR_CONFIG_INVALID]`,
  ]);
  const d = captureIo({ cwd: dir });
  assert.is(await main(['issuer', '--config', f], d), 1);
  assert.match(d.stderr.join('\n'), /ERR_CONFIG_INVALID: .*svidTtl: must be greater than 0 \(line 9\)/);
  assert.not.match(d.stderr.join('\n'), /TypeError/);
  writeFileSync(f, config('svidTtl: 2h\nofflineBudget: 3d\n'));
  const ok = captureIo({ cwd: dir });
  assert.is(await main(['config', 'check', '--role', 'issuer', f], ok), 0, ok.stderr.join('\n'));
});

test.run();
