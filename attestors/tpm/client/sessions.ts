/**
 * Policy sessions (brief §3.14–3.16, §1.5): unsalted, unbound, SHA-256 policy or trial sessions,
 * the EK's PolicySecret(TPM_RH_ENDORSEMENT) (policy A of the low-range EK templates), and PolicyPCR.
 * `withPolicySession` flushes the session whatever happens (a session used successfully without
 * continueSession is already gone; flushing it again fails harmlessly).
 */
import type { Random } from '../../../runtime/core/random.ts';
import { PolicyPCR, PolicySecret, StartAuthSession } from '../commands/session.ts';
import type { TpmTransport } from '../transport/transport.ts';
import { TPM_ALG, TPM_RH, TPM_SE } from '../wire/constants.ts';
import type { PcrSelection } from '../wire/pcr-selection.ts';
import { execute } from './execute.ts';
import { flush } from './helpers.ts';

export interface PolicySession {
  readonly handle: number;
  readonly nonceTPM: Uint8Array;
}

export async function startPolicySession(
  t: TpmTransport,
  random: Random,
  options: { trial?: boolean; hash?: number } = {},
): Promise<PolicySession> {
  const r = await execute(t, StartAuthSession, {
    tpmKey: TPM_RH.NULL,
    bind: TPM_RH.NULL,
    nonceCaller: random.bytes(16),
    encryptedSalt: new Uint8Array(),
    sessionType: options.trial ? TPM_SE.TRIAL : TPM_SE.POLICY,
    symmetric: { alg: TPM_ALG.NULL },
    authHash: options.hash ?? TPM_ALG.SHA256,
  });
  return { handle: r.sessionHandle, nonceTPM: r.nonceTPM };
}

export async function withPolicySession<T>(
  t: TpmTransport,
  random: Random,
  fn: (s: PolicySession) => Promise<T>,
  options: { trial?: boolean; hash?: number } = {},
): Promise<T> {
  const s = await startPolicySession(t, random, options);
  try {
    return await fn(s);
  } finally {
    await flush(t, s.handle);
  }
}

/** PolicySecret(TPM_RH_ENDORSEMENT) with the (empty) endorsement password. */
export async function policySecretEndorsement(t: TpmTransport, s: PolicySession): Promise<void> {
  await execute(t, PolicySecret, {
    authHandle: TPM_RH.ENDORSEMENT,
    policySession: s.handle,
    nonceTPM: s.nonceTPM,
    cpHashA: new Uint8Array(),
    policyRef: new Uint8Array(),
    expiration: 0,
  });
}

/** PolicyPCR with the TPM's current values of `selection`. */
export async function policyPcr(t: TpmTransport, s: PolicySession, selection: PcrSelection): Promise<void> {
  await execute(t, PolicyPCR, { policySession: s.handle, pcrDigest: new Uint8Array(), pcrs: selection });
}
