/**
 * The issuer's config file (`edgeward issuer --config FILE`). One schema gives both validation
 * and the `IssuerConfig` type; the bounds between values (`issuer-bounds.ts`) are checked after it.
 *
 * Versions: 1 — the first layout; 2 — `deviceCaTtl` is replaced by `offlineBudget` (the delegated
 * CA's lifetime is how long a gateway serves its devices without the issuer; default 7d, at most
 * 30d). The migration renames the key, keeping its value. 3 — `storeDir` is replaced by `store`:
 * `{ leveldb: { dir } }` (one issuer process, the embedded default) or `{ postgres: { url,
 * passwordFile?, caFile?, poolSize?, queryTimeout? } }` (any number of replicas on one database). The migration
 * moves `storeDir` to `store.leveldb.dir`. The password lives only in `passwordFile` (0600): the
 * URL may not carry one, and no environment variable sets it. `ca.key` and `ca.next.key` may be
 * PKCS#11 URIs (RFC 7512) with `ca.pkcs11: { module, pinFile }` (no version change: an addition).
 */
import { type Static, Type } from '@sinclair/typebox';
import type { Migration } from './migrations.ts';
import { Closed, Duration, FilePath, LogLevel, SpiffeTrustDomain } from './types.ts';

export const ISSUER_CONFIG_VERSION = 3;

export const ISSUER_MIGRATIONS: readonly Migration[] = [
  // 1 → 2: deviceCaTtl (the delegated CA's lifetime) is now called offlineBudget.
  {
    from: 1,
    renames: { offlineBudget: 'deviceCaTtl' },
    up: ({ deviceCaTtl, ...rest }) =>
      deviceCaTtl === undefined || rest.offlineBudget !== undefined
        ? { ...rest, ...(deviceCaTtl === undefined ? {} : { deviceCaTtl }) }
        : { ...rest, offlineBudget: deviceCaTtl },
  },
  // 2 → 3: storeDir (LevelDB) is now store.leveldb.dir, beside store.postgres.
  {
    from: 2,
    renames: { store: 'storeDir' },
    up: ({ storeDir, ...rest }) =>
      storeDir === undefined || rest.store !== undefined
        ? { ...rest, ...(storeDir === undefined ? {} : { storeDir }) }
        : { ...rest, store: { leveldb: { dir: storeDir } } },
  },
];

export const IssuerConfigSchema = Closed({
  version: Type.Literal(ISSUER_CONFIG_VERSION),
  trustDomain: SpiffeTrustDomain(),
  listen: Closed({
    host: Type.String({ minLength: 1 }),
    port: Type.Integer({ minimum: 0, maximum: 65535 }),
    certificate: FilePath('TLS server certificate chain (PEM)'),
    key: FilePath('TLS server key (PEM, mode 0600)'),
    handshakeTimeout: Type.Optional(
      Duration(
        'a socket not through its TLS handshake this long after accept is closed (default 10s, 1s..5m)',
      ),
    ),
    requestTimeout: Type.Optional(
      Duration(
        "a request's headers and body must arrive this long after the handshake or the last answer (default 30s, 1s..10m)",
      ),
    ),
    maxConnections: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 1_000_000,
        description: 'open sockets on the gateway port, counted from accept (default 4096)',
      }),
    ),
  }),
  ca: Closed({
    certificate: FilePath('issuer CA certificate (PEM)'),
    key: FilePath(
      'issuer CA private key (PEM, mode 0600), or a PKCS#11 URI pkcs11:token=<label>;object=<label> (needs ca.pkcs11)',
    ),
    /** A prepared next CA: published in the bundle at start, signs after `edgeward issuer ca rotate`. */
    next: Type.Optional(
      Closed({
        certificate: FilePath('next CA certificate (PEM)'),
        key: FilePath('next CA private key (PEM, mode 0600), or a PKCS#11 URI'),
      }),
    ),
    /** Where a `pkcs11:` key is: the module and the user PIN (never in the YAML or the environment). */
    pkcs11: Type.Optional(
      Closed(
        {
          module: FilePath('the PKCS#11 module (shared library), e.g. /usr/lib/softhsm/libsofthsm2.so'),
          pinFile: FilePath('the token user PIN (mode 0600)'),
        },
        'the PKCS#11 token holding the pkcs11: CA keys',
      ),
    ),
  }),
  /** JWT-SVID signing (absent: the issuer refuses JWT-SVID requests with ERR_ISSUER_JWT_KEY). */
  jwtSvid: Type.Optional(
    Closed(
      {
        key: FilePath(
          'JWT-SVID signing key: EC P-256 private key (PEM, mode 0600), or a PKCS#11 URI (module and PIN: ca.pkcs11)',
        ),
        /** A prepared next key: published in the bundle at start, signs after `edgeward issuer jwt rotate`. */
        next: Type.Optional(FilePath('next JWT-SVID signing key (PEM, mode 0600), or a PKCS#11 URI')),
        ttl: Type.Optional(Duration('JWT-SVID lifetime (default 5m, 30s..1h)')),
        perGateway: Type.Optional(
          Type.Integer({
            minimum: 1,
            description: 'JWT-SVID requests per gateway per rateLimit.window (default 60)',
          }),
        ),
      },
      "JWT-SVIDs for the gateways' workloads (ES256)",
    ),
  ),
  /** Exactly one of `leveldb` and `postgres` (checked in issuer-bounds.ts). */
  store: Closed(
    {
      leveldb: Type.Optional(
        Closed({ dir: FilePath('LevelDB directory: one issuer process (the embedded default)') }),
      ),
      postgres: Type.Optional(
        Closed({
          url: Type.String({
            minLength: 1,
            description:
              'postgresql://user@host:5432/database (or ?host=/socket/dir); no password: use passwordFile',
          }),
          passwordFile: Type.Optional(FilePath('the database password (mode 0600)')),
          caFile: Type.Optional(FilePath('PEM roots for sslmode=verify-full')),
          poolSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
          queryTimeout: Type.Optional(
            Duration(
              'how long a query may go unanswered before it fails with ERR_ISSUER_STORE_UNAVAILABLE and its connection is dropped (default 30s, 1s..10m)',
            ),
          ),
        }),
      ),
    },
    'where the issuer keeps its state: leveldb (one process) or postgres (shared by replicas)',
  ),
  svidTtl: Type.Optional(Duration('gateway SVID lifetime (default 1h, at most offlineBudget)')),
  offlineBudget: Type.Optional(
    Duration(
      "the delegated device CA's lifetime: how long a gateway serves its devices without the issuer (default 7d, at most 30d)",
    ),
  ),
  serverNames: Type.Optional(
    Closed(
      {
        dnsSuffixes: Type.Array(Type.String({ pattern: '^\\.[a-z0-9.-]+$' }), { maxItems: 32 }),
        privateAddresses: Type.Boolean(),
      },
      'broker host names a gateway SVID may carry: DNS suffixes and loopback/private addresses',
    ),
  ),
  sessionTtl: Type.Optional(Duration('how long an attestation challenge stays valid (default 5m)')),
  bundleRefreshHint: Type.Optional(Duration('spiffe_refresh_hint of the bundle')),
  attestation: Closed({
    tpm: Type.Optional(
      Closed({
        manufacturerRoots: Type.Array(FilePath(), { minItems: 1 }),
        intermediates: Type.Optional(Type.Array(FilePath())),
        pcrs: Type.Optional(Type.String({ pattern: '^(sha1|sha256|sha384):\\d+(,\\d+)*$' })),
        autoRegister: Type.Optional(Type.Boolean()),
        /** `manifests` (default): PCR values must match a signed firmware manifest; `any`: development only. */
        pcrPolicy: Type.Optional(Type.Union([Type.Literal('manifests'), Type.Literal('any')])),
      }),
    ),
    joinToken: Type.Optional(Closed({ enabled: Type.Boolean() })),
    x509pop: Type.Optional(
      Closed({
        roots: Type.Array(FilePath(), { minItems: 1 }),
        nameFrom: Type.Optional(Type.Union([Type.Literal('cn'), Type.Literal('serial')])),
        autoRegister: Type.Optional(Type.Boolean()),
      }),
    ),
  }),
  firmware: Type.Optional(Closed({ signingKeys: Type.Array(FilePath(), { minItems: 1 }) })),
  rateLimit: Type.Optional(
    Closed({
      perAddress: Type.Optional(Type.Integer({ minimum: 1 })),
      perGateway: Type.Optional(Type.Integer({ minimum: 1 })),
      window: Type.Optional(Duration()),
    }),
  ),
  health: Type.Optional(
    Closed(
      {
        host: Type.String({ minLength: 1 }),
        port: Type.Integer({ minimum: 0, maximum: 65535 }),
      },
      'plain-HTTP probes and metrics: /healthz, /readyz, /metrics (default 127.0.0.1:9101)',
    ),
  ),
  admin: Type.Optional(
    Closed(
      {
        socket: Type.Optional(
          FilePath(
            'the operator API socket, mode 0600 (default admin.sock in store.leveldb.dir; PostgreSQL: /run/edgeward/issuer-admin.sock)',
          ),
        ),
        listen: Type.Optional(
          Closed(
            {
              host: Type.String({ minLength: 1 }),
              port: Type.Integer({ minimum: 0, maximum: 65535 }),
            },
            'the optional mTLS operator port (operator certificates only; the listen certificate serves it)',
          ),
        ),
      },
      'the live operator API',
    ),
  ),
  log: Type.Optional(Closed({ level: Type.Optional(LogLevel()) })),
});

export type IssuerConfig = Static<typeof IssuerConfigSchema>;

export const ISSUER_ENV_OVERRIDES = {
  EDGEWARD_LOG_LEVEL: 'log.level',
  EDGEWARD_STORE_DIR: 'store.leveldb.dir',
} as const;
