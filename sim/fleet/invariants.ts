/**
 * The promises the fleet simulation checks after every step, judged in TRUE time (the fleet
 * clock), whatever a gateway's own clock says:
 * - `no-expired-served`: a gateway never serves an SVID (or a chain certificate) past its NotAfter;
 * - `no-expired-accepted`: a device credential the gateway authorizes is valid, every certificate
 *   of its path included; a device SVID is never issued past its delegated CA's NotAfter;
 * - `revocation`: once a gateway's feed has reached the sequence that revoked a device, that
 *   device is never authorized again;
 * - `recovery`: after the issuer (or a partitioned link) returns, every gateway that noticed the
 *   outage is back to a working upstream within one backoff cap (plus the breaker's open time and
 *   one step of the simulation);
 * - `store-loads`: every boot of a gateway opens its store and starts the agent, and a gateway
 *   that had a still-valid identity when it was killed serves it at once after the reboot.
 * - `firmware-gate`: a gateway whose PCRs match no signed manifest obtains no new identity.
 * - `qos1-no-loss`: on the gateways with real brokers, every QoS 1 message whose PUBACK a
 *   device got reaches the subscribing device (duplicates allowed), see qos-ledger.ts; one check
 *   per message judged.
 * - `qos1-acked`: a QoS 1 message a device published while connected gets its PUBACK (judged at
 *   the end of the run, one check per such message; a device whose session ended for good at its
 *   gateway's budget end is exempt, and counted as such in the ledger).
 * - `no-lockout-within-budget`: a device on a gateway with a real broker is never locked out
 *   (`ERR_DEVICE_SVID_EXPIRED`) while its gateway's budget (the delegated CA) lasts; no operator
 *   stand-in re-enrolls it (one check per device per step).
 * - `local-stops-at-budget-end`: once a gateway's budget has ended (true time past the CA's
 *   NotAfter), no device is connected to its broker (one check per gateway per step).
 * - `devices-renew-offline`: in the offline-budget scenarios, devices keep renewing over MQTT while
 *   the upstream is away, and none re-enrolls.
 * Devices are checked over MQTT (the device SDK against the real broker), never by signing
 * through the agent.
 * Every check counts as run; a failed one is a violation with its time, gateway and reason.
 *
 * @example
 * ```ts
 * const inv = new Invariants(trustDomain);
 * inv.scenario = 'issuer-outage';
 * inv.checkGateway(gw, clock.now());
 * inv.results(); // per scenario: checks, violations
 * ```
 */
import type { X509Certificate } from 'node:crypto';
import type { VerifiedSvid } from '../../runtime/spiffe/verify.ts';
import type { SimDevice } from './devices.ts';
import type { SimGateway } from './gateway.ts';
import type { MqttGateway } from './mqtt-gateway.ts';

export type InvariantName =
  | 'no-expired-served'
  | 'no-expired-accepted'
  | 'revocation'
  | 'recovery'
  | 'store-loads'
  | 'firmware-gate'
  | 'qos1-no-loss'
  | 'qos1-acked'
  | 'no-lockout-within-budget'
  | 'local-stops-at-budget-end'
  | 'devices-renew-offline';

export interface Violation {
  readonly at: number;
  readonly scenario: string;
  readonly invariant: InvariantName;
  readonly gateway: string;
  readonly detail: string;
}

export interface ScenarioResult {
  readonly scenario: string;
  checks: number;
  violations: number;
  /** Longest recovery measured in the scenario, ms (undefined: nothing to recover from). */
  recoveryMs: number | undefined;
}

export class Invariants {
  readonly trustDomain: string;
  scenario = 'baseline';
  readonly violations: Violation[] = [];
  readonly #results = new Map<string, ScenarioResult>();
  readonly #qosSeen = new Map<MqttGateway, number>();
  /** Lock-outs already judged, per MQTT gateway. */
  readonly #lockoutsSeen = new Map<MqttGateway, number>();
  /** The last budget end (delegated CA NotAfter) seen per MQTT gateway. */
  readonly #budgetEnd = new Map<MqttGateway, number>();

  constructor(trustDomain: string) {
    this.trustDomain = trustDomain;
  }

  #result(): ScenarioResult {
    let r = this.#results.get(this.scenario);
    if (r === undefined) {
      r = { scenario: this.scenario, checks: 0, violations: 0, recoveryMs: undefined };
      this.#results.set(this.scenario, r);
    }
    return r;
  }

  /** Count one check; record a violation when `ok` is false. */
  check(ok: boolean, invariant: InvariantName, gw: SimGateway, at: number, detail: () => string): void {
    const r = this.#result();
    r.checks++;
    if (ok) return;
    r.violations++;
    this.violations.push({ at, scenario: this.scenario, invariant, gateway: gw.name, detail: detail() });
  }

  recovery(ms: number): void {
    const r = this.#result();
    r.recoveryMs = Math.max(r.recoveryMs ?? 0, ms);
  }

  /** What the gateway serves right now must be valid in true time. */
  checkGateway(gw: SimGateway, trueNow: number): void {
    const agent = gw.agent;
    if (agent === undefined) return;
    let served: { chain: readonly X509Certificate[]; notAfter: number } | undefined;
    try {
      served = agent.svidSource.getX509Svid();
    } catch {
      served = undefined; // refusing to serve is always allowed
    }
    if (served === undefined) return;
    const s = served;
    const earliest = Math.min(s.notAfter, ...s.chain.map((c) => Date.parse(c.validTo)));
    this.check(
      earliest > trueNow,
      'no-expired-served',
      gw,
      trueNow,
      () => `served an SVID expired at ${iso(earliest)} (gateway clock ${iso(gw.now())})`,
    );
  }

  issuedDevice(gw: SimGateway, d: SimDevice, chain: readonly Uint8Array[], trueNow: number): void {
    const caNotAfter = gw.agent?.svidSource.loaded()?.ca.notAfter ?? 0;
    this.check(
      d.notAfter <= caNotAfter && d.notAfter > trueNow,
      'no-expired-accepted',
      gw,
      trueNow,
      () =>
        `device ${d.id} issued until ${iso(d.notAfter)} (CA until ${iso(caNotAfter)}, ${chain.length} certs)`,
    );
  }

  authorizedDevice(gw: SimGateway, d: SimDevice, v: VerifiedSvid, trueNow: number): void {
    // The verifier's NotAfter is the path's earliest; the leaf's own is checked independently.
    const earliest = Math.min(v.notAfter, d.leafNotAfter);
    this.check(
      earliest > trueNow,
      'no-expired-accepted',
      gw,
      trueNow,
      () => `device ${d.id} authorized with a path expired at ${iso(earliest)}`,
    );
    const seq = gw.agent?.revocations.sequence ?? 0;
    const known = d.revokedAtSequence !== undefined && seq >= d.revokedAtSequence;
    this.check(
      !known,
      'revocation',
      gw,
      trueNow,
      () =>
        `device ${d.id} authorized after its revocation (sequence ${d.revokedAtSequence}) reached the gateway`,
    );
  }

  /** Judge the QoS 1 ledger of one MQTT gateway after a settled step. */
  checkQos(m: MqttGateway, step: number, trueNow: number, final = false): void {
    const received = m.ledger.stats.received;
    const r = this.#result();
    r.checks += received - (this.#qosSeen.get(m) ?? 0);
    this.#qosSeen.set(m, received);
    for (const lost of m.ledger.due(step, m.collectorSince, final))
      this.check(
        false,
        'qos1-no-loss',
        m.gw,
        trueNow,
        () =>
          `${lost.device} message ${lost.seq}, acknowledged at step ${lost.ackedAtStep} (${lost.note}), never delivered`,
      );
  }

  /** After a settled step: lock-outs within the budget, and nothing local after the budget's end. */
  checkMqtt(m: MqttGateway, trueNow: number): void {
    const now = m.budgetEnd();
    if (now !== undefined) this.#budgetEnd.set(m, now);
    const end = this.#budgetEnd.get(m);
    const lockouts = m.lockouts;
    for (let i = this.#lockoutsSeen.get(m) ?? 0; i < lockouts.length; i++) {
      const l = lockouts[i] as (typeof lockouts)[number];
      const budget = l.budgetEnd ?? end;
      this.check(
        budget !== undefined && l.at >= budget,
        'no-lockout-within-budget',
        m.gw,
        l.at,
        () =>
          `device ${l.device} locked out (ERR_DEVICE_SVID_EXPIRED) at ${iso(l.at)}, budget until ${budget === undefined ? 'unknown' : iso(budget)}`,
      );
    }
    this.#lockoutsSeen.set(m, lockouts.length);
    // One check per device per step: not locked out, or locked out legitimately (judged above).
    const r = this.#result();
    r.checks += m.devices.length - lockouts.length;
    if (end !== undefined && trueNow > end) {
      const connected = m.devices.filter((d) => d.client.connected).length;
      this.check(
        connected === 0,
        'local-stops-at-budget-end',
        m.gw,
        trueNow,
        () =>
          `${connected} devices still connected ${Math.round((trueNow - end) / 1000)} s after the budget ended at ${iso(end)}`,
      );
    }
  }

  /** The end of the run: every QoS 1 message published while connected got its PUBACK. */
  checkAcked(m: MqttGateway, trueNow: number): void {
    const r = this.#result();
    const before = m.ledger.stats.sentConnected - m.ledger.stats.exempted;
    const missing = m.ledger.unacknowledged();
    r.checks += Math.max(0, before - missing.length);
    for (const key of missing)
      this.check(
        false,
        'qos1-acked',
        m.gw,
        trueNow,
        () => `${key} published while connected, never acknowledged`,
      );
  }

  results(): ScenarioResult[] {
    return [...this.#results.values()];
  }
}

export const iso = (ms: number): string => (Number.isFinite(ms) ? new Date(ms).toISOString() : String(ms));
