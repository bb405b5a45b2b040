/**
 * `edgeward workload check FILE`: validate a registration entries file (line-precise errors, as
 * `policy check`). `edgeward workload fetch [--socket S] [--jwt AUD]... [--write DIR]`: a
 * debugging client of the SPIFFE Workload API (what `spire-agent api fetch` is to SPIRE):
 * fetches this process's X.509-SVIDs (or, with --jwt, JWT-SVIDs for those audiences), prints
 * IDs and expiries, and writes `svid.N.pem`, `svid.N.key` (0600) and `bundle.pem` (or
 * `jwt.N.token`, 0600) when asked.
 * Exit codes: 0 ok, 1 invalid file / refused (the gRPC status is printed), 2 usage.
 */
import { X509Certificate } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { isEdgewardError } from '../../core/error.ts';
import { fetchJwtOnce, fetchX509Once } from '../../workload/client.ts';
import { EntriesError, loadEntries } from '../../workload/entries.ts';
import { DEFAULT_WORKLOAD_SOCKET } from '../../workload/server.ts';
import { type Command, parseFlags, UsageError } from '../command.ts';

const HELP = `Usage: edgeward workload check FILE
       edgeward workload fetch [--socket PATH] [--jwt AUDIENCE]... [--write DIR]

check: validate a Workload API registration entries file (YAML); every problem with its line.
fetch: fetch this process's X.509-SVIDs from the agent's Workload API socket (default
       ${DEFAULT_WORKLOAD_SOCKET}; EDGEWARD_WORKLOAD_SOCKET overrides), print them, and with
       --write DIR write svid.N.pem (chain), svid.N.key (PKCS#8, 0600) and bundle.pem.
       --jwt AUD (repeatable): fetch JWT-SVIDs for these audiences instead, print ID, audience
       and expiry (and the token itself with --write DIR, as jwt.N.token, 0600).
Exit codes: 0 ok, 1 invalid or refused, 2 usage.

Entries format:
  version: 1
  entries:
    - name: modbus-adapter            # ID: spiffe://<td>/gateway/<gw>/workload/modbus-adapter
      selectors: [unix:uid:1001, "unix:path:/usr/bin/modbus-adapter"]
      hint: internal                  # optional
Selectors: unix:uid, unix:gid, unix:supplementary_gid, unix:user, unix:group, unix:path,
unix:sha256, container:id. A workload gets every entry whose selectors it ALL has.`;

const pem = (der: Buffer, label: string): string =>
  `-----BEGIN ${label}-----\n${(der.toString('base64').match(/.{1,64}/g) ?? []).join('\n')}\n-----END ${label}-----\n`;

export const command: Command = {
  name: 'workload',
  summary: 'SPIFFE Workload API: check an entries file, fetch SVIDs (debugging client)',
  help: HELP,
  async run(argv, io) {
    const [sub, ...rest] = argv;
    if (sub === 'check') {
      const { positionals } = parseFlags(rest, {}, { positionals: 1, command: 'workload check' });
      const file = positionals[0];
      if (file === undefined) throw new UsageError('workload check: missing FILE');
      try {
        const entries = await loadEntries(file);
        io.out(`${file}: ok (${entries.length} entr${entries.length === 1 ? 'y' : 'ies'})`);
        return 0;
      } catch (err) {
        if (!(err instanceof EntriesError)) throw err;
        for (const i of err.issues)
          io.err(`${file}:${i.line ?? 1}: ${i.path ? `${i.path}: ` : ''}${i.message}`);
        return 1;
      }
    }
    if (sub === 'fetch') {
      const { values } = parseFlags(
        rest,
        { socket: { type: 'string' }, write: { type: 'string' }, jwt: { type: 'string', multiple: true } },
        { command: 'workload fetch' },
      );
      const socket = values.socket ?? process.env.EDGEWARD_WORKLOAD_SOCKET ?? DEFAULT_WORKLOAD_SOCKET;
      if (values.jwt !== undefined) return fetchJwt(socket, values.jwt, values.write, io);
      let res: Awaited<ReturnType<typeof fetchX509Once>>;
      try {
        res = await fetchX509Once(socket);
      } catch (err) {
        if (!isEdgewardError(err, 'ERR_WORKLOAD_API_STATUS')) throw err;
        io.err(`workload fetch: ${err.message}`);
        return 1;
      }
      for (const [i, s] of res.svids.entries()) {
        const leaf = new X509Certificate(s.chain[0] as Buffer);
        io.out(
          `SPIFFE ID: ${s.spiffeId}\n  SVID #${i}: serial ${leaf.serialNumber.toLowerCase()}, expires ${new Date(leaf.validTo).toISOString()}, chain ${s.chain.length}${s.hint ? `, hint ${s.hint}` : ''}`,
        );
      }
      if (values.write !== undefined) {
        const dir = values.write;
        await mkdir(dir, { recursive: true, mode: 0o700 });
        for (const [i, s] of res.svids.entries()) {
          await writeFile(join(dir, `svid.${i}.pem`), s.chain.map((d) => pem(d, 'CERTIFICATE')).join(''));
          await writeFile(join(dir, `svid.${i}.key`), pem(s.key, 'PRIVATE KEY'), { mode: 0o600 });
        }
        const bundle = res.svids[0]?.bundle ?? [];
        await writeFile(join(dir, 'bundle.pem'), bundle.map((d) => pem(d, 'CERTIFICATE')).join(''));
        io.out(`written to ${dir}`);
      }
      return 0;
    }
    throw new UsageError(`workload: unknown subcommand '${sub ?? ''}' (expected: check, fetch)`);
  },
};

async function fetchJwt(
  socket: string,
  audience: readonly string[],
  dir: string | undefined,
  io: Parameters<Command['run']>[1],
): Promise<number> {
  let res: Awaited<ReturnType<typeof fetchJwtOnce>>;
  try {
    res = await fetchJwtOnce(socket, audience);
  } catch (err) {
    if (!isEdgewardError(err, 'ERR_WORKLOAD_API_STATUS')) throw err;
    io.err(`workload fetch: ${err.message}`);
    return 1;
  }
  for (const [i, s] of res.svids.entries()) {
    const c = decodeJwt(s.token);
    io.out(
      `SPIFFE ID: ${s.spiffeId}\n  JWT-SVID #${i}: audience ${JSON.stringify(c.aud)}, expires ${new Date((c.exp ?? 0) * 1000).toISOString()}${s.hint ? `, hint ${s.hint}` : ''}`,
    );
  }
  if (dir !== undefined) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    for (const [i, s] of res.svids.entries())
      await writeFile(join(dir, `jwt.${i}.token`), `${s.token}\n`, { mode: 0o600 });
    io.out(`written to ${dir}`);
  }
  return 0;
}
