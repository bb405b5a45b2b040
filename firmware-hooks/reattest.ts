/**
 * Post-boot re-attestation through the agent's own exchange (runtime/agent/exchange.ts): a fresh
 * attestation (never a renewal: the old SVID proves the old firmware), the issuer checking the
 * new measurements against its reference values, and the new identity and bundle committed to
 * the store in one batch, as the agent does after every rotation. Endpoints fail over as the
 * agent's do (`Failover`): an unreachable one is skipped, a refusal is final.
 *
 * @example
 * ```ts
 * const reattest = agentReattest({ db, attestor, upstream, trustDomain, newKey, clock, random, logger });
 * const id = await reattest(transitionProtector);
 * ```
 */
import type { KeyObject } from 'node:crypto';
import type { Attestor } from '../attestors/attestor.ts';
import { exchange } from '../runtime/agent/exchange.ts';
import type { Clock } from '../runtime/core/clock.ts';
import type { Logger } from '../runtime/core/logger.ts';
import type { Random } from '../runtime/core/random.ts';
import type { DataKeyProtector } from '../runtime/store/protector.ts';
import { NAMES } from '../runtime/store/records.ts';
import { type LevelDb, SealedStore } from '../runtime/store/sealed-store.ts';
import { Failover } from '../runtime/upstream/failover.ts';
import type { Upstream } from '../runtime/upstream/types.ts';
import type { Reattested } from './context.ts';

export interface ReattestDeps {
  readonly db: LevelDb;
  readonly attestor: Attestor;
  readonly upstream: Upstream;
  readonly trustDomain: string;
  readonly newKey: () => KeyObject;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  /** The broker's host names, for DNS/IP SANs on the new SVID (as the agent asks). */
  readonly serverNames?: readonly string[] | undefined;
}

export function agentReattest(d: ReattestDeps): (protector: DataKeyProtector) => Promise<Reattested> {
  const failover = new Failover(d.upstream);
  return async (protector) => {
    const store = await SealedStore.open({ db: d.db, protector, random: d.random, logger: d.logger });
    const got = await failover.run(
      (ep) =>
        exchange({ mode: 'attest' }, ep, {
          attestor: d.attestor,
          trustDomain: d.trustDomain,
          newKey: d.newKey,
          now: () => d.clock.now(),
          serverNames: d.serverNames,
        }),
      (url, err) =>
        d.logger.warn('re-attestation failed at one endpoint', {
          event: 'ota.reattest.endpoint',
          endpoint: url,
          code: (err as { code?: string }).code,
        }),
    );
    await store.batch([
      { type: 'put', name: NAMES.gateway, value: got.record },
      {
        type: 'put',
        name: NAMES.bundle,
        value: { trustDomain: d.trustDomain, json: got.bundle.json, sequence: got.bundle.sequence },
      },
    ]);
    const leaf = got.live.svid.chain[0];
    return {
      spiffeId: got.live.svid.spiffeId,
      serial: leaf === undefined ? '' : leaf.serialNumber.toLowerCase(),
      notAfter: got.live.svid.notAfter,
    };
  };
}
