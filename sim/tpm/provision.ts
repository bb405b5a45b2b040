/**
 * A fresh simulated TPM, as a manufacturer ships it: random hierarchy seeds, the TCG EKs
 * derived from the endorsement seed (RSA-2048 L-1 at 0x81010001, ECC P-256 L-2 at 0x81010002,
 * and — as swtpm_setup provisions it — ECC P-384 H-3 at 0x81010016; each byte-identical to what
 * CreatePrimary(ENDORSEMENT, template) gives later), their certificates in NV (0x01C00002,
 * 0x01C0000A, 0x01C00016, attributes as swtpm_setup writes them), and the manufacturer CA
 * certificates written beside the state.
 */

import { handleName, publicKeyOf } from '../../attestors/tpm/crypto/name.ts';
import { EK_NV, TPM_ALG, TPM_RH } from '../../attestors/tpm/wire/constants.ts';
import { marshalPublic, type TpmtPublic } from '../../attestors/tpm/wire/public.ts';
import {
  ekEccP256Template,
  ekEccP384Template,
  ekRsa2048Template,
} from '../../attestors/tpm/wire/templates.ts';
import type { Random } from '../../runtime/core/random.ts';
import { derivePrimary } from './create.ts';
import { createManufacturerCa } from './ekcert.ts';
import { qualifiedNameOf, type SimObject } from './object.ts';
import type { PersistentState } from './state.ts';
import { INTERMEDIATE_CA_FILE, ROOT_CA_FILE, type StateStore } from './store.ts';

/** 'rsa' = TCG L-1 RSA-2048, 'ecc' = L-2 ECC P-256, 'ecc384' = H-3 ECC P-384 (what swtpm_setup makes). */
export type EkType = 'rsa' | 'ecc' | 'ecc384';

export const EK_HANDLES = { rsa: 0x81010001, ecc: 0x81010002, ecc384: 0x81010016 } as const;
const EK_CERT_INDEX = {
  rsa: EK_NV.RSA2048_CERT,
  ecc: EK_NV.ECC_P256_CERT,
  ecc384: EK_NV.ECC_P384_H3_CERT,
} as const;
const EK_TEMPLATES = { rsa: ekRsa2048Template, ecc: ekEccP256Template, ecc384: ekEccP384Template } as const;
/** PPWRITE, WRITELOCKED, WRITEDEFINE, PPREAD, OWNERREAD, AUTHREAD, NO_DA, WRITTEN, PLATFORMCREATE. */
export const EK_CERT_NV_ATTRIBUTES = 0x62072801;

function ek(state: PersistentState, tpl: TpmtPublic): SimObject {
  const bytes = marshalPublic(tpl);
  const empty = { userAuth: Buffer.alloc(0), data: Buffer.alloc(0) };
  const g = derivePrimary(state.seeds.endorsement, bytes, tpl, empty, state.rsaCache);
  return {
    ...g,
    qualifiedName: qualifiedNameOf(handleName(TPM_RH.ENDORSEMENT), g.name),
    hierarchy: TPM_RH.ENDORSEMENT,
  };
}

export async function provision(
  store: StateStore,
  random: Random,
  nowMs: number,
  ekTypes: readonly EkType[],
): Promise<PersistentState> {
  const state: PersistentState = {
    seeds: { endorsement: random.bytes(32), owner: random.bytes(32), platform: random.bytes(32) },
    persistent: new Map(),
    nv: new Map(),
    clockMs: 0,
    resetCount: 0,
    restartCount: 0,
    shutdown: 'clear',
    savedPcrs: undefined,
    safe: true,
    daFailedTries: 0,
    rsaCache: new Map(),
  };
  const ca = await createManufacturerCa(random, nowMs);
  for (const type of ekTypes) {
    const obj = ek(state, EK_TEMPLATES[type]());
    state.persistent.set(EK_HANDLES[type], obj);
    const spki = publicKeyOf(obj.pub).export({ format: 'der', type: 'spki' });
    const cert = await ca.issueEk(spki, type === 'rsa' ? 'rsa' : 'ecc');
    const index = EK_CERT_INDEX[type];
    state.nv.set(index, {
      index,
      nameAlg: TPM_ALG.SHA256,
      attributes: EK_CERT_NV_ATTRIBUTES,
      authPolicy: Buffer.alloc(0),
      authValue: Buffer.alloc(0),
      data: cert,
    });
  }
  store.write(ROOT_CA_FILE, ca.rootPem);
  store.write(INTERMEDIATE_CA_FILE, ca.intermediatePem);
  store.save(state);
  return state;
}
