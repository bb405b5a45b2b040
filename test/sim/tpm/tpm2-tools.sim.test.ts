/**
 * The simulator checked by tpm2-tools 5.4: `edgeward tpm quote --tpm sim:DIR` output (a quote the
 * simulator signed with edgeward's AK) verifies with `tpm2_checkquote`, after PCR extends and
 * across a process restart; a wrong nonce fails. `edgeward tpm info/ek` describe the simulator.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TPM_ALG } from '../../../attestors/tpm/wire/constants.ts';
import type { CliIo } from '../../../runtime/cli/command.ts';
import { main } from '../../../runtime/cli/main.ts';
import { openSimTransport } from '../../../sim/tpm/index.ts';
import { pcrExtend, response } from './wire.ts';

const run = promisify(execFile);
const dir = await mkdtemp(join(tmpdir(), 'edgeward-sim-tpm2tools-'));
const state = join(dir, 'state');
const spec = `sim:${state}`;

function io(): CliIo & { lines: string[]; errors: string[] } {
  const lines: string[] = [];
  const errors: string[] = [];
  return {
    lines,
    errors,
    out: (l) => lines.push(l),
    err: (l) => errors.push(l),
    env: {},
    cwd: dir,
    stopSignal: new AbortController().signal,
  };
}

async function quoteAndCheck(out: string, nonce: string): Promise<string> {
  const cli = io();
  const code = await main(
    ['tpm', 'quote', '--tpm', spec, '--pcrs', 'sha256:0,1,2,3,4,5,6,7,16', '--nonce', nonce, '--out', out],
    cli,
  );
  assert.is(code, 0, cli.errors.join('\n'));
  const q = join(dir, out);
  const args = ['-u', join(q, 'ak.pub.pem'), '-m', join(q, 'quote.msg'), '-s', join(q, 'quote.sig')];
  const ok = await run('tpm2_checkquote', [
    ...args,
    '-f',
    join(q, 'quote.pcrs'),
    '-g',
    'sha256',
    '-q',
    nonce,
  ]);
  try {
    await run('tpm2_checkquote', [...args, '-f', join(q, 'quote.pcrs'), '-g', 'sha256', '-q', `${nonce}00`]);
    assert.unreachable('tpm2_checkquote accepted a wrong nonce');
  } catch (err) {
    assert.ok((err as { code?: number }).code !== 0);
  }
  return ok.stdout;
}

test.after(async () => rm(dir, { recursive: true, force: true }));

test('a simulator quote verifies with tpm2_checkquote; a wrong nonce does not', async () => {
  const first = await quoteAndCheck('q1', '00112233445566778899');
  assert.match(first, /sha256:/);
  assert.match(first, /0 *: *0x0{64}/i);
});

test('after PCR extends and a process restart the quote still verifies and shows the new values', async () => {
  const tpm = await openSimTransport(state);
  assert.is(response(await tpm.send(pcrExtend(0, TPM_ALG.SHA256, Buffer.alloc(32, 1)))).rc, 0);
  assert.is(response(await tpm.send(pcrExtend(16, TPM_ALG.SHA256, Buffer.alloc(32, 2)))).rc, 0);
  // The CLI opens the state dir itself: hand it over as a reboot would (PCRs reset at power-on).
  await tpm.close();
  const second = await quoteAndCheck('q2', 'aabbccddeeff');
  assert.match(second, /0 *: *0x0{64}/i, 'PCR 0 is zero again after the power cycle');
});

test('edgeward tpm info and tpm ek describe the simulator; the EK certificate chains to its CA', async () => {
  const cli = io();
  assert.is(await main(['tpm', 'info', '--tpm', spec], cli), 0, cli.errors.join('\n'));
  assert.ok(cli.lines.includes('manufacturer: EDGW'), cli.lines.join('\n'));
  assert.ok(
    cli.lines.some((l) => l.startsWith('pcr banks: sha256')),
    cli.lines.join('\n'),
  );
  const ek = io();
  assert.is(await main(['tpm', 'ek', '--tpm', spec, '--out', 'ek'], ek), 0, ek.errors.join('\n'));
  const inter = new X509Certificate(await readFile(join(state, 'manufacturer-intermediate-ca.pem')));
  const root = new X509Certificate(await readFile(join(state, 'manufacturer-root-ca.pem')));
  const cert = new X509Certificate(await readFile(join(dir, 'ek', 'ek-L-1.crt.der')));
  assert.ok(cert.verify(inter.publicKey));
  assert.ok(inter.verify(root.publicKey));
  await writeFile(join(dir, 'ek-L-1.pem'), cert.toString());
  const { stdout } = await run('openssl', [
    'verify',
    '-CAfile',
    join(state, 'manufacturer-root-ca.pem'),
    '-untrusted',
    join(state, 'manufacturer-intermediate-ca.pem'),
    join(dir, 'ek-L-1.pem'),
  ]);
  assert.match(stdout, /: OK/);
});

test.run();
