/**
 * A policy compiled for one identity: the rules whose `match` pattern covers the caller's
 * SPIFFE ID, with `{device}` and `{name}` filled in and every filter split once. The broker
 * computes it at CONNECT and keeps it with the client, so each PUBLISH is a short loop over
 * pre-split filters (and a policy reload recompiles it for every live client).
 *
 * @example
 * ```ts
 * const g = grantsFor(policy, 'spiffe://td/gateway/gw-1/device/s1', 'spiffe://td/gateway/gw-1');
 * g?.canPublish('devices/s1/temp', false);   // true
 * ```
 *
 * Shared subscriptions are granted apart from plain ones (default deny both ways): a grant of
 * `$share/<group>/<filter>` lets the caller join that group (`+` as the group: any group) on any
 * filter `<filter>` covers, and nothing else; a plain grant of `devices/+/#` does not grant
 * `$share/g/devices/+/#`, nor the other way round.
 */
import { deviceIdOf } from '../../runtime/spiffe/id.ts';
import type { Policy } from './schema.ts';
import { ANY_GROUP, isShared, parseShared } from './share.ts';
import { covers, matches, splitFilter } from './topic.ts';

export const RESERVED_PREFIX = '$edgeward/';

export interface Grants {
  readonly spiffeId: string;
  /** The caller's device id when its ID is `<some gateway>/device/<id>`. */
  readonly deviceId: string | undefined;
  /** True when the MQTT client id may differ from the device id. */
  readonly anyClientId: boolean;
  readonly maxConnections: number;
  canPublish(topic: string, retain: boolean): boolean;
  /** True when `filter` (plain, or `$share/<group>/<filter>`) may be subscribed. */
  canSubscribe(filter: string): boolean;
  /** True when a message on `topic` may be delivered (the subscription is still granted). */
  canReceive(topic: string): boolean;
  /** The same for a delivery to a shared-subscription group member (checked against `$share` grants). */
  canReceiveShared(topic: string): boolean;
}

/** Compile a `match` pattern to a test on SPIFFE IDs; `{self}` is this gateway's SPIFFE ID. */
export function compileMatch(pattern: string, self: string): (id: string) => boolean {
  const levels = pattern.replaceAll('{self}', self).split('/');
  return (id) => {
    const parts = id.split('/');
    for (let i = 0; i < levels.length; i++) {
      const l = levels[i] as string;
      if (l === '**' && i === levels.length - 1) return parts.length > i;
      const p = parts[i];
      if (p === undefined) return false;
      if (l === '*') {
        if (p === '' || i < 3) return false;
        continue;
      }
      if (l !== p) return false;
    }
    return parts.length === levels.length;
  };
}

/** Fill `{device}` and `{name}`; undefined when the entry needs a device id the caller lacks. */
function fill(entry: string, deviceId: string | undefined, name: string): string | undefined {
  if (entry.includes('{device}') && deviceId === undefined) return undefined;
  return entry.replaceAll('{device}', deviceId ?? '').replaceAll('{name}', name);
}

/** The grants of `spiffeId` under `policy`, or undefined when no rule matches (deny). */
export function grantsFor(policy: Policy, spiffeId: string, self: string): Grants | undefined {
  const parts = spiffeId.split('/');
  const name = parts[parts.length - 1] ?? '';
  const deviceId =
    parts[parts.length - 2] === 'device' ? deviceIdOf(spiffeId, parts.slice(0, -2).join('/')) : undefined;
  const pub: (readonly string[])[] = [];
  const sub: (readonly string[])[] = [];
  const recv: (readonly string[])[] = [];
  const ret: (readonly string[])[] = [];
  const shared: SharedGrant[] = [];
  const deny: (readonly string[])[] = [];
  let matched = false;
  let anyClientId = false;
  let maxConnections = 0;
  for (const rule of policy.rules) {
    if (!compileMatch(rule.match, self)(spiffeId)) continue;
    matched = true;
    if (rule.clientId === 'any') anyClientId = true;
    maxConnections = Math.max(maxConnections, rule.maxConnections ?? (deviceId === undefined ? 4 : 1));
    const add = (list: readonly string[] | undefined, out: (readonly string[])[]): void => {
      for (const e of list ?? []) {
        const f = fill(e, deviceId, name);
        // Reserved topics are never granted; `$share/…` only as a shared grant (below).
        if (f !== undefined && !f.startsWith(RESERVED_PREFIX) && !isShared(f)) out.push(splitFilter(f));
      }
    };
    add(rule.publish, pub);
    add(rule.subscribe, sub);
    add(rule.retain, ret);
    for (const e of rule.deny ?? []) {
      const f = fill(e, deviceId, name);
      if (f !== undefined) deny.push(splitFilter(f));
    }
    for (const e of rule.subscribe ?? []) {
      const f = fill(e, deviceId, name);
      if (f === undefined || !isShared(f)) continue;
      const s = parseShared(f, { grant: true });
      // A malformed entry (only possible in a Policy given in code: files are checked) grants nothing.
      if ('problem' in s || s.filter.startsWith(RESERVED_PREFIX)) continue;
      shared.push({ group: s.group, filter: splitFilter(s.filter) });
    }
  }
  if (!matched) return undefined;
  recv.push(...sub);
  return new CompiledGrants(spiffeId, deviceId, anyClientId || deviceId === undefined, maxConnections, {
    pub,
    sub,
    recv,
    ret,
    shared,
    deny,
  });
}

type Filters = readonly (readonly string[])[];

/** One `$share/<group>/<filter>` grant; group `+` = any group. */
interface SharedGrant {
  readonly group: string;
  readonly filter: readonly string[];
}

/** Methods on the prototype, filters in fields: no closures per connected client. */
class CompiledGrants implements Grants {
  readonly spiffeId: string;
  readonly deviceId: string | undefined;
  readonly anyClientId: boolean;
  readonly maxConnections: number;
  readonly #pub: Filters;
  readonly #sub: Filters;
  readonly #recv: Filters;
  readonly #ret: Filters;
  readonly #shared: readonly SharedGrant[];
  readonly #deny: Filters;

  constructor(
    spiffeId: string,
    deviceId: string | undefined,
    anyClientId: boolean,
    maxConnections: number,
    f: {
      pub: Filters;
      sub: Filters;
      recv: Filters;
      ret: Filters;
      shared: readonly SharedGrant[];
      deny: Filters;
    },
  ) {
    this.spiffeId = spiffeId;
    this.deviceId = deviceId;
    this.anyClientId = anyClientId;
    this.maxConnections = maxConnections;
    this.#pub = f.pub;
    this.#sub = f.sub;
    this.#recv = f.recv;
    this.#ret = f.ret;
    this.#shared = f.shared;
    this.#deny = f.deny;
  }

  canPublish(topic: string, retain: boolean): boolean {
    if (topic.startsWith(RESERVED_PREFIX)) return false;
    return (
      anyMatches(this.#pub, topic) &&
      (!retain || anyMatches(this.#ret, topic)) &&
      !anyMatches(this.#deny, topic)
    );
  }

  canSubscribe(filter: string): boolean {
    if (filter.startsWith(RESERVED_PREFIX)) return false;
    if (isShared(filter)) {
      const s = parseShared(filter);
      if ('problem' in s) return false;
      const want = splitFilter(s.filter);
      return (
        !this.#deny.some((d) => covers(d, want)) &&
        this.#shared.some((g) => (g.group === ANY_GROUP || g.group === s.group) && covers(g.filter, want))
      );
    }
    const want = splitFilter(filter);
    // A filter entirely inside a deny is refused; one that overlaps it is filtered on delivery.
    return !this.#deny.some((d) => covers(d, want)) && this.#sub.some((f) => covers(f, want));
  }

  canReceive(topic: string): boolean {
    return anyMatches(this.#recv, topic) && !anyMatches(this.#deny, topic);
  }

  canReceiveShared(topic: string): boolean {
    if (anyMatches(this.#deny, topic)) return false;
    const s = this.#shared;
    for (let i = 0; i < s.length; i++) if (matches((s[i] as SharedGrant).filter, topic)) return true;
    return false;
  }
}

/** The per-message check: a plain loop, no closure allocated per call. */
function anyMatches(filters: Filters, topic: string): boolean {
  for (let i = 0; i < filters.length; i++) if (matches(filters[i] as readonly string[], topic)) return true;
  return false;
}
