/**
 * `edgeward device`: enroll this machine as a device, and create one-time join tokens.
 *
 * - `device token create --id ID --ttl 10m [--socket PATH | --data-dir DIR]` asks the running
 *   agent over its admin socket (default `<data dir>/admin.sock`, the data dir being `--data-dir`,
 *   `$EDGEWARD_DATA_DIR` or `./.edgeward`, where `npm start` keeps it) and prints the token.
 * - `device enroll --gateway HOST:PORT --id DEVICE_ID (--token TOKEN | --token-file FILE) --out DIR`
 *   enrolls over EST (RFC 7030: `cacerts` checked against the token's root fingerprints, then
 *   `simpleenroll` with HTTP Basic `DEVICE_ID:TOKEN`) and writes `key.pem` (0600), `svid.pem`
 *   (leaf + chain) and `bundle.pem`, usable as is by
 *   `mosquitto_pub --cafile bundle.pem --cert svid.pem --key key.pem`.
 */
import { generateKeyPairSync } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { writeIdentity } from '../../../transport/device/files.ts';
import { createDeviceToken } from '../../../transport/enroll/admin-client.ts';
import { enroll } from '../../../transport/enroll/est-client.ts';
import { parseDuration } from '../../config/formats.ts';
import { isPathSegment } from '../../spiffe/id.ts';
import { type CliIo, type Command, parseFlags, required, UsageError } from '../command.ts';

const HELP = `Usage: edgeward device token create --id DEVICE_ID --ttl 10m [--socket PATH | --data-dir DIR]
       edgeward device enroll --gateway HOST:PORT --id DEVICE_ID (--token TOKEN | --token-file FILE) --out DIR

token create   ask the running agent for a one-time join token for DEVICE_ID (printed on stdout)
enroll         enroll over EST (RFC 7030) with the join token of DEVICE_ID;
               writes DIR/key.pem (0600), DIR/svid.pem, DIR/bundle.pem

The admin socket defaults to <data dir>/admin.sock, the data dir being --data-dir,
$EDGEWARD_DATA_DIR or ./.edgeward (where \`npm start\` keeps it).`;

function socketPath(values: { socket?: string; 'data-dir'?: string }, io: CliIo): string {
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(io.cwd, p));
  if (values.socket) return abs(values.socket);
  const dir = values['data-dir'] ?? io.env.EDGEWARD_DATA_DIR ?? '.edgeward';
  return join(abs(dir), 'admin.sock');
}

async function tokenCreate(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      id: { type: 'string' },
      ttl: { type: 'string' },
      socket: { type: 'string' },
      'data-dir': { type: 'string' },
    },
    { command: 'device token create' },
  );
  const id = required(values.id, 'id', 'device token create');
  if (!isPathSegment(id) || id.length > 64) {
    throw new UsageError('device token create: --id must be 1-64 of A-Z a-z 0-9 . _ -');
  }
  const ttlText = values.ttl ?? '10m';
  let ttlMs: number;
  try {
    ttlMs = parseDuration(ttlText);
  } catch {
    throw new UsageError(
      `device token create: --ttl must be a duration such as 30s, 10m, 1h (got ${ttlText})`,
    );
  }
  const out = await createDeviceToken(socketPath(values, io), { id, ttlMs });
  io.out(out.token);
  io.err(`one-time token for device ${id}, valid until ${new Date(out.expiresAt).toISOString()}`);
  return 0;
}

async function enrollCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      gateway: { type: 'string' },
      id: { type: 'string' },
      token: { type: 'string' },
      'token-file': { type: 'string' },
      out: { type: 'string' },
    },
    { command: 'device enroll' },
  );
  const gateway = required(values.gateway, 'gateway', 'device enroll');
  const m = /^(.+):(\d{1,5})$/.exec(gateway);
  if (m === null || Number(m[2]) > 65535) throw new UsageError('device enroll: --gateway must be HOST:PORT');
  const host = (m[1] as string).replace(/^\[(.*)\]$/, '$1');
  const deviceId = required(values.id, 'id', 'device enroll');
  if (!isPathSegment(deviceId) || deviceId.length > 64)
    throw new UsageError('device enroll: --id must be 1-64 of A-Z a-z 0-9 . _ -');
  const out = resolve(io.cwd, required(values.out, 'out', 'device enroll'));
  let token = values.token;
  if (values['token-file'] !== undefined) {
    if (token !== undefined) throw new UsageError('device enroll: give --token or --token-file, not both');
    token = (await readFile(resolve(io.cwd, values['token-file']), 'utf8')).trim();
  }
  token = required(token, 'token', 'device enroll');
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const id = await enroll({ host, port: Number(m[2]), deviceId, token, key, now: () => Date.now() });
  await writeIdentity(out, { key, chain: id.chain, roots: id.roots });
  io.out(`enrolled ${id.spiffeId}, valid until ${new Date(id.notAfter).toISOString()}`);
  io.out(`wrote ${join(out, 'key.pem')} (0600), ${join(out, 'svid.pem')}, ${join(out, 'bundle.pem')}`);
  return 0;
}

export const command: Command = {
  name: 'device',
  summary: 'enroll a device and manage one-time device join tokens',
  help: HELP,
  async run(argv, io) {
    const [a, b, ...rest] = argv;
    if (a === 'token' && b === 'create') return tokenCreate(rest, io);
    if (a === 'enroll') return enrollCommand(b === undefined ? [] : [b, ...rest], io);
    throw new UsageError(
      `device: unknown subcommand '${[a, b].filter(Boolean).join(' ')}' (expected: token create, enroll)`,
    );
  },
};
