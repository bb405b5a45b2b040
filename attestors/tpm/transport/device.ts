/**
 * The Linux kernel resource manager, `/dev/tpmrm0` (brief §2.1): one write() with the whole command,
 * then read() of the response into a 4096-byte buffer at position null (a character device: never
 * a positional read), continuing until `responseSize` bytes arrived. The promise API runs both on
 * the libuv pool so a slow TPM never blocks the event loop. The device is opened lazily and
 * reopened after a failure; closing the fd makes the kernel flush this fd's objects and sessions.
 *
 * Handles returned through the RM are virtual and valid only on this fd; at most 3 transient
 * objects and 3 sessions per fd (ENOMEM beyond). Never send Startup/Shutdown here.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { AttestorError } from '../../errors.ts';
import { checkCommand, MAX_RESPONSE_BYTES, ResponseAssembler } from './framing.ts';
import type { TpmTransport } from './transport.ts';

export class DeviceTransport implements TpmTransport {
  readonly #path: string;
  #fd: FileHandle | undefined;
  #closed = false;

  constructor(path: string) {
    this.#path = path;
  }

  async #open(): Promise<FileHandle> {
    if (this.#fd !== undefined) return this.#fd;
    try {
      this.#fd = await open(this.#path, 'r+');
      return this.#fd;
    } catch (cause) {
      const code = (cause as NodeJS.ErrnoException).code;
      const hint = code === 'EACCES' ? ' (run as root or in group tss)' : '';
      throw new AttestorError('ERR_TPM_TRANSPORT', `cannot open ${this.#path}: ${code}${hint}`, { cause });
    }
  }

  async send(command: Uint8Array): Promise<Uint8Array> {
    if (this.#closed) throw new AttestorError('ERR_TPM_TRANSPORT', 'transport is closed');
    checkCommand(command);
    const fd = await this.#open();
    try {
      const { bytesWritten } = await fd.write(command, 0, command.length, null);
      if (bytesWritten !== command.length)
        throw new AttestorError('ERR_TPM_TRANSPORT', `short write to ${this.#path}`);
      const assembler = new ResponseAssembler();
      const buf = Buffer.alloc(4096);
      for (let total = 0; total <= MAX_RESPONSE_BYTES; ) {
        const { bytesRead } = await fd.read(buf, 0, buf.length, null);
        if (bytesRead === 0)
          throw new AttestorError('ERR_TPM_MALFORMED', `${this.#path}: response ended early`);
        total += bytesRead;
        const full = assembler.push(buf.subarray(0, bytesRead));
        if (full !== undefined) return full;
      }
      throw new AttestorError('ERR_TPM_MALFORMED', `${this.#path}: response too long`);
    } catch (cause) {
      this.abort();
      if (cause instanceof AttestorError) throw cause;
      const code = (cause as NodeJS.ErrnoException).code;
      throw new AttestorError('ERR_TPM_TRANSPORT', `${this.#path}: ${code ?? 'I/O error'}`, { cause });
    }
  }

  /** Drop the fd (after a failure or timeout); the next command reopens the device. */
  abort(): void {
    const fd = this.#fd;
    this.#fd = undefined;
    fd?.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const fd = this.#fd;
    this.#fd = undefined;
    await fd?.close();
  }
}
