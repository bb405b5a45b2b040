import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../../runtime/cli/main.ts';
import { COMMANDS } from '../../../runtime/cli/registry.ts';
import { captureIo as io } from '../../helpers/cli-io.ts';

test('--help lists every subcommand with one line each', async () => {
  const t = io();
  assert.is(await main(['--help'], t), 0);
  const text = t.stdout.join('\n');
  for (const name of ['agent', 'issuer', 'status', 'device', 'tpm', 'policy', 'hook']) {
    assert.match(text, new RegExp(`^  ${name}\\s+\\S`, 'm'));
  }
});

test('every subcommand answers --help with its usage', async () => {
  for (const c of COMMANDS) {
    const t = io();
    assert.is(await main([c.name, '--help'], t), 0, c.name);
    assert.match(t.stdout.join('\n'), /Usage: edgeward /, c.name);
  }
});

test('an unknown command, an unknown flag and a missing argument each give one line and exit 2', async () => {
  for (const argv of [
    ['frobnicate'],
    ['agent', '--frob'],
    ['config', 'check', '--role', 'agent'],
    ['agent', '--config'],
  ]) {
    const t = io();
    assert.is(await main(argv, t), 2, argv.join(' '));
    assert.is(t.stderr.length, 1, argv.join(' '));
  }
});

test('config check reports every problem with its path and exits 1', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-cli-'));
  const file = join(dir, 'agent.yaml');
  writeFileSync(
    file,
    'version: 1\ntrustDomain: Fleet!\ndataDir: /x\nattestation: { method: tpm }\nupstream: { endpoints: [http://x] }\n',
  );
  const t = io();
  assert.is(await main(['config', 'check', '--role', 'agent', file], t), 1);
  assert.is(t.stderr.length, 2);
  assert.ok(t.stderr.some((l) => l.includes('trustDomain: must be a SPIFFE trust domain')));
  assert.ok(t.stderr.some((l) => l.includes('upstream.endpoints[0]: must be https URL')));
});

test('device token create: an --id that is not one path segment of 1-64 characters is a usage error', async () => {
  for (const id of ['..', '.', 'a/b', 'x'.repeat(65), 'sp ace']) {
    const t = io();
    assert.is(
      await main(['device', 'token', 'create', '--id', id, '--socket', '/nonexistent.sock'], t),
      2,
      id,
    );
    assert.match(t.stderr.join('\n'), /--id must be 1-64 of/, id);
  }
});

test.run();
