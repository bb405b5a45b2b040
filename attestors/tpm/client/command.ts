/**
 * A TPM command described by data (STYLE.md rule 3; go-tpm `Command[R]`): its code, its handle
 * area (in Part 3 order, each marked whether it needs an authorization), its parameters, and its
 * response (an optional response handle and the response parameters), each field a `Codec`.
 * `Request<typeof Cmd>` and `Response<typeof Cmd>` are the typed pair; `execute` is the one path
 * that runs any of them.
 *
 * @example
 * ```ts
 * export const GetRandom = defineCommand({
 *   name: 'GetRandom', code: TPM_CC.GetRandom,
 *   handles: {}, params: { bytesRequested: u16 }, response: { randomBytes: b2(64) },
 * });
 * ```
 */
import type { Fields, Infer } from './codec.ts';

/** `auth`: the handle is marked "@" in Part 3 and takes one authorization entry. */
export type HandleRole = 'auth' | 'none';

export interface CommandDef<
  H extends Readonly<Record<string, HandleRole>>,
  P extends Fields,
  RH extends string | undefined,
  R extends Fields,
> {
  readonly name: string;
  readonly code: number;
  readonly handles: H;
  readonly params: P;
  readonly responseHandle?: RH;
  readonly response: R;
}

// biome-ignore lint/suspicious/noExplicitAny: a command of any shape
export type AnyCommand = CommandDef<any, any, any, any>;

export type Request<C> =
  C extends CommandDef<infer H, infer P, infer _RH, infer _R> ? { [K in keyof H]: number } & Infer<P> : never;

export type Response<C> =
  C extends CommandDef<infer _H, infer _P, infer RH, infer R>
    ? (RH extends string ? { [K in RH]: number } : unknown) & Infer<R>
    : never;

export function defineCommand<
  const H extends Readonly<Record<string, HandleRole>>,
  const P extends Fields,
  const RH extends string | undefined = undefined,
  const R extends Fields = Record<never, never>,
>(def: CommandDef<H, P, RH, R>): CommandDef<H, P, RH, R> {
  return def;
}

/** How many authorization entries a command takes. */
export function authCount(cmd: AnyCommand): number {
  return Object.values(cmd.handles as Record<string, HandleRole>).filter((r) => r === 'auth').length;
}
