/**
 * Sessions and policy: TPM2_StartAuthSession (Part 3 §11.1; nonceCaller 16..digest bytes),
 * TPM2_PolicySecret (§23.4), TPM2_PolicyPCR (§23.7), TPM2_PolicyGetDigest (§23.19),
 * TPM2_PolicyRestart (§23.20).
 */
import { b2, i32, pcrSelection, symDef, ticket, u8, u16 } from '../client/codec.ts';
import { defineCommand } from '../client/command.ts';
import { TPM_CC } from '../wire/constants.ts';

export const StartAuthSession = defineCommand({
  name: 'StartAuthSession',
  code: TPM_CC.StartAuthSession,
  handles: { tpmKey: 'none', bind: 'none' },
  params: { nonceCaller: b2(64), encryptedSalt: b2(512), sessionType: u8, symmetric: symDef, authHash: u16 },
  responseHandle: 'sessionHandle',
  response: { nonceTPM: b2(64) },
});

export const PolicySecret = defineCommand({
  name: 'PolicySecret',
  code: TPM_CC.PolicySecret,
  handles: { authHandle: 'auth', policySession: 'none' },
  params: { nonceTPM: b2(64), cpHashA: b2(64), policyRef: b2(64), expiration: i32 },
  response: { timeout: b2(8), policyTicket: ticket },
});

export const PolicyPCR = defineCommand({
  name: 'PolicyPCR',
  code: TPM_CC.PolicyPCR,
  handles: { policySession: 'none' },
  params: { pcrDigest: b2(64), pcrs: pcrSelection },
  response: {},
});

export const PolicyGetDigest = defineCommand({
  name: 'PolicyGetDigest',
  code: TPM_CC.PolicyGetDigest,
  handles: { policySession: 'none' },
  params: {},
  response: { policyDigest: b2(64) },
});

export const PolicyRestart = defineCommand({
  name: 'PolicyRestart',
  code: TPM_CC.PolicyRestart,
  handles: { sessionHandle: 'none' },
  params: {},
  response: {},
});
