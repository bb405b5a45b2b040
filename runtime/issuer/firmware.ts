/**
 * Which firmware versions a gateway may attest with (runtime/firmware/protocol.ts): pure
 * functions on the gateway record, used by the issuer's staging endpoints and by every quote
 * check. A gateway without `firmwareAccepted` (never updated through the hooks) accepts every
 * published version; after its first commit only the committed one, plus a staged one while an
 * update is in flight.
 *
 * @example
 * ```ts
 * const refs = manifestsFor(gateway, allManifests); // what checkQuote may match
 * const next = stage(gateway, '2.0', sha256(ticket), now);
 * ```
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { IssuerError } from '../errors.ts';
import type { GatewayRecord, ManifestRecord } from './records.ts';

/** The reference values a quote of `gw` may match. */
export function manifestsFor(
  gw: GatewayRecord | undefined,
  all: readonly ManifestRecord[],
): readonly ManifestRecord[] {
  const accepted = gw?.firmwareAccepted;
  if (accepted === undefined) return all;
  const staged = gw?.firmwareStaged?.version;
  return all.filter((m) => accepted.includes(m.version) || m.version === staged);
}

export function stageVersion(
  gw: GatewayRecord,
  version: string,
  known: readonly ManifestRecord[],
  ticketHash: Uint8Array,
  now: number,
): GatewayRecord {
  if (!known.some((m) => m.version === version))
    throw new IssuerError('ERR_ISSUER_FIRMWARE_UNKNOWN', `no published manifest for firmware ${version}`);
  // From the first staging on, the gateway is pinned: what it runs now (proven by its last
  // attestation) plus the staged version — so a retracted version no longer attests.
  const accepted = gw.firmwareAccepted ?? (gw.firmware === undefined ? undefined : [gw.firmware]);
  return {
    ...gw,
    ...(accepted === undefined ? {} : { firmwareAccepted: accepted }),
    firmwareStaged: { version, ticketHash, at: now },
  };
}

/** Check the ticket of the gateway's staging (constant time); returns the staged version. */
export function checkTicket(gw: GatewayRecord | undefined, ticket: Uint8Array): string {
  const staged = gw?.firmwareStaged;
  const got = createHash('sha256').update(ticket).digest();
  if (
    staged === undefined ||
    staged.ticketHash.length !== got.length ||
    !timingSafeEqual(Buffer.from(staged.ticketHash), got)
  )
    throw new IssuerError('ERR_ISSUER_FIRMWARE_TICKET', 'no firmware staged with this ticket');
  return staged.version;
}

/** Commit: the staged version, which the gateway has attested with, becomes the only one. */
export function commitStaged(gw: GatewayRecord, ticket: Uint8Array): GatewayRecord {
  const version = checkTicket(gw, ticket);
  if (gw.firmware !== version)
    throw new IssuerError(
      'ERR_ISSUER_FIRMWARE_UNPROVEN',
      `gateway ${gw.name} has not attested with firmware ${version} (last: ${gw.firmware ?? 'none'})`,
    );
  const { firmwareStaged: _, ...rest } = gw;
  return { ...rest, firmwareAccepted: [version] };
}

/** Retract: drop the staged version; what was accepted before stays. */
export function retractStaged(gw: GatewayRecord, ticket: Uint8Array): GatewayRecord {
  checkTicket(gw, ticket);
  const { firmwareStaged: _, ...rest } = gw;
  return rest;
}
