/**
 * The x509pop attestor with a factory chain made by openssl: conformance (the issuer role is the
 * issuer's own `verifyPossession`, refusing with ERR_ISSUER_POP_INVALID), and refusal of unsafe or
 * mismatched key files.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmod, copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { X509PopAttestor } from '../../../attestors/x509pop/attestor.ts';
import { verifyPossession } from '../../../runtime/issuer/x509pop.ts';
import { attestorConformance } from '../../conformance/attestor.ts';
import { rejects } from '../../helpers/rejects.ts';

const dir = await mkdtemp(join(tmpdir(), 'edgeward-x509pop-'));
const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
ossl(
  'req',
  '-x509',
  ...ec,
  '-keyout',
  'ca.key',
  '-out',
  'ca.pem',
  '-subj',
  '/CN=factory ca',
  '-days',
  '30',
  '-addext',
  'basicConstraints=critical,CA:TRUE',
);
ossl('req', ...ec, '-keyout', 'dev.key', '-out', 'dev.csr', '-subj', '/CN=gw-0001');
ossl(
  'x509',
  '-req',
  '-in',
  'dev.csr',
  '-CA',
  'ca.pem',
  '-CAkey',
  'ca.key',
  '-CAcreateserial',
  '-out',
  'dev.pem',
  '-days',
  '10',
);
execFileSync('sh', ['-c', 'cat dev.pem ca.pem > chain.pem'], { cwd: dir });
await chmod(join(dir, 'dev.key'), 0o600);
const chainFile = join(dir, 'chain.pem');
const keyFile = join(dir, 'dev.key');

attestorConformance('x509pop', async () => ({
  attestor: new X509PopAttestor({ chainFile, keyFile }),
  challenge: () => ({ sessionId: 's', nonce: Buffer.alloc(32, 2), expiresAt: 0 }),
  check(begin, challenge, proof, spki) {
    if (begin.method !== 'x509pop' || proof.method !== 'x509pop') return assert.unreachable('not x509pop');
    const leaf = new X509Certificate(Buffer.from(begin.chain[0] as Uint8Array));
    verifyPossession(leaf, challenge.nonce, spki, proof.signature);
  },
  refusals: { otherCsrKey: 'ERR_ISSUER_POP_INVALID' },
  cleanup: async () => {},
}));

const s = suite('x509pop attestor files');
s.after(() => rm(dir, { recursive: true, force: true }));

s('presents the chain leaf first as DER', async () => {
  const a = new X509PopAttestor({ chainFile, keyFile });
  await a.start();
  const begin = await a.begin();
  assert.is(begin.method === 'x509pop' && begin.chain.length, 2);
  await a.close();
});

s('refuses a readable key, a key of another certificate, and a file without certificates', async () => {
  const open = join(dir, 'open.key');
  await copyFile(keyFile, open);
  await chmod(open, 0o640);
  await rejects(() => new X509PopAttestor({ chainFile, keyFile: open }).start(), 'ERR_ATTESTOR_CONFIG');
  await chmod(join(dir, 'ca.key'), 0o600);
  await rejects(
    () => new X509PopAttestor({ chainFile, keyFile: join(dir, 'ca.key') }).start(),
    'ERR_ATTESTOR_CONFIG',
  );
  await writeFile(join(dir, 'empty.pem'), 'nothing here');
  await rejects(
    () => new X509PopAttestor({ chainFile: join(dir, 'empty.pem'), keyFile }).start(),
    'ERR_ATTESTOR_CONFIG',
  );
  await writeFile(join(dir, 'garbage.key'), 'not a key', { mode: 0o600 });
  await rejects(
    () => new X509PopAttestor({ chainFile, keyFile: join(dir, 'garbage.key') }).start(),
    'ERR_ATTESTOR_CONFIG',
  );
});

s.run();
