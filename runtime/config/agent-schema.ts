/**
 * The agent's config file (`edgeward agent --config FILE`). One schema gives both validation
 * and the `AgentConfig` type. Bump `version` and add a migration in `migrations.ts` with every
 * change of layout.
 */
import { type Static, Type } from '@sinclair/typebox';
import {
  Closed,
  Duration,
  FilePath,
  HttpsUrl,
  LogLevel,
  Port,
  SpiffeTrustDomain,
  TpmTransport,
} from './types.ts';

export const AGENT_CONFIG_VERSION = 1;

const Listener = (defaultPort: number) =>
  Closed({
    host: Type.String({ minLength: 1, default: '127.0.0.1' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: defaultPort }),
  });

export const AgentConfigSchema = Closed({
  version: Type.Literal(AGENT_CONFIG_VERSION),
  trustDomain: SpiffeTrustDomain(),
  dataDir: FilePath('where the sealed store and the admin socket live'),
  tpm: Type.Optional(TpmTransport()),
  attestation: Closed({
    method: Type.Union([Type.Literal('tpm'), Type.Literal('join-token'), Type.Literal('x509pop')]),
    pcrs: Type.Optional(Type.String({ pattern: '^(sha1|sha256|sha384):\\d+(,\\d+)*$' })),
    joinTokenFile: Type.Optional(FilePath('file holding the one-time join token (never inline)')),
    certificate: Type.Optional(FilePath('x509pop: factory certificate chain (PEM)')),
    key: Type.Optional(FilePath('x509pop: factory private key (PEM, mode 0600)')),
  }),
  upstream: Closed({
    endpoints: Type.Array(HttpsUrl(), { minItems: 1 }),
    caFile: Type.Optional(FilePath('PEM roots that the issuer TLS certificate must chain to')),
    timeout: Type.Optional(Duration()),
  }),
  rotation: Type.Optional(
    Closed({
      backoffInitial: Type.Optional(Duration()),
      backoffFactor: Type.Optional(Type.Number({ minimum: 1, maximum: 10 })),
      backoffCap: Type.Optional(Duration()),
      breakerFailures: Type.Optional(Type.Integer({ minimum: 1 })),
      breakerOpen: Type.Optional(Duration()),
    }),
  ),
  sealing: Type.Optional(
    Closed({
      pcrPolicy: Type.Optional(Type.String({ pattern: '^(sha256):\\d+(,\\d+)*$' })),
    }),
  ),
  broker: Type.Optional(
    Closed({
      listen: Type.Optional(Listener(8883)),
      enrollment: Type.Optional(Listener(8884)),
      policyFile: Type.Optional(FilePath()),
      serverNames: Type.Optional(
        Type.Array(Type.String({ minLength: 1, maxLength: 253 }), {
          maxItems: 8,
          description: 'DNS names / IP addresses devices use to reach the broker (SANs on the gateway SVID)',
        }),
      ),
      maxConnections: Type.Optional(Type.Integer({ minimum: 1 })),
      maxPacketSize: Type.Optional(Type.Integer({ minimum: 128 })),
    }),
  ),
  admin: Type.Optional(
    Closed({
      socket: Type.Optional(FilePath()),
      metricsPort: Type.Optional(Port()),
    }),
  ),
  log: Type.Optional(Closed({ level: Type.Optional(LogLevel()) })),
});

export type AgentConfig = Static<typeof AgentConfigSchema>;

/** Keys an environment variable may override. Never a secret: secrets live in files. */
export const AGENT_ENV_OVERRIDES = {
  EDGEWARD_LOG_LEVEL: 'log.level',
  EDGEWARD_TPM: 'tpm',
  EDGEWARD_DATA_DIR: 'dataDir',
  EDGEWARD_UPSTREAM: 'upstream.endpoints',
} as const;
