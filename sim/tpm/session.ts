/**
 * Authorization sessions of the simulator (Part 1 "Authorizations"; Part 3 §11.1, §23): unsalted,
 * unbound policy and trial sessions. The policy digest is extended by the policy commands and
 * compared with an object's authPolicy when the session authorizes a command; after a successful
 * use it is reset, and the session is flushed unless continueSession was set (brief §1.5).
 */
export type SessionType = 'policy' | 'trial';

export interface Session {
  readonly handle: number;
  readonly type: SessionType;
  readonly hashAlg: number;
  nonceTPM: Buffer;
  nonceCaller: Buffer;
  digest: Buffer;
  /** pcrUpdateCounter when PolicyPCR ran in a real policy session; checked at use. */
  pcrCounter: number | undefined;
  /** Clock value (ms) after which the session no longer authorizes (PolicySecret expiration). */
  expiresAt: number | undefined;
  /** cpHash bound by PolicySecret's cpHashA, if any. */
  cpHash: Buffer | undefined;
}

export function resetPolicy(s: Session): void {
  s.digest = Buffer.alloc(s.digest.length);
  s.pcrCounter = undefined;
  s.expiresAt = undefined;
  s.cpHash = undefined;
}
