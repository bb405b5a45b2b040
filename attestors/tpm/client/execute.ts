/**
 * The one path every TPM command takes (STYLE.md rule 3): marshal the header, handle area,
 * authorization area and parameters of a `CommandDef`; send the bytes; check the response strictly
 * (size equals length, a known tag that matches the command's, response code) and unmarshal the
 * response handle and parameters. Nothing is read past the response or left unread.
 *
 * Errors: a non-zero response code is a `TpmResponseError` (ERR_TPM_RESPONSE) naming the code, the
 * handle/parameter/session index and whether it was retryable; a response that does not parse is
 * ERR_TPM_MALFORMED.
 *
 * @example
 * ```ts
 * const { randomBytes } = await execute(transport, GetRandom, { bytesRequested: 32 });
 * ```
 */
import { AttestorError } from '../../errors.ts';
import type { TpmTransport } from '../transport/transport.ts';
import { Reader, Writer } from '../wire/buffer.ts';
import { TPM_ST } from '../wire/constants.ts';
import { TpmResponseError } from '../wire/rc.ts';
import { type Auth, EMPTY_PASSWORD, writeAuth } from './auth.ts';
import type { Codec } from './codec.ts';
import { type AnyCommand, authCount, type HandleRole, type Request, type Response } from './command.ts';

/** Marshal a command (exported for tests and for the simulator's conformance checks). */
export function marshalCommand<C extends AnyCommand>(
  cmd: C,
  req: Request<C>,
  auths?: readonly Auth[],
): Buffer {
  const need = authCount(cmd);
  const entries = auths ?? Array.from({ length: need }, () => EMPTY_PASSWORD);
  if (entries.length !== need)
    throw new TypeError(`${cmd.name} takes ${need} authorization(s), ${entries.length} given`);
  const values = req as Record<string, unknown>;
  const w = new Writer();
  w.u16(need > 0 ? TPM_ST.SESSIONS : TPM_ST.NO_SESSIONS)
    .u32(0)
    .u32(cmd.code);
  for (const name of Object.keys(cmd.handles as Record<string, HandleRole>)) {
    const h = values[name];
    if (typeof h !== 'number') throw new TypeError(`${cmd.name}: handle ${name} missing`);
    w.u32(h);
  }
  if (need > 0) {
    const a = new Writer();
    for (const e of entries) writeAuth(a, e);
    const area = a.finish();
    w.u32(area.length).bytes(area);
  }
  for (const [name, codec] of Object.entries(cmd.params as Record<string, Codec<unknown>>)) {
    if (!(name in values)) throw new TypeError(`${cmd.name}: parameter ${name} missing`);
    codec.write(w, values[name]);
  }
  const bytes = w.finish();
  bytes.writeUInt32BE(bytes.length, 2);
  return bytes;
}

/** Check and unmarshal a response to `cmd` sent with `sessions` authorization entries. */
export function parseResponse<C extends AnyCommand>(
  cmd: C,
  bytes: Uint8Array,
  sessions: number,
): Response<C> {
  const what = `${cmd.name} response`;
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 10)
    throw new AttestorError('ERR_TPM_MALFORMED', `${what}: ${buf.length} bytes, header needs 10`);
  const tag = buf.readUInt16BE(0);
  const size = buf.readUInt32BE(2);
  const rc = buf.readUInt32BE(6);
  if (tag !== TPM_ST.NO_SESSIONS && tag !== TPM_ST.SESSIONS)
    throw new AttestorError('ERR_TPM_MALFORMED', `${what}: unknown tag 0x${tag.toString(16)}`);
  if (size !== buf.length)
    throw new AttestorError('ERR_TPM_MALFORMED', `${what}: responseSize ${size} but ${buf.length} bytes`);
  if (rc !== 0) throw new TpmResponseError(rc, cmd.name);
  const withSessions = sessions > 0;
  if (tag !== (withSessions ? TPM_ST.SESSIONS : TPM_ST.NO_SESSIONS))
    throw new AttestorError(
      'ERR_TPM_MALFORMED',
      `${what}: tag 0x${tag.toString(16)} does not match the command`,
    );
  const r = new Reader(buf, what, 10);
  const out: Record<string, unknown> = {};
  if (cmd.responseHandle !== undefined) out[cmd.responseHandle as string] = r.u32('response handle');
  let params: Reader = r;
  if (withSessions) {
    const n = r.u32('parameterSize');
    if (n > r.remaining)
      throw new AttestorError('ERR_TPM_MALFORMED', `${what}: parameterSize ${n} too large`);
    params = new Reader(buf, what, r.offset, r.offset + n);
    r.bytes(n, 'parameters');
  }
  for (const [name, codec] of Object.entries(cmd.response as Record<string, Codec<unknown>>))
    out[name] = codec.read(params, name);
  params.done('parameters');
  if (withSessions) {
    for (let i = 0; i < sessions; i++) {
      r.tpm2b('nonceTPM', 64);
      r.u8('sessionAttributes');
      r.tpm2b('hmac', 64);
    }
    r.done('authorization area');
  }
  return out as Response<C>;
}

/** Run `cmd` on `transport`. `auths` defaults to the empty password for every "@" handle. */
export async function execute<C extends AnyCommand>(
  transport: TpmTransport,
  cmd: C,
  req: Request<C>,
  auths?: readonly Auth[],
): Promise<Response<C>> {
  const bytes = marshalCommand(cmd, req, auths);
  const response = await transport.send(bytes);
  return parseResponse(cmd, response, authCount(cmd));
}
