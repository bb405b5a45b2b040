/**
 * swtpm's data channel over TCP or a Unix socket (brief §2.2): raw TPM 2.0 command bytes in, raw
 * response bytes out, no mssim framing. One long-lived connection (swtpm serves one data client at
 * a time), opened lazily and reopened after a failure. Each command is written with one write and
 * the whole response is awaited before the next (swtpm reads a command with a single read()).
 *
 * Not safe for concurrent callers by itself: `openTransport` wraps it with `reliable()`, which
 * serialises, retries warnings and applies the per-command timeout.
 */
import { connect, type Socket } from 'node:net';
import { AttestorError } from '../../errors.ts';
import { checkCommand, ResponseAssembler } from './framing.ts';
import type { TpmTransport } from './transport.ts';

export type SocketTarget = { readonly host: string; readonly port: number } | { readonly path: string };

export function describeTarget(t: SocketTarget): string {
  return 'path' in t ? t.path : `${t.host}:${t.port}`;
}

export class SocketTransport implements TpmTransport {
  readonly #target: SocketTarget;
  #socket: Socket | undefined;
  #pending: { resolve(b: Buffer): void; reject(e: Error): void } | undefined;
  readonly #assembler = new ResponseAssembler();
  #closed = false;

  constructor(target: SocketTarget) {
    this.#target = target;
  }

  #fail(err: Error): void {
    const p = this.#pending;
    this.#pending = undefined;
    this.#drop();
    p?.reject(err);
  }

  #drop(): void {
    this.#socket?.destroy();
    this.#socket = undefined;
    this.#assembler.reset();
  }

  #connect(): Promise<Socket> {
    const existing = this.#socket;
    if (existing !== undefined) return Promise.resolve(existing);
    return new Promise((resolve, reject) => {
      const s = 'path' in this.#target ? connect({ path: this.#target.path }) : connect(this.#target);
      const onError = (cause: Error): void =>
        reject(
          new AttestorError(
            'ERR_TPM_TRANSPORT',
            `cannot connect to swtpm at ${describeTarget(this.#target)}`,
            {
              cause,
            },
          ),
        );
      s.once('error', onError);
      s.once('connect', () => {
        s.off('error', onError);
        s.setNoDelay(true);
        s.on('data', (chunk) => {
          if (this.#socket !== s) return;
          if (this.#pending === undefined) {
            this.#fail(new AttestorError('ERR_TPM_MALFORMED', 'swtpm sent bytes nobody asked for'));
            return;
          }
          try {
            const full = this.#assembler.push(chunk);
            if (full !== undefined) {
              const p = this.#pending;
              this.#pending = undefined;
              p.resolve(full);
            }
          } catch (err) {
            this.#fail(err as Error);
          }
        });
        s.on('error', (cause) => {
          if (this.#socket === s)
            this.#fail(new AttestorError('ERR_TPM_TRANSPORT', 'swtpm connection failed', { cause }));
        });
        s.on('close', () => {
          if (this.#socket === s)
            this.#fail(new AttestorError('ERR_TPM_TRANSPORT', 'swtpm closed the connection mid-command'));
        });
        this.#socket = s;
        resolve(s);
      });
    });
  }

  async send(command: Uint8Array): Promise<Uint8Array> {
    if (this.#closed) throw new AttestorError('ERR_TPM_TRANSPORT', 'transport is closed');
    checkCommand(command);
    if (this.#pending !== undefined) throw new TypeError('SocketTransport: one command at a time');
    const socket = await this.#connect();
    return new Promise<Buffer>((resolve, reject) => {
      this.#pending = { resolve, reject };
      socket.write(command);
    });
  }

  /** Abandon the command in flight (timeout): the connection is dropped and reopened next time. */
  abort(err: Error): void {
    this.#fail(err);
  }

  /** Close the data connection only; the next command reconnects (used around CMD_INIT). */
  disconnect(): void {
    this.#fail(new AttestorError('ERR_TPM_TRANSPORT', 'disconnected'));
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#fail(new AttestorError('ERR_TPM_TRANSPORT', 'transport closed'));
  }
}
