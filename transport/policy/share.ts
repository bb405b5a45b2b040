/**
 * Shared-subscription filters, `$share/<group>/<filter>` (MQTT 5 §4.8.2), as MQTT 3.1.1 clients
 * send them: a plain topic filter whose first level is `$share`. The group is one non-empty
 * level without `+` or `#`; the rest is an ordinary topic filter. In a policy grant (and only
 * there) a group of exactly `+` stands for any group.
 *
 * @example
 * ```ts
 * parseShared('$share/workers/jobs/#');        // { group: 'workers', filter: 'jobs/#' }
 * parseShared('$share/+/jobs/#');              // { problem: "'+' is not a share group ..." }
 * parseShared('$share/+/jobs/#', { grant: true }); // { group: '+', filter: 'jobs/#' }: any group
 * ```
 */
import { filterProblem } from './topic.ts';

export const SHARE_PREFIX = '$share/';

/** The group a grant uses to allow every group. */
export const ANY_GROUP = '+';

export interface SharedFilter {
  /** The share name; `+` (any group) only in grants. */
  readonly group: string;
  /** The topic filter the group shares. */
  readonly filter: string;
}

/** True when `filter` is (or tries to be) a shared subscription: its first level is `$share`. */
export function isShared(filter: string): boolean {
  return filter === '$share' || filter.startsWith(SHARE_PREFIX);
}

/** Split a shared filter into group and filter, or say why it is malformed. */
export function parseShared(
  topic: string,
  options: { readonly grant?: boolean } = {},
): SharedFilter | { readonly problem: string } {
  if (!topic.startsWith(SHARE_PREFIX)) return { problem: 'a shared subscription is $share/<group>/<filter>' };
  const rest = topic.slice(SHARE_PREFIX.length);
  const slash = rest.indexOf('/');
  if (slash === -1) return { problem: 'no topic filter after the share group ($share/<group>/<filter>)' };
  const group = rest.slice(0, slash);
  const filter = rest.slice(slash + 1);
  if (group === '') return { problem: 'empty share group' };
  if (group.includes('#') || (group.includes('+') && !(options.grant === true && group === ANY_GROUP))) {
    return {
      problem:
        options.grant === true
          ? `share group ${JSON.stringify(group)}: '#' is never allowed, '+' only as the whole group (any group)`
          : `share group ${JSON.stringify(group)} contains a wildcard`,
    };
  }
  if (isShared(filter)) return { problem: 'a shared filter cannot itself be $share/…' };
  const p = filterProblem(filter);
  if (p !== undefined) return { problem: `shared filter: ${p}` };
  return { group, filter };
}
