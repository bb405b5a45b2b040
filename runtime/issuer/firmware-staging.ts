/**
 * Firmware: signed manifests an operator publishes (their PCR reference values), and a
 * gateway's staging of a new version (post-install over mTLS, then commit or retract with the
 * staging ticket; `firmware.ts` holds the pure state changes).
 */
import { createHash } from 'node:crypto';
import { IssuerError } from '../errors.ts';
import type { EndStagingResponse, StageResponse } from '../firmware/protocol.ts';
import type { AuditInfo, IssuerCore, RequestContext } from './core.ts';
import { commitStaged, retractStaged, stageVersion } from './firmware.ts';
import { updateGateway } from './gateways.ts';
import { acceptManifest } from './manifests.ts';
import { authenticatePeer } from './peer.ts';
import { type GatewayRecord, K } from './records.ts';

export async function addManifest(
  core: IssuerCore,
  body: unknown,
  ctx: RequestContext,
): Promise<{ version: string }> {
  const record = acceptManifest(body, core.firmwareKeys, core.clock.now());
  await core.store.batch([
    { type: 'put' as const, key: K.manifest(record.bank, record.version), value: record },
    core.audit.op({ event: 'manifest', detail: record.version, address: ctx.address }),
  ]);
  core.setManifests([
    ...core.manifests().filter((x) => !(x.version === record.version && x.bank === record.bank)),
    record,
  ]);
  return { version: record.version };
}

/** post-install, over mTLS with the gateway's SVID: stage `version` for this gateway. */
export async function stageFirmware(
  core: IssuerCore,
  body: unknown,
  ctx: RequestContext,
  info: AuditInfo,
): Promise<StageResponse> {
  const gw = await authenticatePeer(core, ctx, info);
  const version = (body as { version?: unknown } | null)?.version;
  if (typeof version !== 'string' || version.length === 0 || version.length > 64)
    throw new IssuerError('ERR_ISSUER_BAD_REQUEST', 'firmware stage: body must be { version }');
  const ticket = core.random.bytes(32);
  const next = stageVersion(
    gw,
    version,
    core.manifests(),
    createHash('sha256').update(ticket).digest(),
    core.clock.now(),
  );
  await saveFirmwareState(core, next, ctx, `stage ${version}`);
  return { gateway: gw.name, version, ticket };
}

/** commit or rollback of the gateway's staged firmware, authorised by the staging ticket. */
export async function endFirmware(
  core: IssuerCore,
  kind: 'commit' | 'retract',
  body: unknown,
  ctx: RequestContext,
  info: AuditInfo,
): Promise<EndStagingResponse> {
  const b = body as { gateway?: unknown; ticket?: unknown } | null;
  if (typeof b?.gateway !== 'string' || !(b.ticket instanceof Uint8Array))
    throw new IssuerError('ERR_ISSUER_BAD_REQUEST', `firmware ${kind}: body must be { gateway, ticket }`);
  core.checkName(b.gateway);
  info.gateway = b.gateway;
  const gw = await core.store.get<GatewayRecord>(K.gateway(b.gateway));
  if (gw === undefined)
    throw new IssuerError('ERR_ISSUER_FIRMWARE_TICKET', 'no firmware staged with this ticket');
  const next = kind === 'commit' ? commitStaged(gw, b.ticket) : retractStaged(gw, b.ticket);
  await saveFirmwareState(core, next, ctx, `${kind} ${gw.firmwareStaged?.version}`);
  return {
    gateway: gw.name,
    ...(next.firmwareAccepted === undefined ? {} : { accepted: next.firmwareAccepted }),
  };
}

/** The gateway's firmware staging state changed: store it with its audit event. */
async function saveFirmwareState(
  core: IssuerCore,
  gw: GatewayRecord,
  ctx: RequestContext,
  detail: string,
): Promise<void> {
  await updateGateway(core, gw.name, (current) => {
    // Only the firmware fields are this change's: the rest (disabled, budget) stays as stored now.
    if (current === undefined)
      throw new IssuerError('ERR_ISSUER_FIRMWARE_TICKET', 'no firmware staged with this ticket');
    const { firmwareAccepted: _a, firmwareStaged: _s, ...rest } = current;
    return {
      record: {
        ...rest,
        ...(gw.firmwareAccepted === undefined ? {} : { firmwareAccepted: gw.firmwareAccepted }),
        ...(gw.firmwareStaged === undefined ? {} : { firmwareStaged: gw.firmwareStaged }),
      },
      ops: [core.audit.op({ event: 'manifest', gateway: gw.name, address: ctx.address, detail })],
    };
  });
}
