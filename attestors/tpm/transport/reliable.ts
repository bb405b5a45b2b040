/**
 * What every TPM transport needs on top of raw send (brief §1.4, §6 P1): serialisation of
 * concurrent callers (a TPM runs one command at a time; the kernel RM answers EBUSY, swtpm
 * blocks), a per-command timeout, and resending the identical bytes on the warnings
 * TPM_RC_RETRY, TPM_RC_YIELDED and TPM_RC_TESTING with a small bounded back-off.
 *
 * @example
 * ```ts
 * const tpm = reliable(new SocketTransport({ path }), { clock });
 * ```
 */
import { type Clock, sleep } from '../../../runtime/core/clock.ts';
import { AttestorError } from '../../errors.ts';
import { decodeRc } from '../wire/rc.ts';
import type { TpmTransport } from './transport.ts';

export interface ReliableOptions {
  readonly clock: Clock;
  /** Per attempt of a command (default 30 s: RSA key generation on hardware is slow). */
  readonly timeoutMs?: number;
  /** Resends on a retryable warning (default 8). */
  readonly retries?: number;
  /** First back-off; doubles each time (default 10 ms). */
  readonly backoffMs?: number;
}

/** A transport whose in-flight command can be abandoned (the connection is then reset). */
export interface Abortable {
  abort?(err: Error): void;
}

export function reliable(inner: TpmTransport & Abortable, options: ReliableOptions): TpmTransport {
  const { clock, timeoutMs = 30_000, retries = 8, backoffMs = 10 } = options;
  let queue: Promise<unknown> = Promise.resolve();

  const once = (command: Uint8Array): Promise<Uint8Array> =>
    new Promise((resolve, reject) => {
      let settled = false;
      const timer = clock.setTimer('tpm-command', timeoutMs, () => {
        if (settled) return;
        settled = true;
        const err = new AttestorError('ERR_TPM_TIMEOUT', `TPM did not answer within ${timeoutMs} ms`);
        inner.abort?.(err);
        reject(err);
      });
      inner.send(command).then(
        (r) => {
          timer.cancel();
          if (!settled) resolve(r);
          settled = true;
        },
        (e: unknown) => {
          timer.cancel();
          if (!settled) reject(e);
          settled = true;
        },
      );
    });

  const run = async (command: Uint8Array): Promise<Uint8Array> => {
    for (let attempt = 0; ; attempt++) {
      const response = await once(command);
      if (response.length < 10) return response; // execute() reports it as malformed
      const raw = Buffer.from(response.buffer, response.byteOffset, response.byteLength).readUInt32BE(6);
      if (raw === 0 || attempt >= retries || !decodeRc(raw).retryable) return response;
      await sleep(clock, backoffMs * 2 ** Math.min(attempt, 6));
    }
  };

  return {
    send(command) {
      const result = queue.then(() => run(command));
      queue = result.catch(() => undefined);
      return result;
    },
    close: () => inner.close(),
  };
}
