/** TPM2_Startup (Part 3 §9.3) and TPM2_Shutdown (§9.4). Never sent through /dev/tpmrm0. */
import { u16 } from '../client/codec.ts';
import { defineCommand } from '../client/command.ts';
import { TPM_CC } from '../wire/constants.ts';

export const Startup = defineCommand({
  name: 'Startup',
  code: TPM_CC.Startup,
  handles: {},
  params: { startupType: u16 },
  response: {},
});

export const Shutdown = defineCommand({
  name: 'Shutdown',
  code: TPM_CC.Shutdown,
  handles: {},
  params: { shutdownType: u16 },
  response: {},
});
