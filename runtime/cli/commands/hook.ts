/**
 * `edgeward hook <phase>`: the OTA phases that Mender, RAUC and SWUpdate call through the adapter
 * scripts in firmware-hooks/, and `edgeward hook manifest create`, the vendor's signing tool.
 * Exit codes are the contract with the OTA tools (firmware-hooks/exit-codes.ts).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exitCodeFor, HOOK_EXIT } from '../../../firmware-hooks/exit-codes.ts';
import { loadAgentConfigFile } from '../../config/agent-load.ts';
import type { AgentConfig } from '../../config/agent-schema.ts';
import { parseDuration } from '../../config/formats.ts';
import { type Clock, systemClock } from '../../core/clock.ts';
import { isEdgewardError } from '../../core/error.ts';
import type { Logger } from '../../core/logger.ts';
import { cryptoRandom } from '../../core/random.ts';
import { type CliIo, type Command, parseFlags, required, UsageError } from '../command.ts';

const HELP = `Usage: edgeward hook <phase> [options]

Phases (called by the OTA tool through firmware-hooks/ adapters):
  pre-install   refuse an update whose firmware manifest is missing or not signed by a
                configured firmware key; record it for the later phases
                  --manifest FILE  --firmware-key PEM (repeatable)  [--expect-version V]
  post-install  publish the manifest to the issuer, prepare the store for re-sealing
  post-boot     re-attest with the new measurements, rotate the SVID, re-seal the data key
  commit        end the update after a successful post-boot
  rollback      restore the previous identity and sealing
  agent-gate    exit 0 when the agent may start, 1 while an update waits for post-boot or
                rollback (systemd ExecCondition of edgeward.service, adapters/systemd)
  Every phase takes --config FILE (the agent config: dataDir, tpm, attestation, sealing,
  upstream) and --state-dir DIR (the OTA state; default <dataDir>/ota); pre-install, commit,
  rollback and agent-gate also work with --state-dir alone.
  post-install and post-boot also take --firmware-key PEM (repeatable).
  --lock-wait D  how long to wait for a stopping agent's store lock (default 30s); the hooks
                 never share the store with a running agent: stop edgeward.service first.

Vendor tool:
  edgeward hook manifest create --key FILE --version V [--bank sha256]
      (--pcr INDEX=HEX ... | --from-tpm SPEC --pcrs 0,1,7) [--out FILE]
  Signs a firmware manifest with the ECDSA P-256 key FILE (mode 0600).

Exit codes:
  0   done
  1   failed: abort the update / roll back
  2   usage error
  3   manifest refused (missing, unsigned, unknown key, other version): do not install
  4   post-boot: identity not re-established: roll back, never commit
  21  not ready yet (post-boot has not finished): retry later (Mender's retry-later code)`;

const FLAGS = {
  config: { type: 'string' },
  'state-dir': { type: 'string' },
  manifest: { type: 'string' },
  'firmware-key': { type: 'string', multiple: true },
  'expect-version': { type: 'string' },
  'lock-wait': { type: 'string' },
} as const;

function cliLogger(io: CliIo): Logger {
  const line =
    (level: string) =>
    (msg: string, fields: Record<string, unknown> = {}) =>
      io.err(JSON.stringify({ level, msg, ...fields }));
  return { debug: () => {}, info: line('info'), warn: line('warn'), error: line('error') };
}

/** The real clock, but its timers hold the process open (systemClock's are unref'd). */
const holdingClock: Clock = {
  now: () => systemClock.now(),
  monotonic: () => systemClock.monotonic(),
  setTimer(_name, delayMs, fn) {
    const handle = setTimeout(fn, delayMs);
    return { cancel: () => clearTimeout(handle) };
  },
};

function lockWait(text: string | undefined, name: string): number {
  if (text === undefined) return 30_000;
  try {
    return parseDuration(text);
  } catch {
    throw new UsageError(`hook ${name}: --lock-wait must be a duration such as 500ms, 30s or 2m`);
  }
}

function stateDirOf(values: { 'state-dir'?: string }, config: AgentConfig | undefined): string {
  if (values['state-dir'] !== undefined) return values['state-dir'];
  if (config === undefined) throw new UsageError('hook: give --config FILE or --state-dir DIR');
  return join(config.dataDir, 'ota');
}

async function manifestCreate(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      key: { type: 'string' },
      version: { type: 'string' },
      bank: { type: 'string' },
      pcr: { type: 'string', multiple: true },
      'from-tpm': { type: 'string' },
      pcrs: { type: 'string' },
      out: { type: 'string' },
    },
    { command: 'hook manifest create' },
  );
  const { isBank, parsePcrList, parsePcrPairs, readPcrs } = await import('../../../firmware-hooks/pcrs.ts');
  const { createManifest } = await import('../../../firmware-hooks/manifest-create.ts');
  const keyFile = required(values.key, 'key', 'hook manifest create');
  const version = required(values.version, 'version', 'hook manifest create');
  const bank = values.bank ?? 'sha256';
  if (!isBank(bank))
    throw new UsageError('hook manifest create: --bank must be sha1, sha256, sha384 or sha512');
  let pcrs: Record<number, string>;
  if (values['from-tpm'] !== undefined) {
    if (values.pcr !== undefined)
      throw new UsageError('hook manifest create: give --pcr or --from-tpm, not both');
    const indices = parsePcrList(required(values.pcrs, 'pcrs', 'hook manifest create'));
    const { openTransport } = await import('../../../attestors/tpm/transport/open.ts');
    const transport = await openTransport(values['from-tpm'], {}, { clock: systemClock });
    try {
      pcrs = await readPcrs(transport, bank, indices);
    } finally {
      await transport.close();
    }
  } else {
    pcrs = parsePcrPairs(values.pcr ?? [], bank);
  }
  const text = await createManifest({ keyFile, version, bank, pcrs }, systemClock.now());
  if (values.out === undefined) io.out(text.trimEnd());
  else {
    await writeFile(values.out, text, { mode: 0o644 });
    io.out(`${values.out}: firmware manifest ${version} (${bank}: PCR ${Object.keys(pcrs).join(',')})`);
  }
  return HOOK_EXIT.ok;
}

async function phase(name: string, argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(argv, FLAGS, { command: `hook ${name}` });
  const logger = cliLogger(io);
  const config = values.config === undefined ? undefined : await loadAgentConfigFile(values.config, io.env);
  const stateDir = stateDirOf(values, config);
  const lockWaitMs = lockWait(values['lock-wait'], name);
  switch (name) {
    case 'pre-install': {
      const { loadTrustedKeys } = await import('../../../firmware-hooks/keys.ts');
      const { preInstall } = await import('../../../firmware-hooks/pre-install.ts');
      const m = await preInstall({
        manifestFile: values.manifest,
        trusted: await loadTrustedKeys(values['firmware-key'] ?? []),
        expectVersion: values['expect-version'],
        stateDir,
        now: systemClock.now(),
        logger,
      });
      io.out(`pre-install: firmware ${m.version} manifest verified (key ${m.keyId.slice(0, 16)})`);
      return HOOK_EXIT.ok;
    }
    case 'agent-gate': {
      const { agentMayStart } = await import('../../../firmware-hooks/agent-gate.ts');
      const gate = await agentMayStart(stateDir);
      io.out(`agent-gate: ${gate.reason}`);
      return gate.ok ? HOOK_EXIT.ok : HOOK_EXIT.failed;
    }
    case 'commit':
    case 'rollback': {
      const { commit, rollback } = await import('../../../firmware-hooks/commit.ts');
      const { openStoreDb } = await import('../../../firmware-hooks/store-db.ts');
      let db: Awaited<ReturnType<typeof openStoreDb>> | undefined;
      const { storeLocation } = await import('../../../firmware-hooks/from-config.ts');
      const location = config === undefined ? join(stateDir, '..', 'store') : storeLocation(config);
      let staging: import('../../../firmware-hooks/staging.ts').FirmwareStaging | undefined;
      if (config !== undefined) {
        const { upstreamFor } = await import('../../agent/plan.ts');
        const { issuerStaging } = await import('../../../firmware-hooks/staging.ts');
        staging = issuerStaging(await upstreamFor(config, systemClock));
      }
      const input = {
        stateDir,
        logger,
        ...(staging === undefined ? {} : { staging }),
        db: async () => {
          db = await openStoreDb(location, { clock: holdingClock, waitMs: lockWaitMs });
          return db;
        },
      };
      try {
        const r = name === 'commit' ? await commit(input) : await rollback(input);
        io.out(`${name}: firmware ${r.version}`);
      } finally {
        await db?.close();
      }
      return HOOK_EXIT.ok;
    }
    case 'post-install':
    case 'post-boot': {
      if (config === undefined) throw new UsageError(`hook ${name}: give --config FILE (the agent config)`);
      const { loadTrustedKeys } = await import('../../../firmware-hooks/keys.ts');
      const { openHookContext } = await import('../../../firmware-hooks/from-config.ts');
      const trusted = await loadTrustedKeys(values['firmware-key'] ?? []);
      const opened = await openHookContext(config, trusted, {
        clock: systemClock,
        lockClock: holdingClock,
        random: cryptoRandom,
        logger,
        lockWaitMs,
        stateDir,
      });
      try {
        if (name === 'post-install') {
          const { postInstall } = await import('../../../firmware-hooks/post-install.ts');
          const r = await postInstall(opened.ctx);
          io.out(`post-install: firmware ${r.version} published, store prepared for the reboot`);
        } else {
          const { postBoot } = await import('../../../firmware-hooks/post-boot.ts');
          const r = await postBoot(opened.ctx);
          io.out(
            `post-boot: firmware ${r.version}: ${r.identity === undefined ? 'already done' : `identity ${r.identity.spiffeId} re-established (serial ${r.identity.serial})`}`,
          );
        }
      } finally {
        await opened.close();
      }
      return HOOK_EXIT.ok;
    }
    default:
      throw new UsageError(`hook: unknown phase '${name}' (see edgeward hook --help)`);
  }
}

export const command: Command = {
  name: 'hook',
  summary: 'OTA firmware-update phases for Mender, RAUC and SWUpdate',
  help: HELP,
  async run(argv, io) {
    const [sub, ...rest] = argv;
    if (sub === undefined) throw new UsageError('hook: give a phase (see edgeward hook --help)');
    try {
      if (sub === 'manifest') {
        const [verb, ...more] = rest;
        if (verb !== 'create') throw new UsageError(`hook manifest: expected 'create'`);
        return await manifestCreate(more, io);
      }
      return await phase(sub, rest, io);
    } catch (err) {
      if (err instanceof UsageError) throw err;
      if (!isEdgewardError(err)) throw err;
      io.err(`edgeward hook ${sub}: ${err.code}: ${err.message}`);
      return exitCodeFor(err, sub);
    }
  },
};
