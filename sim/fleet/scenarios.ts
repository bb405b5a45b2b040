/**
 * The fault scenarios of issue 9, each a script over a running `Fleet`: it names itself on the
 * invariant checker (so checks and violations are counted per scenario), injects its fault
 * between steps, and ends after the fleet has settled. Randomness (which gateway, when, at which
 * rotation step) comes from the fleet's seeded source, so a run is reproducible from its seed.
 *
 * @example
 * ```ts
 * for (const s of SCENARIOS) await s.run(fleet, ctx);
 * ```
 */
import { createHash, generateKeyPairSync } from 'node:crypto';
import { execute } from '../../attestors/tpm/client/execute.ts';
import { PCR_Extend } from '../../attestors/tpm/commands/pcr.ts';
import { TPM_ALG } from '../../attestors/tpm/wire/constants.ts';
import type { RotationStep } from '../../runtime/agent/exchange.ts';
import type { Random } from '../../runtime/core/random.ts';
import type { DeviceGroup } from './devices.ts';
import { type Fleet, HOUR, MIN } from './fleet.ts';
import type { SimGateway } from './gateway.ts';

export interface ScenarioContext {
  readonly random: Random;
  readonly svidTtlMs: number;
  /** Gateway kills in the kill -9 scenario (issue: at least 100 in the long soak). */
  readonly kills: number;
  readonly log: (t: number, what: string) => void;
}

export interface Scenario {
  readonly name: string;
  run(f: Fleet, ctx: ScenarioContext): Promise<void>;
}

const pick = <T>(r: Random, xs: readonly T[]): T => xs[Math.floor(r.float() * xs.length)] as T;

async function settle(f: Fleet, ms: number): Promise<void> {
  await f.runFor(ms);
}

async function reboot(f: Fleet, gw: SimGateway, ctx: ScenarioContext): Promise<void> {
  const now = f.clock.now();
  const had = gw.lastKnownNotAfter;
  try {
    await gw.boot();
  } catch (err) {
    f.invariants.check(false, 'store-loads', gw, now, () => `boot failed: ${(err as Error).message}`);
    ctx.log(now, `${gw.name}: boot FAILED`);
    return;
  }
  f.invariants.check(true, 'store-loads', gw, now, () => '');
  // Cached start: a still-valid identity is served at once (with a sane clock).
  if (had !== undefined && had > now + MIN && gw.clockOffset === 0)
    f.invariants.check(
      gw.agent?.status().serving === true,
      'store-loads',
      gw,
      now,
      () => `identity valid until ${new Date(had).toISOString()} not served after reboot`,
    );
}

export const issuerOutage: Scenario = {
  name: 'issuer down 3x SVID lifetime',
  async run(f, ctx) {
    ctx.log(f.clock.now(), 'issuer down');
    f.network.issuerDown = true;
    await f.runFor(3 * ctx.svidTtlMs);
    f.network.issuerDown = false;
    ctx.log(f.clock.now(), 'issuer back');
    await f.awaitRecovery(f.gateways);
    await settle(f, ctx.svidTtlMs);
  },
};

export const partition: Scenario = {
  name: 'partition gateway/issuer (refuse, black hole, delay)',
  async run(f, ctx) {
    const gw = f.gateways[0] as SimGateway;
    const how = f.network.isReal(gw.name) ? 'TCP proxy' : 'in-process link';
    ctx.log(f.clock.now(), `${gw.name}: connections refused (${how})`);
    f.network.partition(gw.name, 'drop');
    await f.runFor(ctx.svidTtlMs);
    ctx.log(f.clock.now(), `${gw.name}: black hole (${how})`);
    f.network.partition(gw.name, 'blackhole');
    await f.runFor(ctx.svidTtlMs);
    // Over the proxy every chunk of the TLS handshake and the exchange waits (about 6 of them):
    // 0.5 s each stays well under the client's 10 s timeout; in-process the whole answer waits 20 s.
    const delay = f.network.isReal(gw.name) ? 500 : 20_000;
    ctx.log(f.clock.now(), `${gw.name}: delayed ${delay / 1000} s (${how})`);
    f.network.partition(gw.name, 'delay', delay);
    // The black hole is over: recovery is measured over the slow link.
    const from = f.clock.now();
    const took = await f.awaitRecovery([gw]);
    ctx.log(f.clock.now(), `${gw.name}: recovered over the delayed link in ${Math.round(took / 1000)} s`);
    await f.runFor(Math.max(0, from + ctx.svidTtlMs - f.clock.now()));
    f.network.partition(gw.name, 'ok');
    ctx.log(f.clock.now(), `${gw.name}: link healed`);
    await f.awaitRecovery([gw]);
    await settle(f, ctx.svidTtlMs / 2);
  },
};

export const issuerRestartRotatedCa: Scenario = {
  name: 'issuer restart with a rotated CA',
  async run(f, ctx) {
    const next = f.newCa();
    await f.issuer.prepareCa(next);
    ctx.log(f.clock.now(), 'next CA published in the bundle');
    // Gateways pick the new bundle up from their feed before the CA signs anything.
    await f.runFor(10 * MIN);
    await f.issuer.rotateCa();
    ctx.log(f.clock.now(), 'issuer restarts on the rotated CA');
    await f.restartIssuer(next);
    await f.runFor(ctx.svidTtlMs);
    await settle(f, ctx.svidTtlMs);
  },
};

export const kills: Scenario = {
  name: 'gateway kill -9 at random points',
  async run(f, ctx) {
    const steps: (RotationStep | 'idle')[] = ['idle', 'keys-generated', 'issuer-answered', 'stored'];
    for (let i = 0; i < ctx.kills; i++) {
      await f.runFor(MIN * (1 + Math.floor(ctx.random.float() * 10)));
      const gw = pick(
        ctx.random,
        f.gateways.filter((g) => g.alive),
      );
      if (gw === undefined) continue;
      const step = pick(ctx.random, steps);
      gw.rememberIdentity();
      if (step === 'idle') await f.kill(gw, ctx.random);
      else {
        gw.killAtStep = step;
        void gw.agent?.rotateNow().catch(() => {});
        await f.clock.advance(0);
        if (gw.alive) gw.kill(); // the rotation did not reach that step (nothing due): kill anyway
        gw.killAtStep = undefined;
      }
      await f.runFor(MIN * Math.floor(ctx.random.float() * 3));
      await reboot(f, gw, ctx);
    }
    ctx.log(f.clock.now(), `${ctx.kills} kills done`);
    await settle(f, ctx.svidTtlMs);
  },
};

export const clockJumps: Scenario = {
  name: 'gateway clock to 1970 and +1 week',
  async run(f, ctx) {
    const back = f.gateways[1 % f.gateways.length] as SimGateway;
    const fwd = f.gateways[2 % f.gateways.length] as SimGateway;
    ctx.log(f.clock.now(), `${back.name}: clock to 1970`);
    back.setClockOffset(-f.clock.now());
    await f.runFor(20 * MIN);
    back.setClockOffset(0);
    ctx.log(f.clock.now(), `${back.name}: clock restored`);
    await f.runFor(10 * MIN);
    if (fwd !== back) {
      ctx.log(f.clock.now(), `${fwd.name}: clock +1 week`);
      fwd.setClockOffset(7 * 24 * HOUR);
      await f.runFor(20 * MIN);
      fwd.setClockOffset(0);
      ctx.log(f.clock.now(), `${fwd.name}: clock restored`);
    }
    // Both clocks are right again: each gateway must be working within the recovery bound.
    await f.awaitRecovery([back, fwd]);
    await settle(f, ctx.svidTtlMs);
  },
};

export const tpmReset: Scenario = {
  name: 'TPM reset (power cycle) and reboot',
  async run(f, ctx) {
    for (const gw of f.gateways.slice(0, 2)) {
      gw.rememberIdentity();
      await f.kill(gw, ctx.random);
      await gw.resetTpm();
      ctx.log(f.clock.now(), `${gw.name}: TPM reset`);
      await reboot(f, gw, ctx);
    }
    await settle(f, ctx.svidTtlMs);
  },
};

export const revokedDevice: Scenario = {
  name: 'device revoked mid-session',
  async run(f, ctx) {
    const gw = f.gateways[0] as SimGateway;
    const group = f.groups[0] as DeviceGroup;
    const d = group.devices[0];
    const gwId = gw.agent?.status().spiffeId;
    if (d === undefined || gwId === undefined) return;
    const { sequence } = await f.issuer.revoke('spiffe-id', `${gwId}/device/${d.id}`);
    d.revokedAtSequence = sequence;
    const from = f.clock.now();
    ctx.log(from, `${gw.name}/${d.id} revoked (sequence ${sequence})`);
    while ((gw.agent?.revocations.sequence ?? 0) < sequence && f.clock.now() - from < ctx.svidTtlMs)
      await f.step();
    f.invariants.recovery(f.clock.now() - from); // here: how long until the gateway knew
    await settle(f, ctx.svidTtlMs);
  },
};

export const firmwareUpdate: Scenario = {
  name: 'firmware update with and without a valid manifest',
  async run(f, ctx) {
    const good = f.gateways[f.gateways.length > 3 ? 3 : 0] as SimGateway;
    const bad = f.gateways[f.gateways.length > 4 ? 4 : f.gateways.length - 1] as SimGateway;
    const update = async (gw: SimGateway, measurement: Buffer): Promise<string> => {
      await execute(gw.tpm, PCR_Extend, {
        pcrHandle: 7,
        digests: [{ hash: TPM_ALG.SHA256, digest: measurement }],
      });
      return createHash('sha256').update(Buffer.alloc(32)).update(measurement).digest('hex');
    };
    const goodDigest = createHash('sha256').update('firmware 2.0.0').digest();
    const goodPcr7 = createHash('sha256').update(Buffer.alloc(32)).update(goodDigest).digest('hex');
    await f.addManifest('2.0.0', { 7: goodPcr7 }, f.vendorKey);
    await update(good, goodDigest);
    ctx.log(f.clock.now(), `${good.name}: firmware 2.0.0 with a signed manifest`);
    if (bad !== good) {
      const rogue = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
      const badPcr7 = await update(bad, createHash('sha256').update('firmware 6.6.6').digest());
      let refused = false;
      try {
        await f.addManifest('6.6.6', { 7: badPcr7 }, rogue);
      } catch {
        refused = true;
      }
      f.invariants.check(
        refused,
        'firmware-gate',
        bad,
        f.clock.now(),
        () => 'issuer accepted a manifest signed by an unknown key',
      );
      ctx.log(f.clock.now(), `${bad.name}: firmware 6.6.6, manifest refused by the issuer`);
      const since = f.clock.now();
      await f.runFor(ctx.svidTtlMs * 1.5);
      const obtained = bad.agent?.status().lastRotation?.at ?? 0;
      f.invariants.check(
        obtained <= since,
        'firmware-gate',
        bad,
        f.clock.now(),
        () =>
          `gateway with unapproved firmware obtained a new identity at ${new Date(obtained).toISOString()}`,
      );
    }
    const last = good.agent?.status().lastRotation?.at ?? 0;
    await f.runFor(ctx.svidTtlMs);
    f.invariants.check(
      (good.agent?.status().lastRotation?.at ?? 0) > last,
      'recovery',
      good,
      f.clock.now(),
      () => 'gateway with approved firmware stopped rotating',
    );
    await settle(f, ctx.svidTtlMs / 2);
  },
};

export const mqttRestarts: Scenario = {
  name: 'MQTT gateway restarts (graceful, kill -9) under QoS 1 traffic',
  async run(f, ctx) {
    for (let round = 0; round < 3; round++) {
      for (const m of f.mqtt) {
        const gw = m.gw;
        if (!gw.alive) continue;
        gw.rememberIdentity();
        if (round % 2 === 0) {
          ctx.log(f.clock.now(), `${gw.name}: graceful restart`);
          await gw.stop();
        } else {
          ctx.log(f.clock.now(), `${gw.name}: kill -9 with QoS 1 traffic in flight`);
          await f.kill(gw, ctx.random);
        }
        await f.runFor(MIN);
        await reboot(f, gw, ctx);
        await f.runFor(5 * MIN);
      }
    }
    await settle(f, ctx.svidTtlMs / 2);
  },
};

export const SCENARIOS: readonly Scenario[] = [
  issuerOutage,
  partition,
  issuerRestartRotatedCa,
  kills,
  clockJumps,
  tpmReset,
  revokedDevice,
  firmwareUpdate,
  mqttRestarts,
];

const DAY = 24 * HOUR;

/** The fleet's MQTT devices (the device SDK on real brokers), counted over every MQTT gateway. */
const mqttTotals = (f: Fleet): { lockouts: number; reenrolled: number; rotations: number } =>
  f.mqtt.reduce(
    (a, m) => ({
      lockouts: a.lockouts + m.lockouts.length,
      reenrolled: a.reenrolled + m.reenrolled,
      rotations: a.rotations + m.deviceRotations,
    }),
    { lockouts: 0, reenrolled: 0, rotations: 0 },
  );

/**
 * The upstream (issuer) away for `days` while the MQTT gateways keep serving their devices, in
 * 5-minute steps (the devices' 10-minute renewal timeout stays beyond one step). The invariants
 * of every step apply (no lock-out within the budget, nothing local after its end); the scenario
 * adds what the days away must show, then brings the upstream back and measures recovery.
 */
async function upstreamAway(
  f: Fleet,
  ctx: ScenarioContext,
  days: number,
  judge: (before: ReturnType<typeof mqttTotals>) => void,
): Promise<void> {
  const step = f.stepMs;
  const before = mqttTotals(f);
  ctx.log(f.clock.now(), `upstream away for ${days} days`);
  f.network.issuerDown = true;
  f.stepMs = 5 * MIN;
  try {
    await f.runFor(days * DAY);
  } finally {
    f.stepMs = step;
  }
  judge(before);
  f.network.issuerDown = false;
  ctx.log(f.clock.now(), 'upstream back');
  await f.awaitRecovery(f.gateways);
  await settle(f, ctx.svidTtlMs);
}

export const upstreamAway3Days: Scenario = {
  name: 'upstream away 3 days (7-day budget)',
  async run(f, ctx) {
    await upstreamAway(f, ctx, 3, (before) => {
      const now = f.clock.now();
      const after = mqttTotals(f);
      for (const m of f.mqtt) {
        for (const d of m.devices)
          f.invariants.check(
            d.notAfter > now && d.state !== 'lockedOut',
            'devices-renew-offline',
            m.gw,
            now,
            () =>
              `device ${d.deviceId} ${d.state}, SVID until ${new Date(d.notAfter).toISOString()} after 3 days away`,
          );
      }
      f.invariants.check(
        after.lockouts === before.lockouts && after.reenrolled === before.reenrolled,
        'devices-renew-offline',
        f.gateways[0] as SimGateway,
        now,
        () =>
          `${after.lockouts - before.lockouts} lock-outs and ${after.reenrolled - before.reenrolled} re-enrollments in 3 days away`,
      );
      f.invariants.check(
        after.rotations > before.rotations,
        'devices-renew-offline',
        f.gateways[0] as SimGateway,
        now,
        () => 'no device renewal in 3 days away',
      );
      ctx.log(now, `3 days away: ${after.rotations - before.rotations} device renewals over MQTT`);
    });
  },
};

export const upstreamAway8Days: Scenario = {
  name: 'upstream away 8 days (7-day budget)',
  async run(f, ctx) {
    await upstreamAway(f, ctx, 8, () => {
      const now = f.clock.now();
      // The budget really ended while away (so the per-step "nothing local after its end" was judged).
      for (const m of f.mqtt) {
        const end = m.budgetEnd();
        f.invariants.check(
          end === undefined || end <= now,
          'local-stops-at-budget-end',
          m.gw,
          now,
          () => `budget still lasts until ${new Date(end ?? 0).toISOString()} after 8 days away`,
        );
      }
      ctx.log(now, `8 days away: ${mqttTotals(f).lockouts} devices locked out after the budget end`);
    });
  },
};

/** Multi-day scenarios, run only when named (`--only upstream`), with a 7-day budget (`--budget-days 7`). */
export const BUDGET_SCENARIOS: readonly Scenario[] = [upstreamAway3Days, upstreamAway8Days];
