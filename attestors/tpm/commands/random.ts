/** TPM2_GetRandom (Part 3 §16.1): at most the largest digest size per call. */
import { b2, u16 } from '../client/codec.ts';
import { defineCommand } from '../client/command.ts';
import { TPM_CC } from '../wire/constants.ts';

export const GetRandom = defineCommand({
  name: 'GetRandom',
  code: TPM_CC.GetRandom,
  handles: {},
  params: { bytesRequested: u16 },
  response: { randomBytes: b2(64) },
});
