/**
 * The broker's authorization policy file (YAML), default deny. One TypeBox schema gives both the
 * validation and the `Policy` type.
 *
 * ```yaml
 * version: 1
 * rules:
 *   - match: "{self}/device/*"          # {self} = this gateway's SPIFFE ID; * = one segment, ** = the rest
 *     clientId: device                  # device (default): MQTT client id must be the device id; any
 *     maxConnections: 1                 # per identity (default 1 for device rules, else 4)
 *     publish:   ["devices/{device}/#"] # {device} = the caller's device id, {name} = its last segment
 *     subscribe: ["devices/{device}/#", "jobs/{device}", "$share/workers/tasks/#"]
 *     retain:    ["devices/{device}/state"]   # where retained messages may be published
 *     deny:      ["devices/{device}/secret/#"] # taken back from every grant above (publish, subscribe, receive, retain)
 * ```
 * `deny` entries (like mosquitto's `topic deny`) subtract from the grants of every rule that
 * matches the identity: a topic a deny filter matches is neither published nor received, and a
 * subscription entirely inside a deny is refused (one that only overlaps it is granted and the
 * denied topics are not delivered). A deny must narrow a grant of its own rule (`policy check`
 * reports one that takes back nothing, with its line).
 * Every matching rule adds its grants; an identity that no rule matches cannot connect.
 * Shared subscriptions are granted in `subscribe` as `$share/<group>/<filter>` (`+` as the group:
 * any group; templates as elsewhere, e.g. `$share/{name}/jobs/#`). They are granted apart from
 * plain filters: `devices/+/#` does not grant `$share/g/devices/+/#`, nor the other way round.
 * `$share/…` in `publish` or `retain` does not load. The broker delivers each message to one
 * connected member of each group (`transport/mqtt/shared.ts`).
 * `$edgeward/...` topics are reserved for enrollment, renewal and the bundle: a policy cannot grant them.
 */
import { type Static, Type } from '@sinclair/typebox';

const Filters = Type.Array(Type.String({ minLength: 1, maxLength: 1024 }), { maxItems: 256 });

export const PolicyRuleSchema = Type.Object(
  {
    match: Type.String({ minLength: 1, maxLength: 2048 }),
    clientId: Type.Optional(Type.Union([Type.Literal('device'), Type.Literal('any')])),
    maxConnections: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
    publish: Type.Optional(Filters),
    subscribe: Type.Optional(Filters),
    retain: Type.Optional(Filters),
    deny: Type.Optional(Filters),
  },
  { additionalProperties: false },
);

export const PolicySchema = Type.Object(
  {
    version: Type.Literal(1),
    rules: Type.Array(PolicyRuleSchema, { maxItems: 1024 }),
  },
  { additionalProperties: false },
);

export type PolicyRule = Static<typeof PolicyRuleSchema>;
export type Policy = Static<typeof PolicySchema>;

export { DEFAULT_POLICY } from './default.ts';
