/** The policy: parsing with line-precise errors, grants, topic matching, and `edgeward policy check`. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
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
  assert.not.ok(d?.canSubscribe('$share/workers/jobs/x'), 'a plain grant (jobs/#) does not grant $share');
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

test('$share grants: their own filters, + as any group, templated groups, default deny both ways', async () => {
  const p = await loadPolicyFile(`${FIX}policy-share.yaml`);
  const svc = grantsFor(p, `${SELF}/svc/worker`, SELF);
  assert.ok(svc?.canSubscribe('$share/any-group/devices/+/telemetry'), '+ as the group: any group');
  assert.ok(svc?.canSubscribe('$share/g/devices/s1/telemetry'), 'a narrower filter');
  assert.not.ok(svc?.canSubscribe('$share/g/devices/+/#'), 'a wider filter');
  assert.not.ok(svc?.canSubscribe('devices/s1/telemetry'), 'a $share grant does not grant the plain filter');
  assert.ok(svc?.canSubscribe('$share/worker/jobs/x'), '{name} in the group');
  assert.not.ok(svc?.canSubscribe('$share/other/jobs/x'));
  assert.ok(svc?.canSubscribe('plain/x'));
  assert.not.ok(svc?.canSubscribe('$share/g/plain/x'), 'a plain grant does not grant $share');
  assert.not.ok(
    svc?.canSubscribe('$share/+/devices/s1/telemetry'),
    'a SUBSCRIBE with + as the group is malformed',
  );
  assert.not.ok(svc?.canSubscribe('$share/g'));
  assert.ok(svc?.canReceiveShared('devices/s1/telemetry'));
  assert.ok(svc?.canReceiveShared('jobs/a/b'));
  assert.not.ok(svc?.canReceiveShared('plain/x'), 'shared deliveries are checked against $share grants only');
  assert.not.ok(svc?.canReceive('devices/s1/telemetry'), 'plain deliveries against plain grants only');
  const dev = grantsFor(p, `${SELF}/device/s1`, SELF);
  assert.ok(dev?.canSubscribe('$share/s1/jobs/s1/#'), '{device} in group and filter');
  assert.not.ok(dev?.canSubscribe('$share/s2/jobs/s1/#'));
  assert.not.ok(dev?.canSubscribe('$share/s1/devices/s1/#'));
  // A Policy object given in code is not parsed: a malformed or reserved $share entry grants nothing.
  const code = grantsFor(
    {
      version: 1,
      rules: [{ match: '{self}/svc/*', subscribe: ['$share/g+/jobs/#', '$share/g/$edgeward/#', '$share'] }],
    },
    `${SELF}/svc/w`,
    SELF,
  );
  assert.not.ok(code?.canSubscribe('$share/g/$edgeward/bundle'));
  assert.not.ok(code?.canSubscribe('$share/g+/jobs/x'));
  assert.not.ok(code?.canReceiveShared('jobs/x'));
});

test('malformed $share entries and $share outside subscribe fail with their lines', async () => {
  const { readFileSync } = await import('node:fs');
  const r = parsePolicy(readFileSync(`${FIX}policy-share-invalid.yaml`, 'utf8'));
  assert.not.ok(r.ok);
  if (r.ok) return;
  assert.equal(
    r.issues.map((i) => `${i.line}:${i.path}`),
    [
      '13:rules[0].publish[0]',
      '6:rules[0].subscribe[1]',
      '7:rules[0].subscribe[2]',
      '8:rules[0].subscribe[3]',
      '9:rules[0].subscribe[4]',
      '10:rules[0].subscribe[5]',
      '11:rules[0].subscribe[6]',
      '12:rules[0].subscribe[7]',
      '14:rules[0].retain[0]',
    ],
  );
  const msg = (path: string) => r.issues.find((i) => i.path === path)?.message ?? '';
  assert.match(msg('rules[0].publish[0]'), /only allowed in subscribe/);
  assert.match(msg('rules[0].subscribe[1]'), /no topic filter after the share group/);
  assert.match(msg('rules[0].subscribe[2]'), /empty share group/);
  assert.match(msg('rules[0].subscribe[3]'), /'\+' only as the whole group/);
  assert.match(msg('rules[0].subscribe[5]'), /'#' must be a whole last level/);
  assert.match(msg('rules[0].subscribe[6]'), /reserved/);
  assert.match(msg('rules[0].subscribe[7]'), /cannot itself be \$share/);
});

test('deny entries: a grant minus a narrower deny, for publish, retain, subscribe and delivery', async () => {
  const policy = await loadPolicyFile(`${FIX}policy-deny.yaml`);
  const g = grantsFor(policy, `${SELF}/device/s1`, SELF);
  assert.ok(g);
  if (g === undefined) return;
  assert.ok(g.canPublish('devices/s1/temp', true));
  assert.not.ok(g.canPublish('devices/s1/secret/key', false), 'publish denied');
  assert.not.ok(g.canPublish('devices/s1/secret', true), 'the deny filter # includes its parent level');
  assert.ok(g.canPublish('fleet/s9/status', false));
  assert.not.ok(g.canSubscribe('devices/s1/secret/#'), 'a subscription inside a deny is refused');
  assert.not.ok(g.canSubscribe('fleet/admin/x'));
  assert.ok(g.canSubscribe('devices/s1/#'), 'an overlapping subscription is granted …');
  assert.not.ok(g.canReceive('devices/s1/secret/key'), '… and the denied topics are not delivered');
  assert.ok(g.canReceive('devices/s1/temp'));
  assert.not.ok(g.canReceive('fleet/admin/reboot'));
  assert.ok(g.canReceive('fleet/s2/status'));
});

test('deny entries are checked with their lines: invalid, reserved, $share, or taking back nothing', async () => {
  const { readFileSync } = await import('node:fs');
  const r = parsePolicy(readFileSync(`${FIX}policy-deny-invalid.yaml`, 'utf8'));
  assert.not.ok(r.ok);
  if (r.ok) return;
  assert.equal(
    r.issues.map((i) => `${i.line}:${i.path}`),
    [
      '7:rules[0].deny[1]',
      '8:rules[0].deny[2]',
      '9:rules[0].deny[3]',
      '10:rules[0].deny[4]',
      '12:rules[1].deny[0]',
    ],
  );
  const msg = (path: string) => r.issues.find((i) => i.path === path)?.message ?? '';
  assert.match(msg('rules[0].deny[1]'), /takes back nothing/);
  assert.match(msg('rules[0].deny[2]'), /'#' must be a whole last level/);
  assert.match(msg('rules[0].deny[3]'), /not \$share/);
  assert.match(msg('rules[0].deny[4]'), /reserved/);
  assert.match(msg('rules[1].deny[0]'), /grants nothing/);
  const cli = captureIo();
  assert.is(await main(['policy', 'check', `${FIX}policy-deny-invalid.yaml`], cli), 1);
  assert.ok(
    cli.stderr.some((l) =>
      l.endsWith(
        'policy-deny-invalid.yaml:7: rules[0].deny[1]: deny takes back nothing this rule grants (it overlaps no publish, subscribe or retain entry)',
      ),
    ),
    cli.stderr.join('\n'),
  );
  assert.is(await main(['policy', 'check', `${FIX}policy-deny.yaml`], captureIo()), 0);
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
  const share = captureIo();
  assert.is(await main(['policy', 'check', `${FIX}policy-share.yaml`], share), 0, share.stderr.join('\n'));
  const shareBad = captureIo();
  assert.is(await main(['policy', 'check', `${FIX}policy-share-invalid.yaml`], shareBad), 1);
  assert.ok(
    shareBad.stderr.some((l) => /policy-share-invalid\.yaml:6: rules\[0\]\.subscribe\[1\]: /.test(l)),
    shareBad.stderr.join('\n'),
  );
  const usage = captureIo();
  assert.is(await main(['policy', 'check'], usage), 2);
  assert.is(await main(['policy', 'frobnicate'], captureIo()), 2);
  assert.is(await main(['policy', 'check', 'a', 'b'], captureIo()), 2);
});

test.run();
