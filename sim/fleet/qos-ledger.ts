/**
 * The books of the QoS 1 no-loss invariant: every message a publisher sent, the step at which its
 * PUBACK reached the publisher, and what the subscriber received. A message whose PUBACK the
 * publisher got must reach the subscriber (duplicates allowed, loss not). It is judged lost when
 * it is still missing although the subscriber has been connected through a whole settled step
 * since the acknowledgement (two steps at least), or at the end of the run after the final drain.
 *
 * The other half: a message a device published while it was connected must get its PUBACK
 * (`unacknowledged()` at the end lists the ones that never did; `exempt(device)` removes a device
 * whose session ended for good at its gateway's budget end, when no PUBACK can come any more).
 *
 * @example
 * ```ts
 * const ledger = new QosLedger();
 * const seq = ledger.sent('d0');
 * ledger.acked('d0', seq, step);
 * ledger.received('d0', seq);
 * ledger.due(step, collectorConnectedSince); // lost messages, each reported once
 * ```
 */

export interface LostMessage {
  readonly device: string;
  readonly seq: number;
  readonly ackedAtStep: number;
  /** What the subscriber side looked like at the PUBACK (which broker incarnation, subscribed or not). */
  readonly note: string;
}

export interface LedgerStats {
  sent: number;
  acked: number;
  received: number;
  duplicates: number;
  lost: number;
  /** Published while the publisher was connected. */
  sentConnected: number;
  /** Of those, never acknowledged (judged at the end). */
  unacknowledged: number;
  /** Of those, exempted: the publisher's session ended for good at its gateway's budget end. */
  exempted: number;
}

export class QosLedger {
  readonly stats: LedgerStats = {
    sent: 0,
    acked: 0,
    received: 0,
    duplicates: 0,
    lost: 0,
    sentConnected: 0,
    unacknowledged: 0,
    exempted: 0,
  };
  /** Published while connected and not acknowledged yet. */
  readonly #owedAck = new Set<string>();
  readonly #next = new Map<string, number>();
  /** Acknowledged and not yet received: key → step of the PUBACK. */
  readonly #waiting = new Map<string, LostMessage>();
  readonly #received = new Set<string>();
  /** Sent, not yet acknowledged (in flight, or resent after a reconnect). */
  readonly #inFlight = new Set<string>();

  /** A new sequence number for `device`'s next message. */
  sent(device: string, connected = false): number {
    const seq = (this.#next.get(device) ?? 0) + 1;
    this.#next.set(device, seq);
    this.stats.sent++;
    this.#inFlight.add(`${device}#${seq}`);
    if (connected) {
      this.stats.sentConnected++;
      this.#owedAck.add(`${device}#${seq}`);
    }
    return seq;
  }

  /** `device`'s session ended for good at its gateway's budget end: no PUBACK is owed any more. */
  exempt(device: string): void {
    for (const key of this.#owedAck)
      if (key.startsWith(`${device}#`)) {
        this.#owedAck.delete(key);
        this.stats.exempted++;
      }
  }

  /** Messages published while connected that never got their PUBACK (the end of a run). */
  unacknowledged(): string[] {
    const out = [...this.#owedAck];
    this.stats.unacknowledged += out.length;
    this.#owedAck.clear();
    return out;
  }

  /** The publisher got the PUBACK of (device, seq). */
  acked(device: string, seq: number, step: number, note = ''): void {
    const key = `${device}#${seq}`;
    this.#owedAck.delete(key);
    if (!this.#inFlight.delete(key)) return;
    this.stats.acked++;
    if (!this.#received.has(key)) this.#waiting.set(key, { device, seq, ackedAtStep: step, note });
  }

  /** The publish failed for good (the client was closed): not acknowledged, so not owed. */
  abandoned(device: string, seq: number): void {
    this.#inFlight.delete(`${device}#${seq}`);
  }

  /** Every unacknowledged message of `device` (its client was replaced): not owed. */
  abandonAll(device: string): void {
    for (const key of this.#inFlight) if (key.startsWith(`${device}#`)) this.#inFlight.delete(key);
  }

  /** The subscriber received (device, seq). */
  received(device: string, seq: number): void {
    const key = `${device}#${seq}`;
    if (this.#received.has(key)) {
      this.stats.duplicates++;
      return;
    }
    this.#received.add(key);
    this.stats.received++;
    this.#waiting.delete(key);
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Acknowledged messages the subscriber has not received yet. */
  get outstanding(): number {
    return this.#waiting.size;
  }

  /**
   * Messages now judged lost: acknowledged at least two steps ago and still missing although the
   * subscriber has been connected since step `subscriberSince` <= `step - 1` (a whole settled
   * step). `final` judges everything still missing.
   */
  due(step: number, subscriberSince: number | undefined, final = false): LostMessage[] {
    const lost: LostMessage[] = [];
    for (const [key, m] of this.#waiting) {
      const late =
        final || (step >= m.ackedAtStep + 2 && subscriberSince !== undefined && subscriberSince <= step - 1);
      if (!late) continue;
      this.#waiting.delete(key);
      this.stats.lost++;
      lost.push(m);
    }
    return lost;
  }
}
