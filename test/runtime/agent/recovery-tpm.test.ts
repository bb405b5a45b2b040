/**
 * A TPM gateway's recovery, on swtpm and on the TypeScript simulator, against the real issuer in
 * process (TPM method, EK chain to the TPM's manufacturer CA, PCR policy `any`): after an outage
 * longer than its SVID it recovers by proof of possession of the delegated CA key AND a fresh
 * quote by its AK (the issuer requires it of a TPM gateway); after an outage longer than the
 * delegated CA, with the breaker open for 30 min, it re-attests within one probe interval of the
 * issuer's return.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TpmAttestor } from '../../../attestors/tpm/attestor.ts';
import { openTransport } from '../../../attestors/tpm/transport/open.ts';
import type { TpmTransport } from '../../../attestors/tpm/transport/transport.ts';
import type { RecoverFinishRequest } from '../../../runtime/upstream/protocol.ts';
import { seededRandom } from '../../../sim/random.ts';
import { launchSwtpm } from '../../../sim/swtpm/launcher.ts';
import { openSimTransport } from '../../../sim/tpm/index.ts';
import { rejects } from '../../helpers/rejects.ts';
import { HOUR, harness, MIN } from './helpers/harness.ts';

const QUOTED = 'sha256:0,1,2,7';

/** The next change of the served SVID: swtpm answers over a socket, in real time, after `advance`. */
const nextChange = (agent: { svidSource: { onChange(f: () => void): () => void } }): Promise<void> =>
  new Promise((resolve) => {
    const off = agent.svidSource.onChange(() => {
      off();
      resolve();
    });
  });

interface Tpm {
  roots: X509Certificate[];
  intermediates: X509Certificate[];
  transport: TpmTransport;
  stop(): Promise<void>;
}

async function tpmOf(kind: 'swtpm' | 'sim', dir: string): Promise<Tpm> {
  if (kind === 'swtpm') {
    const tpm = await launchSwtpm();
    const transport = await openTransport(tpm.spec);
    return {
      roots: [tpm.root],
      intermediates: [tpm.intermediate],
      transport,
      stop: async () => {
        await transport.close();
        await tpm.stop();
      },
    };
  }
  const state = join(dir, 'tpm');
  const transport = await openSimTransport(state);
  const pem = (f: string) => new X509Certificate(readFileSync(join(state, f)));
  return {
    roots: [pem('manufacturer-root-ca.pem')],
    intermediates: [pem('manufacturer-intermediate-ca.pem')],
    transport,
    stop: () => transport.close(),
  };
}

for (const kind of ['swtpm', 'sim'] as const) {
  test(`${kind}: a TPM gateway recovers an expired SVID by CA-key PoP with a fresh quote, and re-attests at once after its CA expired`, async () => {
    const dir = mkdtempSync(join(tmpdir(), `edgeward-recover-${kind}-`));
    const tpm = await tpmOf(kind, dir);
    try {
      const attestor = new TpmAttestor({
        transport: tpm.transport,
        random: seededRandom(`tpm-${kind}`),
        pcrSelection: QUOTED,
        ownsTransport: false,
      });
      await attestor.start();
      const h = await harness(
        {
          attestor,
          backoff: { delay: () => 1000 },
          breaker: { failures: 3, openMs: 30 * MIN },
          probeMs: 15_000,
        },
        {
          real: true,
          // The EK certificates are dated by the real clock.
          start: Date.now(),
          realMethods: {
            tpm: {
              manufacturerRoots: tpm.roots,
              intermediates: tpm.intermediates,
              pcrSelection: QUOTED,
              autoRegister: true,
              pcrPolicy: 'any',
            },
          },
        },
      );
      const first = nextChange(h.agent);
      await h.clock.advance(0);
      await first;
      const gw = h.agent.svidSource.getX509Svid().spiffeId;
      assert.match(gw, /^spiffe:\/\/fleet\.example\/gateway\/tpm-/);

      // Away 2 h: the SVID (1 h) expired, the delegated CA (24 h) has not.
      h.issuer.faults.set('*', 'down');
      await h.clock.advance(2 * HOUR);
      await rejects(() => h.agent.svidSource.getX509Svid(), 'ERR_SVID_UNAVAILABLE');
      assert.is(h.agent.status().breaker.state, 'open');
      h.issuer.faults.clear();
      const back = h.clock.now();
      const recovered = nextChange(h.agent);
      await h.clock.advance(15_000);
      await recovered;
      assert.is(h.agent.svidSource.getX509Svid().spiffeId, gw);
      const finish = h.issuer.calls.find((c) => c.path === '/v1/recover/finish');
      assert.ok(finish !== undefined && finish.at - back <= 15_000, 'within one probe interval');
      const body = finish?.body as RecoverFinishRequest;
      assert.ok(body.caSignature.length > 0);
      assert.ok(body.quote !== undefined && body.quote.length > 0, 'a fresh quote');
      assert.is(body.pcrValues?.length, 4);
      assert.is(h.issuer.count('/v1/attest/finish'), 1);

      // Away 25 h: the CA expired too; only attestation is left, and it runs at the first answer.
      h.issuer.faults.set('*', 'down');
      await h.clock.advance(25 * HOUR);
      assert.is(h.agent.status().deviceCa, undefined);
      h.issuer.faults.clear();
      const back2 = h.clock.now();
      const reattested = nextChange(h.agent);
      await h.clock.advance(15_000);
      await reattested;
      assert.is(h.agent.svidSource.getX509Svid().spiffeId, gw);
      const attested = h.issuer.calls.filter((c) => c.path === '/v1/attest/finish');
      assert.is(attested.length, 2);
      assert.ok((attested[1]?.at ?? 0) - back2 <= 15_000, 're-attested within one probe interval');
      await h.agent.stop();
      await attestor.close();
    } finally {
      await tpm.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test.run();
