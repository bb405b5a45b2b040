/** The join-token attestor: conformance, and refusal of unsafe or malformed token files. */
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { JoinTokenAttestor } from '../../../attestors/join-token/attestor.ts';
import { IssuerError } from '../../../runtime/errors.ts';
import { attestorConformance } from '../../conformance/attestor.ts';
import { rejects } from '../../helpers/rejects.ts';

const dir = await mkdtemp(join(tmpdir(), 'edgeward-jointoken-'));
const TOKEN = 'jt1.4f1c2a9e7b3d5f60.c0ffee';
const tokenFile = join(dir, 'token');
await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });

attestorConformance('join-token', async () => ({
  attestor: new JoinTokenAttestor({ tokenFile }),
  challenge: () => ({ sessionId: 's', nonce: Buffer.alloc(32, 1), expiresAt: 0 }),
  check(begin, _challenge, proof) {
    if (begin.method !== 'join-token' || begin.token !== TOKEN || proof.method !== 'join-token')
      throw new IssuerError('ERR_ISSUER_TOKEN_INVALID', 'wrong token');
  },
  refusals: { otherCsrKey: undefined },
  cleanup: async () => {},
}));

const s = suite('join-token attestor files');
s.after(() => rm(dir, { recursive: true, force: true }));

s('presents the trimmed token from the file', async () => {
  const a = new JoinTokenAttestor({ tokenFile });
  await a.start();
  assert.equal(await a.begin(), { method: 'join-token', token: TOKEN });
  await a.close();
});

s('refuses a group/world-readable, missing, empty or multi-token file with ERR_ATTESTOR_CONFIG', async () => {
  const open = join(dir, 'open');
  await writeFile(open, TOKEN);
  await chmod(open, 0o644);
  await rejects(() => new JoinTokenAttestor({ tokenFile: open }).start(), 'ERR_ATTESTOR_CONFIG');
  await rejects(
    () => new JoinTokenAttestor({ tokenFile: join(dir, 'missing') }).start(),
    'ERR_ATTESTOR_CONFIG',
  );
  for (const [name, body] of [
    ['empty', ''],
    ['two', `${TOKEN} ${TOKEN}`],
    ['short', 'abc'],
  ]) {
    const f = join(dir, name as string);
    await writeFile(f, body as string, { mode: 0o600 });
    await rejects(() => new JoinTokenAttestor({ tokenFile: f }).start(), 'ERR_ATTESTOR_CONFIG');
  }
  await rejects(() => new JoinTokenAttestor({ tokenFile: dir }).start(), 'ERR_ATTESTOR_CONFIG');
});

s.run();
