/**
 * The one-method seam between edgeward's TPM client and a TPM (STYLE.md rule 4): whole command
 * bytes in, whole response bytes out. Backends: `/dev/tpmrm0`, swtpm over TCP or a Unix socket,
 * and the TypeScript simulator in `sim/tpm` (which attestors/ never imports: the composition root
 * passes it in through `TransportFactories.sim`).
 */
export interface TpmTransport {
  /** Send one complete command; resolves to one complete response (header included). */
  send(command: Uint8Array): Promise<Uint8Array>;
  /** Release the device or socket. Idempotent. */
  close(): Promise<void>;
}

/** Factories for transports that live outside attestors/ (the simulator). */
export interface TransportFactories {
  readonly sim?: (stateDir: string) => Promise<TpmTransport>;
}
