/**
 * TEST ONLY: two real issuer replicas, A and B (in-process HTTPS servers on one in-memory store
 * and one dev CA, on one virtual clock), with join-token attestation and a join token for `gw-1`
 * in a file the returned attestor reads. Once `arm()`ed, replica A dies (`abort`; with `single`
 * its port keeps listening, as a load balancer's connection reset) at the first store batch that
 * puts a key under `diesAt.prefix`: before that batch (mid-request) or right after its COMMIT
 * (the answer lost). `seen` notes the death. For the lost-answer and replica-dies suites.
 *
 * @example
 * ```ts
 * const r = await dyingReplicas('lost-', { single: false, diesAt: { prefix: 'done/', commit: 'after' } });
 * r.arm(); // ... an agent on r.upstream, r.attestor ...
 * await r.close();
 * ```
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JoinTokenAttestor } from '../../../../attestors/join-token/attestor.ts';
import { nullLogger } from '../../../../runtime/core/logger.ts';
import { cryptoRandom } from '../../../../runtime/core/random.ts';
import { createDevIssuerFiles } from '../../../../runtime/issuer/dev.ts';
import { type RunningIssuer, startIssuer } from '../../../../runtime/issuer/start.ts';
import { type IssuerStore, openMemoryStore } from '../../../../runtime/issuer/store.ts';
import { httpsUpstream } from '../../../../runtime/upstream/client.ts';
import type { Upstream } from '../../../../runtime/upstream/types.ts';
import { VirtualClock } from '../../../../sim/clock/virtual-clock.ts';

export const TD = 'fleet.example';

export interface DyingReplicas {
  readonly clock: VirtualClock;
  /** The store both replicas share (B uses it as is). */
  readonly shared: IssuerStore;
  readonly a: RunningIssuer;
  readonly b: RunningIssuer;
  /** `[a]` with `single`, else `[a, b]`, trusting the dev CA, on `clock`. */
  readonly upstream: Upstream;
  readonly attestor: JoinTokenAttestor;
  /** 'A died after its COMMIT' or 'A died mid-request', once A died. */
  readonly seen: string[];
  /** From now on, A dies at the next matching batch (once). */
  arm(): void;
  close(): Promise<void>;
}

export async function dyingReplicas(
  prefix: string,
  o: { single: boolean; diesAt: { prefix: string; commit: 'before' | 'after' } },
): Promise<DyingReplicas> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const clock = new VirtualClock(Date.now());
  const shared = await openMemoryStore();
  const files = await createDevIssuerFiles(join(dir, 'ca'), { trustDomain: TD, clock, random: cryptoRandom });
  let killA: (() => void) | undefined;
  const seen: string[] = [];
  const dies = (ops: Parameters<IssuerStore['batch']>[0]): (() => void) | undefined => {
    if (killA === undefined || !ops.some((op) => op.type === 'put' && op.key.startsWith(o.diesAt.prefix)))
      return undefined;
    const kill = killA;
    killA = undefined;
    seen.push(o.diesAt.commit === 'after' ? 'A died after its COMMIT' : 'A died mid-request');
    return kill;
  };
  // Replica A's view of the store: when armed, the replica dies at a matching batch.
  const storeA: IssuerStore = {
    kind: shared.kind,
    get: (k) => shared.get(k),
    getEntry: (k) => shared.getEntry(k),
    getEntries: (k) => shared.getEntries(k),
    list: (p, opts) => shared.list(p, opts),
    nextSequence: (n) => shared.nextSequence(n),
    dropSequences: (p, lt) => shared.dropSequences(p, lt),
    subscribe: (c, l) => shared.subscribe(c, l),
    tryLock: (n) => shared.tryLock(n),
    close: async () => {},
    batch: async (ops) => {
      if (o.diesAt.commit === 'before') dies(ops)?.();
      const out = await shared.batch(ops);
      if (o.diesAt.commit === 'after') dies(ops)?.();
      return out;
    },
  };
  const replica = (store: IssuerStore): Promise<RunningIssuer> =>
    startIssuer({
      trustDomain: TD,
      store,
      ca: files.ca,
      tls: files.tls,
      clock,
      random: cryptoRandom,
      logger: nullLogger,
      methods: { joinToken: { enabled: true } },
      closeStore: false,
    });
  const a = await replica(storeA);
  const b = await replica(shared);
  const caPem = new X509Certificate(files.ca.certificate).toString();
  writeFileSync(join(dir, 'token'), await a.issuer.createJoinToken('gw-1', 600_000), { mode: 0o600 });
  const attestor = new JoinTokenAttestor({ tokenFile: join(dir, 'token') });
  await attestor.start();
  const upstream = httpsUpstream({ endpoints: o.single ? [a.url] : [a.url, b.url], ca: [caPem], clock });
  return {
    clock,
    shared,
    a,
    b,
    upstream,
    attestor,
    seen,
    arm: () => {
      killA = () => a.abort({ keepListening: o.single });
    },
    close: async () => {
      await a.close();
      await b.close();
      await shared.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
