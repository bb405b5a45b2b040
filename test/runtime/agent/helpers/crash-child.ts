/**
 * TEST ONLY: a child process for the kill -9 test. It runs an agent on a classic-level store in
 * `argv[2]` at virtual time `argv[3]`, attests, then starts a renewal and freezes at the step named
 * in `argv[4]`, printing `AT <step>` so the parent can kill it there with SIGKILL.
 */
import { join } from 'node:path';
import { Level } from 'level';
import { Agent } from '../../../../runtime/agent/agent.ts';
import type { RotationStep } from '../../../../runtime/agent/exchange.ts';
import { newP256Key } from '../../../../runtime/agent/keys.ts';
import { nullLogger } from '../../../../runtime/core/logger.ts';
import { keyFileProtector } from '../../../../runtime/store/key-file.ts';
import { type LevelDb, SealedStore } from '../../../../runtime/store/sealed-store.ts';
import { VirtualClock } from '../../../../sim/clock/virtual-clock.ts';
import { seededRandom } from '../../../../sim/random.ts';
import { testSeed } from '../../../helpers/seed.ts';
import { FakeIssuer } from './fake-issuer.ts';
import { TestTokenAttestor } from './test-attestor.ts';

const [dir = '', at = '0', freezeAt = 'issuer-answered'] = process.argv.slice(2);
const clock = new VirtualClock(Number(at));
const random = seededRandom(`${testSeed()}/crash-child/${freezeAt}`); // one child per step and dir
const db = new Level<string, Uint8Array>(join(dir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'view' });
const store = await SealedStore.open({
  db: db as unknown as LevelDb,
  protector: await keyFileProtector(join(dir, 'kek'), random, nullLogger),
  random,
  logger: nullLogger,
});
const attestor = new TestTokenAttestor();
await attestor.start();
let armed = false;
const agent = new Agent({
  trustDomain: 'fleet.example',
  store,
  attestor,
  upstream: new FakeIssuer(clock, random).upstream(),
  clock,
  random,
  logger: nullLogger,
  newKey: newP256Key,
  onStep: async (step: RotationStep) => {
    if (!armed || step !== freezeAt) return;
    process.stdout.write(`AT ${step}\n`);
    await new Promise(() => setInterval(() => {}, 1000)); // frozen until SIGKILL
  },
});
await agent.start();
// The first attestation does real LevelDB and file I/O: let it finish, however loaded the machine.
for (let i = 0; i < 2000 && agent.svidSource.current() === undefined; i++) await clock.advance(0);
process.stdout.write(`ATTESTED ${agent.svidSource.getX509Svid().notAfter}\n`);
armed = true;
await clock.advance(40 * 60_000);
