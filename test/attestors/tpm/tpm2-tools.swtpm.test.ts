/**
 * Cross-checks with the real tpm2-tools 5.4 against swtpm: `edgeward tpm quote` output verified by
 * `tpm2_checkquote`; a credential made by `tpm2_makecredential --tcti none` activated by our client
 * (RSA L-1 EK with PolicySecret, ECC H-3 EK with password); `edgeward tpm info` and `tpm ek`.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { activateCredential } from '../../../attestors/tpm/activate.ts';
import { findEks } from '../../../attestors/tpm/ek.ts';
import { withAk } from '../../../attestors/tpm/quote.ts';
import { openTransport } from '../../../attestors/tpm/transport/open.ts';
import { Reader, Writer } from '../../../attestors/tpm/wire/buffer.ts';
import type { CliIo } from '../../../runtime/cli/command.ts';
import { main } from '../../../runtime/cli/main.ts';
import { seededRandom } from '../../../sim/random.ts';
import { launchSwtpm } from '../../../sim/swtpm/launcher.ts';

const run = promisify(execFile);
const swtpm = await launchSwtpm();
const dir = await mkdtemp(join(tmpdir(), 'edgeward-tpm2tools-'));
const random = seededRandom('tpm2-tools');

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

const s = suite('tpm2-tools cross-checks on swtpm');
s.after(async () => {
  await swtpm.stop();
  await rm(dir, { recursive: true, force: true });
});

s('edgeward tpm quote output verifies with tpm2_checkquote, and a wrong nonce does not', async () => {
  const cli = io();
  const code = await main(
    [
      'tpm',
      'quote',
      '--tpm',
      swtpm.spec,
      '--pcrs',
      'sha256:0,1,2,3,4,5,6,7,16',
      '--nonce',
      '00112233445566778899',
      '--out',
      'q',
    ],
    cli,
  );
  assert.is(code, 0, cli.errors.join('\n'));
  const q = join(dir, 'q');
  const args = [
    '-u',
    join(q, 'ak.pub.pem'),
    '-m',
    join(q, 'quote.msg'),
    '-s',
    join(q, 'quote.sig'),
    '-f',
    join(q, 'quote.pcrs'),
    '-g',
    'sha256',
  ];
  const ok = await run('tpm2_checkquote', [...args, '-q', '00112233445566778899']);
  assert.match(ok.stdout, /sha256:/);
  try {
    await run('tpm2_checkquote', [...args, '-q', '00112233445566778898']);
    assert.unreachable('tpm2_checkquote accepted a wrong nonce');
  } catch (err) {
    assert.ok((err as { code?: number }).code !== 0);
  }
});

s('edgeward tpm info and tpm ek describe the swtpm', async () => {
  const cli = io();
  assert.is(await main(['tpm', 'info', '--tpm', swtpm.spec], cli), 0, cli.errors.join('\n'));
  assert.ok(cli.lines.includes('manufacturer: IBM'), cli.lines.join('\n'));
  assert.ok(cli.lines.some((l) => l.startsWith('pcr banks: sha256')));
  assert.ok(cli.lines.some((l) => l.includes('L-1 RSA-2048') && l.includes('H-3 ECC P-384')));
  const ek = io();
  assert.is(await main(['tpm', 'ek', '--tpm', swtpm.spec, '--out', 'ek'], ek), 0, ek.errors.join('\n'));
  const cert = new X509Certificate(await readFile(join(dir, 'ek', 'ek-L-1.crt.der')));
  assert.ok(cert.verify(swtpm.intermediate.publicKey));
  const pem = await readFile(join(dir, 'ek', 'ek-L-1.pub.pem'), 'utf8');
  assert.is(cert.publicKey.export({ type: 'spki', format: 'pem' }), pem);
  const usage = io();
  assert.is(await main(['tpm', 'quote', '--tpm', swtpm.spec], usage), 2);
  const bad = io();
  assert.is(await main(['tpm', 'info', '--tpm', 'bogus:x'], bad), 1);
  assert.match(bad.errors.join(''), /ERR_TPM_TRANSPORT_SPEC/);
});

s(
  'a credential from tpm2_makecredential --tcti none is activated by our client (RSA and ECC EKs)',
  async () => {
    const t = await openTransport(swtpm.spec);
    try {
      for (const ek of await findEks(t, ['L-1', 'H-3'])) {
        await withAk(t, async (ak) => {
          const pubFile = join(dir, `ek-${ek.template}.tss`);
          await writeFile(pubFile, new Writer().tpm2b(ek.public).finish());
          const secret = random.bytes(32);
          await writeFile(join(dir, 'secret.bin'), secret);
          const out = join(dir, `mc-${ek.template}.out`);
          await run('tpm2_makecredential', [
            '--tcti',
            'none',
            '-u',
            pubFile,
            '-s',
            join(dir, 'secret.bin'),
            '-n',
            ak.name.toString('hex'),
            '-o',
            out,
          ]);
          const r = new Reader(await readFile(out), 'tpm2_makecredential output');
          assert.is(r.u32('magic'), 0xbadcc0de);
          assert.is(r.u32('version'), 1);
          const blob = r.tpm2b('credentialBlob');
          const enc = r.tpm2b('secret');
          r.done();
          const got = await activateCredential(t, ek, ak, blob, enc, random);
          assert.equal(got, secret, `activated with EK ${ek.template}`);
        });
      }
    } finally {
      await t.close();
    }
  },
);

s.run();
