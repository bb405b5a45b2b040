/** The policy: parsing with line-precise errors, grants, topic matching, and `edgeward policy check`. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UsageError } from '../../runtime/cli/command.ts';
import { main } from '../../runtime/cli/main.ts';
import { grantsFor } from '../../transport/policy/grants.ts';
import { loadPolicyFile, parsePolicy } from '../../transport/policy/load.ts';
import { DEFAULT_POLICY } from '../../transport/policy/schema.ts';
import { covers, matches, splitFilter } from '../../transport/policy/topic.ts';
import { captureIo } from '../helpers/cli-io.ts';
import { rejects } from '../helpers/rejects.ts';

const FIX = new URL('./fixtures/', import.meta.url).pathname;
const SELF = 'spiffe://fleet.example/gateway/gw-1';

test('topic matching follows MQTT 3.1.1 §4.7', () => {
  assert.ok(matches(splitFilter('a/#'), 'a'));
  assert.ok(matches(splitFilter('a/#'), 'a/b/c'));
  assert.ok(matches(splitFilter('a/+/c'), 'a/b/c'));
  assert.not.ok(matches(splitFilter('a/+'), 'a/b/c'));
  assert.not.ok(matches(splitFilter('a/+'), 'a'));
  assert.not.ok(matches(splitFilter('#'), '$SYS/x'));
  assert.not.ok(matches(splitFilter('+/x'), '$SYS/x'));
  assert.ok(matches(splitFilter('$SYS/#'), '$SYS/x'));
  assert.ok(covers(splitFilter('a/#'), splitFilter('a/+/c')));
  assert.not.ok(covers(splitFilter('a/+'), splitFilter('a/#')));
  assert.not.ok(covers(splitFilter('a/b'), splitFilter('a/+')));
  assert.not.ok(covers(splitFilter('#'), splitFilter('$SYS/#')));
});

test('default policy: a device owns devices/{device}/# and nothing else', () => {
  const g = grantsFor(DEFAULT_POLICY, `${SELF}/device/s1`, SELF);
  assert.ok(g);
  assert.ok(g?.canPublish('devices/s1/temp', false));
  assert.ok(g?.canPublish('devices/s1/state', true));
  assert.not.ok(g?.canPublish('devices/s2/temp', false));
  assert.not.ok(g?.canPublish('devices/s1', false) === false);
  assert.ok(g?.canSubscribe('devices/s1/+'));
  assert.not.ok(g?.canSubscribe('devices/+/temp'));
  assert.not.ok(g?.canSubscribe('$share/g/devices/s1/#'));
  assert.is(g?.deviceId, 's1');
  assert.is(grantsFor(DEFAULT_POLICY, 'spiffe://fleet.example/gateway/gw-2/device/s1', SELF), undefined);
  assert.is(grantsFor(DEFAULT_POLICY, `${SELF}/device/s1/extra`, SELF), undefined);
  assert.is(grantsFor(DEFAULT_POLICY, SELF, SELF), undefined);
});

test('a file policy: templates, retain lists, ** and clientId any', async () => {
  const p = await loadPolicyFile(`${FIX}policy-valid.yaml`);
  const d = grantsFor(p, `${SELF}/device/s1`, SELF);
  assert.ok(d?.canPublish('telemetry/s1', false));
  assert.not.ok(d?.canPublish('telemetry/s1', true), 'retain only where listed');
  assert.ok(d?.canPublish('devices/s1/state', true));
  assert.ok(d?.canSubscribe('jobs/x'));
  assert.ok(d?.canReceive('jobs/x'));
  assert.not.ok(d?.canSubscribe('$share/workers/jobs/x'), 'shared subscriptions are never granted');
  const svc = grantsFor(p, `${SELF}/svc/metrics/exporter`, SELF);
  assert.ok(svc?.anyClientId);
  assert.is(svc?.maxConnections, 4);
  assert.ok(svc?.canPublish('anything/at/all', false));
  assert.not.ok(svc?.canPublish('$edgeward/bundle', false), 'reserved topics are never granted');
  assert.ok(svc?.canSubscribe('devices/+/temp'));
});

test('an invalid policy reports every problem with its line', async () => {
  const { readFileSync } = await import('node:fs');
  const r = parsePolicy(readFileSync(`${FIX}policy-invalid.yaml`, 'utf8'));
  assert.not.ok(r.ok);
  if (r.ok) return;
  const byPath = Object.fromEntries(r.issues.map((i) => [i.path, i]));
  assert.is(byPath['rules[1].retian']?.line, 8);
  assert.is(byPath['rules[1].retian']?.message, 'unknown key');
  // Schema errors come first; semantic ones are checked once the shape is right.
  const fixed = readFileSync(`${FIX}policy-invalid.yaml`, 'utf8').replace('retian', 'retain');
  const r2 = parsePolicy(fixed);
  assert.not.ok(r2.ok);
  if (r2.ok) return;
  const lines = r2.issues.map((i) => `${i.line}:${i.path}`);
  assert.equal(lines, [
    '4:rules[0].publish[1]',
    '5:rules[0].subscribe[0]',
    '6:rules[1].match',
    '7:rules[1].publish[0]',
  ]);
  await rejects(() => loadPolicyFile(`${FIX}policy-invalid.yaml`), 'ERR_POLICY_INVALID');
  await rejects(() => loadPolicyFile(`${FIX}missing.yaml`), 'ERR_POLICY_INVALID');
  const syntax = parsePolicy('version: 1\nrules:\n  - match: [\n');
  assert.not.ok(syntax.ok);
  if (!syntax.ok) assert.ok(syntax.issues[0]?.line !== undefined);
});

test('$share entries do not load (aedes 1.2 would acknowledge and deliver nothing) and are never granted', () => {
  const r = parsePolicy(
    [
      'version: 1',
      'rules:',
      '  - match: "{self}/device/*"',
      '    subscribe: ["devices/{device}/#", "$share/workers/jobs/#"]',
      '    publish: ["$share/workers/jobs/x"]',
      '',
    ].join('\n'),
  );
  assert.not.ok(r.ok);
  if (r.ok) return;
  assert.equal(
    r.issues.map((i) => `${i.line}:${i.path}`),
    ['5:rules[0].publish[0]', '4:rules[0].subscribe[1]'],
  );
  assert.match(r.issues[1]?.message ?? '', /ERR_SHARED_SUBSCRIPTION_UNSUPPORTED/);
  // A Policy object given to the broker in code is not parsed: grants still never include $share.
  const g = grantsFor(
    { version: 1, rules: [{ match: '{self}/svc/*', subscribe: ['$share/+/devices/#', '$share/g/jobs/#'] }] },
    `${SELF}/svc/w`,
    SELF,
  );
  assert.ok(g);
  assert.not.ok(g?.canSubscribe('$share/g/jobs/#'));
  assert.not.ok(g?.canSubscribe('$share/g/devices/s1/#'));
  assert.not.ok(g?.canSubscribe('jobs/#'));
  assert.not.ok(g?.canReceive('jobs/x'));
});

test('edgeward policy check: exit 0, 1 with FILE:LINE lines, 2 on usage', async () => {
  const ok = captureIo();
  assert.is(await main(['policy', 'check', `${FIX}policy-valid.yaml`], ok), 0);
  assert.match(ok.stdout[0] ?? '', /ok \(2 rules\)/);
  const bad = captureIo();
  assert.is(await main(['policy', 'check', `${FIX}policy-invalid.yaml`], bad), 1);
  assert.ok(
    bad.stderr.some((l) => l.endsWith('policy-invalid.yaml:8: rules[1].retian: unknown key')),
    bad.stderr.join('\n'),
  );
  const usage = captureIo();
  assert.is(await main(['policy', 'check'], usage), 2);
  assert.is(await main(['policy', 'frobnicate'], captureIo()), 2);
  assert.is(await main(['policy', 'check', 'a', 'b'], captureIo()), 2);
  assert.ok(new UsageError('x') instanceof Error);
});

test.run();
