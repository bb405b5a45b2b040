/**
 * Choose a TPM transport from a string (the `--tpm` flag and the agent config):
 *
 * | spec | transport |
 * |---|---|
 * | `device:/dev/tpmrm0` | kernel resource manager |
 * | `swtpm:host=127.0.0.1,port=2321` | swtpm data channel over TCP (control channel = port + 1) |
 * | `swtpm:path=/run/swtpm.sock` | swtpm over a Unix socket (control channel = `<path>.ctrl`) |
 * | `sim:STATE_DIR` | the TypeScript simulator, through `factories.sim` (attestors/ never imports sim/) |
 *
 * Every transport is wrapped by `reliable()`: serialised, retried on RETRY/YIELDED/TESTING,
 * per-command timeout.
 *
 * @example
 * ```ts
 * const transport = await openTransport('swtpm:path=/tmp/t/tpm.sock', {}, { clock: systemClock });
 * ```
 */
import { type Clock, systemClock } from '../../../runtime/core/clock.ts';
import { AttestorError } from '../../errors.ts';
import { DeviceTransport } from './device.ts';
import { reliable } from './reliable.ts';
import { type SocketTarget, SocketTransport } from './socket.ts';
import type { TpmTransport, TransportFactories } from './transport.ts';

export interface OpenOptions {
  /** Timers for timeouts and back-off; the composition root passes the real one. */
  readonly clock?: Clock;
  readonly timeoutMs?: number;
}

export type ParsedSpec =
  | { readonly kind: 'device'; readonly path: string }
  | { readonly kind: 'swtpm'; readonly data: SocketTarget; readonly ctrl: SocketTarget }
  | { readonly kind: 'sim'; readonly stateDir: string };

function bad(spec: string, why: string): AttestorError {
  return new AttestorError(
    'ERR_TPM_TRANSPORT_SPEC',
    `TPM transport '${spec}': ${why} (expected device:PATH, swtpm:host=H,port=P, swtpm:path=SOCK or sim:DIR)`,
  );
}

export function parseTransportSpec(spec: string): ParsedSpec {
  const colon = spec.indexOf(':');
  const kind = colon < 0 ? spec : spec.slice(0, colon);
  const rest = colon < 0 ? '' : spec.slice(colon + 1);
  switch (kind) {
    case 'device':
      if (!rest.startsWith('/')) throw bad(spec, 'device needs an absolute path');
      return { kind, path: rest };
    case 'sim':
      if (rest === '') throw bad(spec, 'sim needs a state directory');
      return { kind, stateDir: rest };
    case 'swtpm': {
      const kv = new Map<string, string>();
      for (const part of rest.split(',')) {
        const eq = part.indexOf('=');
        if (eq <= 0) throw bad(spec, `'${part}' is not key=value`);
        kv.set(part.slice(0, eq), part.slice(eq + 1));
      }
      for (const k of kv.keys())
        if (!['host', 'port', 'path', 'ctrl'].includes(k)) throw bad(spec, `unknown key '${k}'`);
      const path = kv.get('path');
      if (path !== undefined) {
        if (kv.has('host') || kv.has('port')) throw bad(spec, 'give either path or host/port');
        return { kind, data: { path }, ctrl: { path: kv.get('ctrl') ?? `${path}.ctrl` } };
      }
      const port = Number(kv.get('port'));
      if (!Number.isInteger(port) || port < 1 || port > 65534) throw bad(spec, 'port must be 1..65534');
      const host = kv.get('host') ?? '127.0.0.1';
      const ctrlPort = kv.has('ctrl') ? Number(kv.get('ctrl')) : port + 1;
      if (!Number.isInteger(ctrlPort) || ctrlPort < 1 || ctrlPort > 65535) throw bad(spec, 'bad ctrl port');
      return { kind, data: { host, port }, ctrl: { host, port: ctrlPort } };
    }
    default:
      throw bad(spec, `unknown kind '${kind}'`);
  }
}

export async function openTransport(
  spec: string,
  factories: TransportFactories = {},
  options: OpenOptions = {},
): Promise<TpmTransport> {
  const parsed = parseTransportSpec(spec);
  const clock = options.clock ?? systemClock;
  const opts = { clock, ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}) };
  switch (parsed.kind) {
    case 'device':
      return reliable(new DeviceTransport(parsed.path), opts);
    case 'swtpm':
      return reliable(new SocketTransport(parsed.data), opts);
    case 'sim': {
      if (factories.sim === undefined)
        throw bad(spec, 'no simulator in this build (the composition root passes factories.sim)');
      return reliable(await factories.sim(parsed.stateDir), opts);
    }
  }
}
