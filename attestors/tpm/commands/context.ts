/**
 * Context management: TPM2_FlushContext (Part 3 §28.4; the handle is a *parameter*),
 * TPM2_EvictControl (§28.5), TPM2_ContextSave (§28.2) and TPM2_ContextLoad (§28.3).
 */
import { context, u32 } from '../client/codec.ts';
import { defineCommand } from '../client/command.ts';
import { TPM_CC } from '../wire/constants.ts';

export const FlushContext = defineCommand({
  name: 'FlushContext',
  code: TPM_CC.FlushContext,
  handles: {},
  params: { flushHandle: u32 },
  response: {},
});

export const EvictControl = defineCommand({
  name: 'EvictControl',
  code: TPM_CC.EvictControl,
  handles: { auth: 'auth', objectHandle: 'none' },
  params: { persistentHandle: u32 },
  response: {},
});

export const ContextSave = defineCommand({
  name: 'ContextSave',
  code: TPM_CC.ContextSave,
  handles: { saveHandle: 'none' },
  params: {},
  response: { context },
});

export const ContextLoad = defineCommand({
  name: 'ContextLoad',
  code: TPM_CC.ContextLoad,
  handles: {},
  params: { context },
  responseHandle: 'loadedHandle',
  response: {},
});
