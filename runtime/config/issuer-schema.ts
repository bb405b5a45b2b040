/**
 * The issuer's config file (`edgeward issuer --config FILE`). One schema gives both validation
 * and the `IssuerConfig` type; the bounds between values (`issuer-bounds.ts`) are checked after it.
 *
 * Versions: 1 — the first layout; 2 — `deviceCaTtl` is replaced by `offlineBudget` (the delegated
 * CA's lifetime is how long a gateway serves its devices without the issuer; default 7d, at most
 * 30d). The migration renames the key, keeping its value.
 */
import { type Static, Type } from '@sinclair/typebox';
import type { Migration } from './migrations.ts';
import { Closed, Duration, FilePath, LogLevel, SpiffeTrustDomain } from './types.ts';

export const ISSUER_CONFIG_VERSION = 2;

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
];

export const IssuerConfigSchema = Closed({
  version: Type.Literal(ISSUER_CONFIG_VERSION),
  trustDomain: SpiffeTrustDomain(),
  listen: Closed({
    host: Type.String({ minLength: 1 }),
    port: Type.Integer({ minimum: 0, maximum: 65535 }),
    certificate: FilePath('TLS server certificate chain (PEM)'),
    key: FilePath('TLS server key (PEM, mode 0600)'),
  }),
  ca: Closed({
    certificate: FilePath('issuer CA certificate (PEM)'),
    key: FilePath('issuer CA private key (PEM, mode 0600)'),
    /** A prepared next CA: published in the bundle at start, signs after `edgeward issuer ca rotate`. */
    next: Type.Optional(
      Closed({
        certificate: FilePath('next CA certificate (PEM)'),
        key: FilePath('next CA private key (PEM, mode 0600)'),
      }),
    ),
  }),
  storeDir: FilePath(),
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
          FilePath('the operator API socket, mode 0600 (default admin.sock in storeDir)'),
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
  EDGEWARD_STORE_DIR: 'storeDir',
} as const;
