/**
 * How a simulated command is described (STYLE.md rule 3, the simulator side): its handle area
 * (what kind of entity each handle must be), the authorization role of each authorized handle,
 * whether it returns a handle, and a handler that reads parameters and writes the response.
 * The dispatcher does everything the handle and auth areas need before the handler runs.
 */
import type { Reader, Writer } from '../../attestors/tpm/wire/buffer.ts';
import type { Tpm } from './tpm.ts';

/**
 * - `hierarchy`: TPM_RH_OWNER / ENDORSEMENT / PLATFORM / NULL (CreatePrimary);
 * - `provision`: TPM_RH_OWNER / PLATFORM (EvictControl);
 * - `object`: a loaded transient or persistent object;
 * - `objectOrNull`: an object or TPM_RH_NULL (Certify's signHandle);
 * - `pcr`: PCR 0–23; `nv`: a defined NV index; `nvAuth`: OWNER, PLATFORM or the NV index itself;
 * - `entity`: anything that has an authValue (PolicySecret's authHandle);
 * - `policy`: a loaded policy or trial session; `null`: TPM_RH_NULL only (StartAuthSession);
 * - `any`: a persistent or transient object handle, unchecked (EvictControl target).
 */
export type HandleKind =
  | 'hierarchy'
  | 'provision'
  | 'object'
  | 'objectOrNull'
  | 'pcr'
  | 'nv'
  | 'nvAuth'
  | 'entity'
  | 'policy'
  | 'null'
  | 'any';

export type AuthRole = 'user' | 'admin';

export interface CommandContext {
  readonly tpm: Tpm;
  /** The handle area, in order. */
  readonly handles: readonly number[];
  /** The parameter reader, positioned for parameter `n` (1-based; errors name it). */
  at(n: number): Reader;
  /** Assert every parameter byte was consumed (TPM_RC_SIZE otherwise). */
  end(): void;
  /** Response parameters. */
  readonly out: Writer;
  /** Set the response handle (commands with `responseHandle`). */
  setHandle(h: number): void;
}

export interface CommandSpec {
  readonly cc: number;
  readonly name: string;
  readonly handles: readonly HandleKind[];
  /** Roles of the first `auth.length` handles, which need an authorization session each. */
  readonly auth: readonly AuthRole[];
  readonly responseHandle?: boolean;
  readonly run: (ctx: CommandContext) => void;
}
