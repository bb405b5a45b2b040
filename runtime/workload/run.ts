/**
 * The Workload API as the agent runs it (called by the composition root, runtime/agent/run.ts):
 * the agent as the `WorkloadHost` (its delegated CA identity, bundle, clock state and change
 * events), the entries from `workload.entriesFile` reloaded without restart when the file changes
 * (a file that fails validation is logged and the previous entries stay; entitlement lost → the
 * stream ends), and in dev mode one entry `dev` for the uid that runs `npm start`.
 */
import { unwatchFile, watchFile } from 'node:fs';
import type { Agent } from '../agent/agent.ts';
import type { Clock } from '../core/clock.ts';
import { isEdgewardError } from '../core/error.ts';
import type { Logger } from '../core/logger.ts';
import type { Random } from '../core/random.ts';
import type { ContainerRoots } from './container-image.ts';
import { loadEntries, type WorkloadEntry } from './entries.ts';
import { WorkloadApiServer } from './server.ts';

export interface WorkloadPlan {
  readonly socket: string;
  readonly entriesFile?: string;
  /** Dev mode: one entry `dev` for this uid (when no entries file is given). */
  readonly devUid?: number;
  /** Container runtimes' state roots (`workload.containers`); default Debian's. */
  readonly containers?: ContainerRoots;
}

export async function startWorkloadApi(o: {
  readonly plan: WorkloadPlan;
  readonly agent: Agent;
  readonly trustDomain: string;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
}): Promise<{ readonly socket: string; close(): Promise<void> }> {
  const { plan, agent, logger } = o;
  let entries: readonly WorkloadEntry[] = [];
  if (plan.entriesFile !== undefined) entries = await loadEntries(plan.entriesFile);
  else if (plan.devUid !== undefined) entries = [{ name: 'dev', selectors: [`unix:uid:${plan.devUid}`] }];
  const server = new WorkloadApiServer({
    socketPath: plan.socket,
    entries,
    ...(plan.containers === undefined ? {} : { containers: plan.containers }),
    clock: o.clock,
    logger,
    host: {
      trustDomain: o.trustDomain,
      random: o.random,
      caIdentity: () => agent.caIdentity(),
      bundle: () => {
        try {
          return agent.bundleSource.getBundleFor(o.trustDomain);
        } catch {
          return undefined;
        }
      },
      jwtKeys: () => {
        try {
          return agent.bundleSource.jwtKeysFor(o.trustDomain);
        } catch {
          return undefined;
        }
      },
      fetchJwtSvid: (spiffeId, audience) => agent.requestJwtSvid(spiffeId, audience),
      clockTrusted: () => agent.clockTrusted(),
      now: () => agent.now(),
      onChange(listener) {
        const a = agent.svidSource.onChange(listener);
        const b = agent.bundleSource.onChange(listener);
        return () => {
          a();
          b();
        };
      },
    },
  });
  await server.start();
  const file = plan.entriesFile;
  if (file !== undefined) {
    watchFile(file, { interval: 2_000, persistent: false }, () => {
      loadEntries(file).then(
        (next) => server.setEntries(next),
        (err: unknown) =>
          logger.error('workload entries not reloaded: the previous entries stay', {
            event: 'workload.entries_invalid',
            code: isEdgewardError(err) ? err.code : 'unknown',
            message: (err as Error).message,
          }),
      );
    });
  }
  return {
    socket: plan.socket,
    async close() {
      if (file !== undefined) unwatchFile(file);
      await server.close();
    },
  };
}
