/**
 * Cross-checks with the real tpm2-tools 5.4, run against swtpm (tpm2-tools.swtpm.test.ts) and the
 * TypeScript simulator (test/sim/tpm/tpm2-tools.sim.test.ts), which differ only in the `--tpm`
 * spec they pass: `edgeward tpm quote` output verified by `tpm2_checkquote` (a wrong nonce must
 * fail), `edgeward tpm info` and `tpm ek` (the EK certificate chains to the manufacturer CA,
 * checked by openssl), and the CLI's usage and spec errors.
 *
 * @example
 * ```ts
 * const s = tpm2ToolsSuite('swtpm', { spec, dir, manufacturer: 'IBM', eks: ['L-1 RSA-2048'], ca, close });
 * s('something only swtpm does', async () => { await quoteAndCheck(spec, dir, 'q2', 'aabb'); });
 * s.run();
 * ```
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { suite, type Test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../../runtime/cli/main.ts';
import { captureIo } from '../../helpers/cli-io.ts';

export const run = promisify(execFile);

export interface CliTpm {
  /** The `--tpm` spec the CLI opens (`unix:…`, `sim:…`). */
  readonly spec: string;
  /** The CLI's working directory: outputs land here. */
  readonly dir: string;
  /** TPM_PT_MANUFACTURER as `tpm info` prints it. */
  readonly manufacturer: string;
  /** EK certificate names `tpm info` must list, e.g. `L-1 RSA-2048`. */
  readonly eks: readonly string[];
  /** The manufacturer CA the EK certificates chain to. */
  readonly ca: { readonly root: X509Certificate; readonly intermediate: X509Certificate };
  close(): Promise<void>;
}

/**
 * `edgeward tpm quote` of sha256:0-7,16 into `dir/out`, then `tpm2_checkquote` with `nonce` (must
 * pass) and with another nonce (must fail with a non-zero exit). Returns the passing check's stdout.
 */
export async function quoteAndCheck(spec: string, dir: string, out: string, nonce: string): Promise<string> {
  const cli = captureIo({ cwd: dir });
  const code = await main(
    ['tpm', 'quote', '--tpm', spec, '--pcrs', 'sha256:0,1,2,3,4,5,6,7,16', '--nonce', nonce, '--out', out],
    cli,
  );
  assert.is(code, 0, cli.stderr.join('\n'));
  const q = join(dir, out);
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
  const ok = await run('tpm2_checkquote', [...args, '-q', nonce]);
  const wrong = `${nonce.slice(0, -2)}${nonce.endsWith('00') ? '01' : '00'}`;
  const exit = await run('tpm2_checkquote', [...args, '-q', wrong]).then(
    () => 0,
    (err: { code?: unknown }) => err.code,
  );
  assert.ok(typeof exit === 'number' && exit !== 0, `tpm2_checkquote accepted a wrong nonce (exit ${exit})`);
  return ok.stdout;
}

/** Registers the shared cross-checks and returns the suite (add tests, then `run()` it). */
export function tpm2ToolsSuite(name: string, tpm: CliTpm): Test {
  const { spec, dir } = tpm;
  const s = suite(`tpm2-tools cross-checks on ${name}`);
  s.after(() => tpm.close());

  s('edgeward tpm quote output verifies with tpm2_checkquote, and a wrong nonce does not', async () => {
    const stdout = await quoteAndCheck(spec, dir, 'q', '00112233445566778899');
    assert.match(stdout, /sha256:/);
  });

  s('edgeward tpm info and tpm ek describe the TPM; the EK certificate chains to its CA', async () => {
    const cli = captureIo({ cwd: dir });
    assert.is(await main(['tpm', 'info', '--tpm', spec], cli), 0, cli.stderr.join('\n'));
    assert.ok(cli.stdout.includes(`manufacturer: ${tpm.manufacturer}`), cli.stdout.join('\n'));
    assert.ok(
      cli.stdout.some((l) => l.startsWith('pcr banks: sha256')),
      cli.stdout.join('\n'),
    );
    const eks = cli.stdout.find((l) => l.startsWith('ek certificates: ')) ?? '';
    assert.ok(tpm.eks.length > 0, 'the runner names the EKs it provisioned');
    for (const ek of tpm.eks) assert.ok(eks.includes(ek), `${ek} missing from '${eks}'`);
    const ek = captureIo({ cwd: dir });
    assert.is(await main(['tpm', 'ek', '--tpm', spec, '--out', 'ek'], ek), 0, ek.stderr.join('\n'));
    const cert = new X509Certificate(await readFile(join(dir, 'ek', 'ek-L-1.crt.der')));
    const pem = await readFile(join(dir, 'ek', 'ek-L-1.pub.pem'), 'utf8');
    assert.is(cert.publicKey.export({ type: 'spki', format: 'pem' }), pem);
    await writeFile(join(dir, 'ek-L-1.pem'), cert.toString());
    await writeFile(join(dir, 'root-ca.pem'), tpm.ca.root.toString());
    await writeFile(join(dir, 'intermediate-ca.pem'), tpm.ca.intermediate.toString());
    const { stdout } = await run('openssl', [
      'verify',
      '-CAfile',
      join(dir, 'root-ca.pem'),
      '-untrusted',
      join(dir, 'intermediate-ca.pem'),
      join(dir, 'ek-L-1.pem'),
    ]);
    assert.match(stdout, /: OK/);
  });

  s(
    'edgeward tpm: a missing option is a usage error (2), a bad --tpm spec ERR_TPM_TRANSPORT_SPEC (1)',
    async () => {
      const usage = captureIo({ cwd: dir });
      assert.is(await main(['tpm', 'quote', '--tpm', spec], usage), 2);
      const bad = captureIo({ cwd: dir });
      assert.is(await main(['tpm', 'info', '--tpm', 'bogus:x'], bad), 1);
      assert.match(bad.stderr.join(''), /ERR_TPM_TRANSPORT_SPEC/);
    },
  );

  return s;
}
