/**
 * PCR commands: TPM2_PCR_Read (Part 3 §22.4; at most 8 digests per call), TPM2_PCR_Extend (§22.2;
 * one digest per active bank), TPM2_PCR_Reset (§22.8; debug PCR 16 only from locality 0).
 */
import { digestList, digestValues, pcrSelection, u32 } from '../client/codec.ts';
import { defineCommand } from '../client/command.ts';
import { TPM_CC } from '../wire/constants.ts';

export const PCR_Read = defineCommand({
  name: 'PCR_Read',
  code: TPM_CC.PCR_Read,
  handles: {},
  params: { pcrSelectionIn: pcrSelection },
  response: { pcrUpdateCounter: u32, pcrSelectionOut: pcrSelection, pcrValues: digestList },
});

export const PCR_Extend = defineCommand({
  name: 'PCR_Extend',
  code: TPM_CC.PCR_Extend,
  handles: { pcrHandle: 'auth' },
  params: { digests: digestValues },
  response: {},
});

export const PCR_Reset = defineCommand({
  name: 'PCR_Reset',
  code: TPM_CC.PCR_Reset,
  handles: { pcrHandle: 'auth' },
  params: {},
  response: {},
});
