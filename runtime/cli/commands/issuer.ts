/**
 * `edgeward issuer`: the upstream issuer daemon and its operator commands. This file is a
 * composition root: it builds the real clock, randomness, pino logger and the store (LevelDB or
 * PostgreSQL, `store-open.ts`) and hands them to `runtime/issuer`.
 */
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import pino from 'pino';
import { parseDuration } from '../../config/formats.ts';
import { ISSUER_ROLE, loadConfigFile } from '../../config/load.ts';
import { systemClock } from '../../core/clock.ts';
import type { Logger } from '../../core/logger.ts';
import { cryptoRandom } from '../../core/random.ts';
import { createDevIssuerFiles } from '../../issuer/dev.ts';
import { issuerOptionsFromConfig } from '../../issuer/from-config.ts';
import { Issuer } from '../../issuer/issuer.ts';
import { startIssuer } from '../../issuer/start.ts';
import { migrateIssuerStore, openIssuerStore } from '../../issuer/store-open.ts';
import { type CliIo, type Command, parseFlags, required, UsageError } from '../command.ts';

const HELP = `Usage: edgeward issuer --config FILE
       edgeward issuer <operator command> --config FILE [options]
       edgeward issuer migrate --config FILE
       edgeward issuer dev-ca --dir DIR --trust-domain TD

Runs the upstream issuer: HTTPS with CBOR bodies (POST /v1/attest/begin, /v1/attest/finish,
/v1/renew/begin, /v1/renew/finish, /v1/firmware/manifests; GET /v1/bundle, /v1/revocations).
It verifies tpm, join-token and x509pop attestation, signs gateway X.509-SVIDs (default 1h)
and delegated device CAs (the offline budget, default 7d), lets a gateway whose SVID expired
recover by proof of possession of its still-valid delegated CA key (/v1/recover/begin,
/v1/recover/finish), takes the log of device certificates issued offline (/v1/devices/issued),
serves the SPIFFE bundle and the revocation feed, and records every issuance, renewal,
recovery, refusal and revocation in its audit log. SIGINT/SIGTERM stop it.

Options:
  --config FILE            the issuer config file (YAML, see 'edgeward config --help')
  -h, --help               this text

Operator commands (they open the store directly: stop the daemon first, LevelDB allows one
process at a time):
  token create --name NAME [--ttl 10m]
                           print a one-time join token for gateway NAME (stored hashed)
  register --name NAME (--ek-hash HEX | --factory ID)
                           map an EK (SHA-256 of its TPMT_PUBLIC, 64 hex digits) or a factory
                           certificate identity (its CN or serial, per attestation.x509pop.nameFrom)
                           to gateway NAME
  disable --name NAME      refuse attestation, renewal and recovery for gateway NAME
  enable --name NAME       allow it again
  gateway budget --name NAME --budget DURATION|configured
                           set gateway NAME's offline budget (its delegated CA's lifetime: how long
                           it serves its devices without the issuer; > 0, at most 30d, not shorter
                           than svidTtl), or go back to the configured offlineBudget. It applies to
                           the next delegated CA issued to it (the agent renews its CA at half-life)
  revoke (--spiffe-id ID | --serial HEX)
                           revoke a gateway or device SPIFFE ID (a gateway is also disabled) or a
                           certificate serial (lowercase hex); kept in the feed until it expires
  ca rotate                retire the current CA (kept in the bundle until everything it signed has
                           expired) in favour of ca.next. Rotation: 1) set ca.next and restart: the
                           next CA is published in the bundle; 2) once agents have the new bundle,
                           stop the issuer, run 'ca rotate', move ca.next into ca, start again
  migrate                  create or upgrade the store's schema (PostgreSQL: run once per rollout,
                           before the new replicas start; idempotent; a replica refuses a database
                           not migrated, ERR_ISSUER_STORE_NOT_MIGRATED, or migrated by a newer
                           edgeward, ERR_ISSUER_STORE_SCHEMA_NEWER. LevelDB upgrades itself)
  audit [--since MS] [--limit N]
                           print audit events as JSON lines
  dev-ca --dir DIR --trust-domain TD
                           create a development CA (ca.pem, ca.key 0600) and a TLS certificate for
                           127.0.0.1/localhost (tls.pem, tls.key 0600) in DIR; existing files are kept

Exit codes: 0 done, 1 refused or failed (the error code is printed), 2 usage error.`;

const FLAGS = {
  config: { type: 'string' },
  name: { type: 'string' },
  ttl: { type: 'string' },
  'ek-hash': { type: 'string' },
  factory: { type: 'string' },
  'spiffe-id': { type: 'string' },
  serial: { type: 'string' },
  budget: { type: 'string' },
  since: { type: 'string' },
  limit: { type: 'string' },
  dir: { type: 'string' },
  'trust-domain': { type: 'string' },
} as const;

function pinoLogger(level: string): Logger {
  const p = pino({ level, base: { role: 'issuer' } }, pino.destination(2));
  return {
    debug: (m, f) => p.debug(f ?? {}, m),
    info: (m, f) => p.info(f ?? {}, m),
    warn: (m, f) => p.warn(f ?? {}, m),
    error: (m, f) => p.error(f ?? {}, m),
  };
}

export const command: Command = {
  name: 'issuer',
  summary: 'run the upstream issuer: verify attestation, sign SVIDs and device CAs',
  help: HELP,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, FLAGS, { positionals: 2, command: 'issuer' });
    const [sub, sub2] = positionals;
    if (sub === 'dev-ca') {
      const dir = required(values.dir, 'dir', 'issuer dev-ca');
      const td = required(values['trust-domain'], 'trust-domain', 'issuer dev-ca');
      const dev = await createDevIssuerFiles(dir, {
        trustDomain: td,
        clock: systemClock,
        random: cryptoRandom,
      });
      for (const [k, v] of Object.entries(dev.paths)) io.out(`${k}: ${v}`);
      return 0;
    }
    const file = required(values.config, 'config', 'issuer');
    // The daemon checks the offline budget against what is left of its CA; operator commands do
    // not (an operator must be able to run 'ca rotate' when the CA is running out).
    const cfg = await loadConfigFile(
      file,
      ISSUER_ROLE,
      io.env,
      sub === undefined ? { now: systemClock.now() } : {},
    );
    if (sub === 'migrate') {
      const r = await migrateIssuerStore(cfg.store);
      io.out(
        r.kind === 'leveldb'
          ? `LevelDB store at schema ${r.to}`
          : r.from === r.to
            ? `PostgreSQL issuer schema is current (version ${r.to})`
            : `PostgreSQL issuer schema migrated from version ${r.from} to ${r.to}`,
      );
      return 0;
    }
    const logger = pinoLogger(cfg.log?.level ?? 'info');
    const store = await openIssuerStore(cfg.store, { clock: systemClock, logger });
    const deps = { store, clock: systemClock, random: cryptoRandom, logger };
    const options = await issuerOptionsFromConfig(cfg, deps).catch(async (e: unknown) => {
      await store.close();
      throw e;
    });
    if (sub === undefined) return daemon(options, io);
    const issuer = await Issuer.create(options);
    try {
      return await operator(issuer, sub, sub2, values, io);
    } finally {
      await issuer.close();
      await store.close();
    }
  },
};

async function daemon(options: Parameters<typeof startIssuer>[0], io: CliIo): Promise<number> {
  const running = await startIssuer(options);
  const ca = new X509Certificate(running.caCertificate);
  io.out(`edgeward issuer listening on ${running.url} (trust domain ${options.trustDomain})`);
  io.out(
    `CA ${ca.subject.replace(/\n/g, ', ')}, valid to ${ca.validTo}, fingerprint sha256 ${ca.fingerprint256}`,
  );
  if (!io.stopSignal.aborted) await once(io.stopSignal, 'abort');
  await running.close();
  return 0;
}

async function operator(
  issuer: Issuer,
  sub: string,
  sub2: string | undefined,
  v: { [K in keyof typeof FLAGS]?: string },
  io: CliIo,
): Promise<number> {
  const cmd = `issuer ${sub}`;
  switch (sub) {
    case 'token': {
      if (sub2 !== 'create') throw new UsageError('issuer token: the only action is create');
      const ttl = v.ttl ?? '10m';
      if (!/^\d+(ms|s|m|h|d)$/.test(ttl))
        throw new UsageError(`${cmd}: --ttl must be a duration such as 10m`);
      io.out(await issuer.createJoinToken(required(v.name, 'name', cmd), parseDuration(ttl)));
      return 0;
    }
    case 'register': {
      const name = required(v.name, 'name', cmd);
      if ((v['ek-hash'] === undefined) === (v.factory === undefined))
        throw new UsageError(`${cmd}: give exactly one of --ek-hash or --factory`);
      if (v['ek-hash'] !== undefined) await issuer.register('ek', v['ek-hash'].toLowerCase(), name);
      else await issuer.register('x509', v.factory as string, name);
      io.out(`registered gateway ${name}`);
      return 0;
    }
    case 'disable':
    case 'enable':
      await issuer.setDisabled(required(v.name, 'name', cmd), sub === 'disable');
      io.out(`gateway ${v.name} ${sub}d`);
      return 0;
    case 'gateway': {
      if (sub2 !== 'budget') throw new UsageError('issuer gateway: the only action is budget');
      const name = required(v.name, 'name', `${cmd} budget`);
      const budget = required(v.budget, 'budget', `${cmd} budget`);
      if (budget !== 'configured' && !/^\d+(ms|s|m|h|d)$/.test(budget))
        throw new UsageError(`${cmd} budget: --budget must be a duration such as 3d, or 'configured'`);
      await issuer.setOfflineBudget(name, budget === 'configured' ? undefined : parseDuration(budget));
      io.out(`gateway ${name}: offline budget ${budget}`);
      return 0;
    }
    case 'revoke': {
      if ((v['spiffe-id'] === undefined) === (v.serial === undefined))
        throw new UsageError(`${cmd}: give exactly one of --spiffe-id or --serial`);
      const r =
        v['spiffe-id'] !== undefined
          ? await issuer.revoke('spiffe-id', v['spiffe-id'])
          : await issuer.revoke('serial', (v.serial as string).toLowerCase());
      io.out(`revoked (sequence ${r.sequence}, kept until ${new Date(r.until).toISOString()})`);
      return 0;
    }
    case 'ca':
      if (sub2 !== 'rotate') throw new UsageError('issuer ca: the only action is rotate');
      await issuer.rotateCa();
      io.out('current CA retired; now move ca.next into ca in the config and start the issuer');
      return 0;
    case 'audit': {
      const since = Number(v.since ?? 0);
      const limit = Number(v.limit ?? 1000);
      if (!Number.isSafeInteger(since) || !Number.isSafeInteger(limit) || limit < 1)
        throw new UsageError(`${cmd}: --since and --limit must be integers`);
      for (const e of await issuer.auditEvents(since, limit)) io.out(JSON.stringify(e));
      return 0;
    }
    default:
      throw new UsageError(`issuer: unknown command '${sub}' (see edgeward issuer --help)`);
  }
}
