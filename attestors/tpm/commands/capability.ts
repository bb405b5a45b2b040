/** TPM2_GetCapability (Part 3 §30.2): pages with `moreData`. */
import { capabilityData, u32, yesNo } from '../client/codec.ts';
import { defineCommand } from '../client/command.ts';
import { TPM_CC } from '../wire/constants.ts';

export const GetCapability = defineCommand({
  name: 'GetCapability',
  code: TPM_CC.GetCapability,
  handles: {},
  params: { capability: u32, property: u32, propertyCount: u32 },
  response: { moreData: yesNo, capabilityData },
});
