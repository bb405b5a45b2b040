/**
 * NV commands: TPM2_NV_ReadPublic (Part 3 §31.6) and TPM2_NV_Read (§31.13; at most
 * TPM_PT_NV_BUFFER_MAX bytes per call — read EK certificates in chunks).
 */
import { b2, nvPublic, u16 } from '../client/codec.ts';
import { defineCommand } from '../client/command.ts';
import { TPM_CC } from '../wire/constants.ts';

export const NV_ReadPublic = defineCommand({
  name: 'NV_ReadPublic',
  code: TPM_CC.NV_ReadPublic,
  handles: { nvIndex: 'none' },
  params: {},
  response: { nvPublic, nvName: b2(68) },
});

export const NV_Read = defineCommand({
  name: 'NV_Read',
  code: TPM_CC.NV_Read,
  handles: { authHandle: 'auth', nvIndex: 'none' },
  params: { size: u16, offset: u16 },
  response: { data: b2(2048) },
});
