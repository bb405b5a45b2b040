/**
 * swtpm's control channel (brief §2.2; swtpm `tpm_ioctl.h`): `u32 command code` + body in,
 * a fixed-size answer out whose first word is a TPM result (0 = OK). It is not the mssim platform
 * protocol. Used for CMD_INIT (a simulated power cycle) and CMD_SHUTDOWN (the process exits).
 *
 * One connection per request keeps this stateless; swtpm accepts several control clients in turn.
 */
import { connect } from 'node:net';
import type { Clock } from '../../../runtime/core/clock.ts';
import { AttestorError } from '../../errors.ts';
import { describeTarget, type SocketTarget } from './socket.ts';

export const SWTPM_CTRL = {
  GET_CAPABILITY: 0x01,
  INIT: 0x02,
  SHUTDOWN: 0x03,
  SET_LOCALITY: 0x05,
  STOP: 0x0e,
} as const;

/** Answer sizes per command (GET_CAPABILITY answers an 8-byte bitmap without a result word). */
const ANSWER_BYTES: Record<number, number> = { 1: 8, 2: 4, 3: 4, 5: 4, 14: 4 };

export async function swtpmControl(
  target: SocketTarget,
  code: number,
  body: Uint8Array,
  clock: Clock,
  timeoutMs = 5000,
): Promise<Buffer> {
  const want = ANSWER_BYTES[code];
  if (want === undefined) throw new TypeError(`unsupported swtpm control command ${code}`);
  const req = Buffer.alloc(4 + body.length);
  req.writeUInt32BE(code, 0);
  req.set(body, 4);
  return new Promise((resolve, reject) => {
    const s = 'path' in target ? connect({ path: target.path }) : connect(target);
    const chunks: Buffer[] = [];
    let got = 0;
    const finish = (err: Error | undefined, value?: Buffer): void => {
      timer.cancel();
      s.destroy();
      if (err) reject(err);
      else resolve(value as Buffer);
    };
    const timer = clock.setTimer('swtpm-control', timeoutMs, () =>
      finish(
        new AttestorError('ERR_TPM_TIMEOUT', `swtpm control ${code} timed out at ${describeTarget(target)}`),
      ),
    );
    s.on('connect', () => s.write(req));
    s.on('data', (d) => {
      chunks.push(d);
      got += d.length;
      if (got < want) return;
      const answer = Buffer.concat(chunks);
      if (code !== SWTPM_CTRL.GET_CAPABILITY && answer.readUInt32BE(0) !== 0)
        finish(
          new AttestorError(
            'ERR_TPM_TRANSPORT',
            `swtpm control ${code} answered 0x${answer.readUInt32BE(0).toString(16)}`,
          ),
        );
      else finish(undefined, answer);
    });
    s.on('error', (cause) =>
      finish(
        new AttestorError('ERR_TPM_TRANSPORT', `swtpm control channel ${describeTarget(target)}`, { cause }),
      ),
    );
    s.on('close', () =>
      finish(new AttestorError('ERR_TPM_TRANSPORT', `swtpm control channel closed before answering ${code}`)),
    );
  });
}
