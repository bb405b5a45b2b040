/**
 * `edgeward issuer`: the upstream issuer daemon and its operator commands. This file is a
 * composition root: it builds the real clock, randomness, pino logger and the store (LevelDB or
 * PostgreSQL, `store-open.ts`) and hands them to `runtime/issuer`. Operator commands talk to the
 * RUNNING issuer over its admin socket (or its mTLS admin port) and never open its store, except
 * with an explicit `--offline` while no issuer runs (LevelDB's lock refuses it otherwise).
 * The operator commands themselves and their channels are in issuer-operator.ts.
 */
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import pino from 'pino';
import { parseDuration } from '../../config/formats.ts';
import type { IssuerConfig } from '../../config/issuer-schema.ts';
import { ISSUER_ROLE, loadConfigFile } from '../../config/load.ts';
import { systemClock } from '../../core/clock.ts';
import type { Logger } from '../../core/logger.ts';
import { cryptoRandom } from '../../core/random.ts';
import { IssuerError } from '../../errors.ts';
import { createFileCa } from '../../issuer/ca-create-file.ts';
import { createDevIssuerFiles } from '../../issuer/dev.ts';
import { issuerOptionsFromConfig } from '../../issuer/from-config.ts';
import { Issuer } from '../../issuer/issuer.ts';
import { createPkcs11Ca } from '../../issuer/pkcs11/ca-create.ts';
import { isPkcs11Uri } from '../../issuer/pkcs11/uri.ts';
import { startIssuer } from '../../issuer/start.ts';
import { migrateIssuerStore, openIssuerStore } from '../../issuer/store-open.ts';
import { type CliIo, type Command, parseFlags, required, UsageError } from '../command.ts';
import { DURATION, local, operator, remote } from './issuer-operator.ts';

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
recovery, refusal and revocation in its audit log. Probes and metrics on plain HTTP (health in
the config, default 127.0.0.1:9101): GET /healthz, /readyz (503 with the reasons), /metrics.
SIGINT/SIGTERM drain it: it stops accepting, answers 503 ERR_ISSUER_DRAINING on old connections,
finishes what is in flight (at most 10 s), then closes the store.

Options:
  --config FILE            the issuer config file (YAML, see 'edgeward config --help')
  -h, --help               this text

Operator commands act on the RUNNING issuer through its admin socket (mode 0600; admin.socket in
the config, default admin.sock in the LevelDB dir; what 'kubectl exec' reaches), or with --admin over its
mTLS admin port with an operator certificate. They never open the store behind a running issuer:
when none answers they fail with ERR_ISSUER_NOT_RUNNING. Every change is audited with who did it
(local-socket, the operator's SPIFFE ID, or offline).
  --socket PATH            the admin socket (default: from --config)
  --admin HOST:PORT --operator-cert FILE --operator-key FILE [--ca FILE]
                           use the mTLS admin port (--ca: the CA of the issuer's TLS certificate,
                           default ca.certificate of --config)
  --offline                with the issuer STOPPED: act on its store directly (bootstrap and
                           recovery, e.g. 'ca rotate' when the CA ran out and the daemon refuses
                           to start); needs --config

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
  ca rotate [--after DURATION | --at TIME | --now]
                           rotate the CA on every replica: the next CA (ca.next, configured on
                           every replica; or one from the key source) is published in the bundle at
                           once and signs from a time recorded in the store, on each replica by its
                           own clock: by default, and at the earliest, its publication + the
                           bundle's refresh hint (5m when none), so every verifier fetches the
                           bundle first; --after/--at choose a later time; --now switches at once
                           (a compromised or expiring CA). Refused (ERR_ISSUER_CA_KEY_MISSING) while
                           a live replica lacks the next key. The previous CA stays in the bundle
                           until everything it signed has expired. Afterwards move ca.next into ca
                           in the config for the next start
  ca show                  the CA state as JSON: active, next (published, signs from), retired (until),
                           and the live replicas with the keys they hold (also: ca rotate --status)
  jwt rotate               make jwtSvid.next the JWT-SVID signing key on every replica; the old key
                           stays in the bundle until every token it signed has expired (ttl + 1m).
                           As for the CA: set jwtSvid.next and restart (published), wait for the
                           agents' bundles, 'jwt rotate', then move jwtSvid.next into jwtSvid.key
  migrate                  create or upgrade the store's schema (PostgreSQL: run once per rollout,
                           before the new replicas start; idempotent; a replica refuses a database
                           not migrated, ERR_ISSUER_STORE_NOT_MIGRATED, or migrated by a newer
                           edgeward, ERR_ISSUER_STORE_SCHEMA_NEWER. LevelDB upgrades itself)
  audit [--since MS] [--limit N]
                           print audit events as JSON lines
  audit tail [--limit N] [--follow]
                           the last N audit events (default 20); --follow keeps printing new ones
  gateways list [--after NAME] [--limit N]
                           gateways as JSON lines (name, disabled, revoked, method, budget, ...)
  gateway show --name NAME one gateway as JSON
  tokens list              join tokens not used yet: gateway name, expiry (never the token)
  revocations list         revocations still in the feed, as JSON lines
  operator create --name N [--ttl 8h] --out DIR
                           an operator certificate spiffe://<td>/operator/N (at most 24h) for the
                           mTLS admin port: DIR/N.pem and DIR/N.key (0600); the key never leaves
                           this machine
  ca create --out DIR --trust-domain TD [--ttl 365d] [--generation N]
                           a new issuer CA with a file key: DIR/ca.key (P-256, PKCS#8, 0600) and
                           its self-signed certificate DIR/ca.pem for the trust domain (subject
                           '#N' with --generation); an existing file is never replaced (--config:
                           the trust domain from it). Configure it as ca.next to rotate to it
  ca create --pkcs11 URI --module LIB --pin-file FILE --trust-domain TD --out FILE [--ttl 365d]
                           a new issuer CA whose P-256 key is generated inside the PKCS#11 token
                           (URI pkcs11:token=<label>;object=<label>; private, sensitive, not
                           extractable) and whose self-signed certificate is written to --out
                           (never replaced); the key never leaves the token. With --config the
                           missing options come from it: ca.key (ca.next.key with --next),
                           ca.certificate, ca.pkcs11 and trustDomain
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
  after: { type: 'string' },
  out: { type: 'string' },
  socket: { type: 'string' },
  admin: { type: 'string' },
  'operator-cert': { type: 'string' },
  'operator-key': { type: 'string' },
  ca: { type: 'string' },
  offline: { type: 'boolean' },
  follow: { type: 'boolean' },
  pkcs11: { type: 'string' },
  module: { type: 'string' },
  'pin-file': { type: 'string' },
  next: { type: 'boolean' },
  generation: { type: 'string' },
  at: { type: 'string' },
  now: { type: 'boolean' },
  status: { type: 'boolean' },
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

async function openStore(cfg: IssuerConfig['store'], logger: Logger) {
  try {
    return await openIssuerStore(cfg, { clock: systemClock, logger });
  } catch (cause) {
    // PostgreSQL: many replicas share the database, its own typed error says what is wrong.
    // LevelDB: the lock is held by the running issuer.
    if (cfg.leveldb === undefined) throw cause;
    throw new IssuerError(
      'ERR_ISSUER_NOT_RUNNING',
      `cannot open the store: is the issuer running? (--offline is only for a stopped issuer)`,
      {},
      { cause },
    );
  }
}

export type Values = {
  [K in keyof typeof FLAGS]?: (typeof FLAGS)[K]['type'] extends 'boolean' ? boolean : string;
};

export const command: Command = {
  name: 'issuer',
  summary: 'run the upstream issuer: verify attestation, sign SVIDs and device CAs',
  help: HELP,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, FLAGS, { positionals: 2, command: 'issuer' });
    const v = values as Values;
    const [sub, sub2] = positionals;
    if (sub === 'dev-ca') {
      const dir = required(v.dir, 'dir', 'issuer dev-ca');
      const td = required(v['trust-domain'], 'trust-domain', 'issuer dev-ca');
      const dev = await createDevIssuerFiles(dir, {
        trustDomain: td,
        clock: systemClock,
        random: cryptoRandom,
      });
      for (const [k, val] of Object.entries(dev.paths)) io.out(`${k}: ${val}`);
      return 0;
    }
    if (sub === 'ca' && sub2 === 'create') return caCreate(v, io);
    if (sub === 'migrate') {
      const cfg = await loadConfigFile(
        required(v.config, 'config', 'issuer migrate'),
        ISSUER_ROLE,
        io.env,
        {},
      );
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
    if (sub === undefined || v.offline === true) {
      const file = required(v.config, 'config', sub === undefined ? 'issuer' : `issuer ${sub} --offline`);
      // The daemon checks the offline budget against what is left of its CA; operator commands do
      // not (an operator must be able to run 'ca rotate' when the CA is running out).
      const cfg = await loadConfigFile(
        file,
        ISSUER_ROLE,
        io.env,
        sub === undefined ? { now: systemClock.now() } : {},
      );
      const logger = pinoLogger(cfg.log?.level ?? 'info');
      const store = await openStore(cfg.store, logger);
      const deps = { store, clock: systemClock, random: cryptoRandom, logger };
      const options = await issuerOptionsFromConfig(cfg, deps).catch(async (e: unknown) => {
        await store.close();
        throw e;
      });
      if (sub === undefined) return daemon(options, io);
      const issuer = await Issuer.create(options);
      try {
        return await operator(local(issuer), sub, sub2, v, io);
      } finally {
        await issuer.close();
        await store.close();
      }
    }
    return operator(await remote(v, io), sub, sub2, v, io);
  },
};

/** `ca create --pkcs11`: options from the flags, else from --config. */
async function caCreate(v: Values, io: CliIo): Promise<number> {
  const cmd = 'issuer ca create';
  const cfg = v.config === undefined ? undefined : await loadConfigFile(v.config, ISSUER_ROLE, io.env, {});
  const ca = v.next === true ? cfg?.ca.next : cfg?.ca;
  const fromConfig = ca !== undefined && isPkcs11Uri(ca.key) ? ca.key : undefined;
  const uri = v.pkcs11 ?? fromConfig;
  const ttl = v.ttl ?? '365d';
  if (!DURATION.test(ttl)) throw new UsageError(`${cmd}: --ttl must be a duration such as 365d`);
  const generation = v.generation === undefined ? undefined : Number(v.generation);
  if (generation !== undefined && !(Number.isInteger(generation) && generation >= 1 && generation <= 1e6))
    throw new UsageError(`${cmd}: --generation must be a whole number from 1`);
  if (uri === undefined) {
    // A file key: DIR/ca.key (0600) and DIR/ca.pem, never replacing either.
    const made = await createFileCa({
      dir: required(v.out, 'out', `${cmd} (DIR for ca.pem and ca.key; or --pkcs11 URI)`),
      trustDomain: required(v['trust-domain'] ?? cfg?.trustDomain, 'trust-domain', cmd),
      ttlMs: parseDuration(ttl),
      ...(generation === undefined ? {} : { generation }),
      clock: systemClock,
      random: cryptoRandom,
    });
    io.out(`key: ${made.key} (0600)`);
    io.out(
      `certificate: ${made.certificate} (${made.x509.subject.replace(/\n/g, ', ')}, valid to ${made.x509.validTo}, sha256 ${made.x509.fingerprint256})`,
    );
    return 0;
  }
  const out = required(v.out ?? ca?.certificate, 'out', cmd);
  await createPkcs11Ca({
    uri,
    module: required(v.module ?? cfg?.ca.pkcs11?.module, 'module', cmd),
    pinFile: required(v['pin-file'] ?? cfg?.ca.pkcs11?.pinFile, 'pin-file', cmd),
    trustDomain: required(v['trust-domain'] ?? cfg?.trustDomain, 'trust-domain', cmd),
    out,
    ttlMs: parseDuration(ttl),
    ...(generation === undefined ? {} : { generation }),
    clock: systemClock,
    random: cryptoRandom,
  });
  const cert = new X509Certificate(await readFile(out));
  io.out(`CA key generated in the token: ${uri}`);
  io.out(
    `certificate: ${out} (${cert.subject.replace(/\n/g, ', ')}, valid to ${cert.validTo}, sha256 ${cert.fingerprint256})`,
  );
  return 0;
}

async function daemon(options: Parameters<typeof startIssuer>[0], io: CliIo): Promise<number> {
  const running = await startIssuer(options);
  const ca = new X509Certificate(running.caCertificate);
  io.out(`edgeward issuer listening on ${running.url} (trust domain ${options.trustDomain})`);
  io.out(
    `CA ${ca.subject.replace(/\n/g, ', ')}, valid to ${ca.validTo}, fingerprint sha256 ${ca.fingerprint256}`,
  );
  if (running.adminSocket !== undefined) io.out(`admin socket ${running.adminSocket}`);
  if (running.adminTls !== undefined) io.out(`admin mTLS ${running.adminTls}`);
  if (running.healthUrl !== undefined) io.out(`health ${running.healthUrl}`);
  if (!io.stopSignal.aborted) await once(io.stopSignal, 'abort');
  const { unfinished } = await running.drain();
  io.out(
    `edgeward issuer stopped${unfinished > 0 ? ` (${unfinished} requests cut at the drain deadline)` : ''}`,
  );
  return 0;
}
