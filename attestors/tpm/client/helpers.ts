/**
 * Multi-call operations built on `execute` (brief §3, §6 P13): capability paging, GetRandom in
 * digest-sized pieces, PCR_Read in 8-digest chunks, NV reads in NV_BUFFER_MAX chunks, Startup that
 * tolerates an already-started TPM, and flushing that never throws.
 *
 * @example
 * ```ts
 * const values = await readPcrs(transport, parsePcrSelection('sha256:0,1,2,7'));
 * ```
 */
import { AttestorError } from '../../errors.ts';
import { GetCapability } from '../commands/capability.ts';
import { FlushContext } from '../commands/context.ts';
import { NV_Read, NV_ReadPublic } from '../commands/nv.ts';
import { PCR_Read } from '../commands/pcr.ts';
import { GetRandom } from '../commands/random.ts';
import { Startup } from '../commands/startup.ts';
import type { TpmTransport } from '../transport/transport.ts';
import { TPM_CAP, TPM_PT, TPM_RH, TPM_SU, TPMA_NV } from '../wire/constants.ts';
import { type PcrSelection, pcrCount } from '../wire/pcr-selection.ts';
import { isRc, RC } from '../wire/rc.ts';
import { execute } from './execute.ts';

/** TPM2_Startup(CLEAR); TPM_RC_INITIALIZE means it was already started (swtpm startup-clear). */
export async function startup(t: TpmTransport): Promise<void> {
  try {
    await execute(t, Startup, { startupType: TPM_SU.CLEAR });
  } catch (err) {
    if (!isRc(err, RC.INITIALIZE)) throw err;
  }
}

/** All TPM properties from `first` on (paged). */
export async function tpmProperties(
  t: TpmTransport,
  first: number = TPM_PT.MANUFACTURER,
): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  let next = first;
  for (let page = 0; page < 64; page++) {
    const r = await execute(t, GetCapability, {
      capability: TPM_CAP.TPM_PROPERTIES,
      property: next,
      propertyCount: 64,
    });
    if (r.capabilityData.capability !== TPM_CAP.TPM_PROPERTIES)
      throw new AttestorError('ERR_TPM_MALFORMED', 'GetCapability answered another capability');
    const props = r.capabilityData.properties;
    for (const p of props) out.set(p.property, p.value);
    const last = props.at(-1);
    if (!r.moreData || last === undefined) break;
    next = last.property + 1;
  }
  return out;
}

/** Handles of one type from `first` (e.g. 0x81000000 persistent, 0x01000000 NV), paged. */
export async function listHandles(t: TpmTransport, first: number): Promise<number[]> {
  const out: number[] = [];
  const top = first >>> 24;
  let next = first;
  for (let page = 0; page < 64; page++) {
    const r = await execute(t, GetCapability, {
      capability: TPM_CAP.HANDLES,
      property: next,
      propertyCount: 64,
    });
    if (r.capabilityData.capability !== TPM_CAP.HANDLES)
      throw new AttestorError('ERR_TPM_MALFORMED', 'GetCapability answered another capability');
    const hs = r.capabilityData.handles.filter((h) => h >>> 24 === top);
    out.push(...hs);
    const last = hs.at(-1);
    if (!r.moreData || last === undefined) break;
    next = last + 1;
  }
  return out;
}

/** Active PCR banks (an allocated bank with no PCR selected is inactive). */
export async function activeBanks(t: TpmTransport): Promise<number[]> {
  const r = await execute(t, GetCapability, { capability: TPM_CAP.PCRS, property: 0, propertyCount: 1 });
  if (r.capabilityData.capability !== TPM_CAP.PCRS)
    throw new AttestorError('ERR_TPM_MALFORMED', 'GetCapability answered another capability');
  return r.capabilityData.pcrs.filter((b) => b.pcrs.length > 0).map((b) => b.hash);
}

/** `n` random bytes from the TPM. */
export async function tpmRandom(t: TpmTransport, n: number): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  let have = 0;
  while (have < n) {
    const { randomBytes } = await execute(t, GetRandom, { bytesRequested: Math.min(n - have, 64) });
    if (randomBytes.length === 0) throw new AttestorError('ERR_TPM_STATE', 'GetRandom returned no bytes');
    parts.push(randomBytes);
    have += randomBytes.length;
  }
  return Buffer.concat(parts).subarray(0, n);
}

/** PCR values in selection order, read 8 at a time; a PCR the TPM will not return is an error. */
export async function readPcrs(t: TpmTransport, selection: PcrSelection): Promise<Buffer[]> {
  const out = new Map<string, Buffer>();
  let left = selection.map((b) => ({ hash: b.hash, pcrs: [...b.pcrs] })).filter((b) => b.pcrs.length > 0);
  for (let round = 0; left.length > 0; round++) {
    if (round > 24) throw new AttestorError('ERR_TPM_STATE', 'PCR_Read made no progress');
    const r = await execute(t, PCR_Read, { pcrSelectionIn: left });
    const got = r.pcrSelectionOut;
    if (pcrCount(got) !== r.pcrValues.length || r.pcrValues.length === 0)
      throw new AttestorError(
        'ERR_TPM_STATE',
        `PCR_Read returned nothing for ${JSON.stringify(left)} (bank inactive?)`,
      );
    let i = 0;
    for (const bank of got)
      for (const p of bank.pcrs) out.set(`${bank.hash}:${p}`, Buffer.from(r.pcrValues[i++] as Uint8Array));
    left = left
      .map((b) => ({ hash: b.hash, pcrs: b.pcrs.filter((p) => !out.has(`${b.hash}:${p}`)) }))
      .filter((b) => b.pcrs.length > 0);
  }
  return selection.flatMap((b) => b.pcrs.map((p) => out.get(`${b.hash}:${p}`) as Buffer));
}

/** The whole contents of an NV index, read in chunks of at most NV_BUFFER_MAX. */
export async function readNv(t: TpmTransport, index: number, chunk?: number): Promise<Buffer> {
  const { nvPublic } = await execute(t, NV_ReadPublic, { nvIndex: index });
  const step = chunk ?? (await tpmProperties(t, TPM_PT.NV_BUFFER_MAX)).get(TPM_PT.NV_BUFFER_MAX) ?? 512;
  const authHandle = nvPublic.attributes & TPMA_NV.OWNERREAD ? TPM_RH.OWNER : index;
  const parts: Uint8Array[] = [];
  for (let offset = 0; offset < nvPublic.dataSize; ) {
    const size = Math.min(step, nvPublic.dataSize - offset);
    const { data } = await execute(t, NV_Read, { authHandle, nvIndex: index, size, offset });
    if (data.length !== size)
      throw new AttestorError('ERR_TPM_MALFORMED', `NV_Read returned ${data.length} of ${size} bytes`);
    parts.push(data);
    offset += size;
  }
  return Buffer.concat(parts);
}

/** FlushContext that never throws (cleanup in `finally`); returns whether it succeeded. */
export async function flush(t: TpmTransport, handle: number | undefined): Promise<boolean> {
  if (handle === undefined) return false;
  try {
    await execute(t, FlushContext, { flushHandle: handle });
    return true;
  } catch {
    return false;
  }
}
