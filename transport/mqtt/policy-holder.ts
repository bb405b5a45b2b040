/**
 * The broker's policy: loaded at start (from a file or given as an object), reloaded on demand
 * (a bad file throws ERR_POLICY_INVALID and the old policy stays), and re-applied to every live
 * session (`regrant`): a session whose identity no rule matches any more is closed, shared-group
 * members whose filter is no longer granted leave their group.
 *
 * @example
 * ```ts
 * const policy = await PolicyHolder.load({ file: '/etc/edgeward/policy.yaml' });
 * policy.grantsFor(svid.spiffeId, self);
 * await policy.reload();                // re-reads the file
 * policy.regrant(sessions, shared, self);
 * ```
 */
import type { Logger } from '../../runtime/core/logger.ts';
import { DEFAULT_POLICY } from '../policy/default.ts';
import { type Grants, grantsFor } from '../policy/grants.ts';
import type { Policy } from '../policy/schema.ts';
import type { Sessions } from './sessions.ts';
import type { SharedSubscriptions } from './shared.ts';

export type PolicySource = Policy | { readonly file: string };

/** The policy file reader (ajv, yaml) is loaded only when a file is configured. */
async function read(source: PolicySource): Promise<Policy> {
  if (!('file' in source)) return source;
  return (await import('../policy/load.ts')).loadPolicyFile(source.file);
}

export class PolicyHolder {
  readonly #source: PolicySource;
  readonly #logger: Logger;
  #policy: Policy;

  private constructor(source: PolicySource, policy: Policy, logger: Logger) {
    this.#source = source;
    this.#policy = policy;
    this.#logger = logger;
  }

  static async load(source: PolicySource = DEFAULT_POLICY, logger: Logger): Promise<PolicyHolder> {
    return new PolicyHolder(source, await read(source), logger);
  }

  get policy(): Policy {
    return this.#policy;
  }

  grantsFor(spiffeId: string, self: string): Grants | undefined {
    return grantsFor(this.#policy, spiffeId, self);
  }

  /** Replaces the policy by `next`, or re-reads the configured one; throws ERR_POLICY_INVALID and keeps the old one. */
  async reload(next?: Policy): Promise<void> {
    this.#policy = next ?? (await read(this.#source));
  }

  /** Recomputes every live session's grants; closes the sessions no rule admits any more. */
  regrant(sessions: Sessions, shared: SharedSubscriptions, self: string): void {
    for (const s of sessions.all()) {
      s.grants = this.grantsFor(s.svid.spiffeId, self);
      if (s.grants === undefined) {
        this.#logger.warn('session closed: no longer allowed by policy', { spiffeId: s.svid.spiffeId });
        s.socket.destroy();
      }
    }
    shared.regrant((c, topic) => sessions.of(c.conn)?.grants?.canSubscribe(topic) === true);
    this.#logger.info('policy reloaded', { rules: this.#policy.rules.length });
  }
}
