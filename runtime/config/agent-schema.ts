/**
 * The agent's config file (`edgeward agent --config FILE`). One schema gives both validation
 * and the `AgentConfig` type. Bump `version` and add a migration in `agent-role.ts` with every
 * change of layout, then regenerate the agent's precompiled validator
 * (`node --import tsx scripts/gen-validators.ts --write`; a test fails when it drifts).
 */
import { type Static, Type } from '@sinclair/typebox';
import { AGENT_CONFIG_VERSION } from './agent-role.ts';
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

export { AGENT_CONFIG_VERSION, AGENT_ENV_OVERRIDES, AGENT_MIGRATIONS } from './agent-role.ts';

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
  attestation: Type.Object(
    {
      method: Type.Union([Type.Literal('tpm'), Type.Literal('join-token'), Type.Literal('x509pop')]),
      pcrs: Type.Optional(Type.String({ pattern: '^(sha1|sha256|sha384):\\d+(,\\d+)*$' })),
      joinTokenFile: Type.Optional(FilePath('file holding the one-time join token (never inline)')),
      certificate: Type.Optional(FilePath('x509pop: factory certificate chain (PEM)')),
      key: Type.Optional(FilePath('x509pop: factory private key (PEM, mode 0600)')),
    },
    {
      additionalProperties: false,
      // What each method needs to run: refused by `config check` and at start, never a TypeError.
      allOf: [
        {
          if: { properties: { method: { const: 'join-token' } } },
          // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then keyword, not a thenable
          then: { required: ['joinTokenFile'] },
        },
        {
          if: { properties: { method: { const: 'x509pop' } } },
          // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then keyword, not a thenable
          then: { required: ['certificate', 'key'] },
        },
      ],
    },
  ),
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
      breakerFailures: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
      breakerOpen: Type.Optional(Duration()),
      rootSwitchWindow: Type.Optional(
        Type.String({
          format: 'root-switch-window',
          description:
            'after an issuer CA switch, the delegated CA is renewed under the new root at a random time within this window (default 1h, at most 7d): a large fleet widens it to spread its renewals',
        }),
      ),
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
      maxConnections: Type.Optional(
        Type.Integer({
          minimum: 1,
          maximum: 1_000_000,
          description: 'open sockets on the MQTT port, counted from accept (default 2000)',
        }),
      ),
      // MQTT 3.1.1 §2.2.3: the Remaining Length is at most 268,435,455 bytes.
      maxPacketSize: Type.Optional(Type.Integer({ minimum: 128, maximum: 268_435_455 })),
      handshakeTimeoutMs: Type.Optional(
        Type.Integer({
          minimum: 100,
          maximum: 120_000,
          description:
            'a socket not through its TLS handshake this long after accept is closed, on both ports (default 10000)',
        }),
      ),
      deviceSvidTtl: Type.Optional(
        Type.String({
          format: 'device-svid-ttl',
          description: 'device SVID lifetime (default 1h, at most 30d, never past the delegated CA)',
        }),
      ),
    }),
  ),
  bridge: Type.Optional(
    Closed(
      {
        host: Type.String({ minLength: 1, description: 'the cloud MQTT broker' }),
        port: Type.Optional(Port()),
        caFile: FilePath('PEM roots that the cloud broker certificate must chain to'),
        servername: Type.Optional(Type.String({ minLength: 1, maxLength: 253 })),
        topics: Type.Array(
          Closed({
            local: Type.String({ minLength: 1, maxLength: 1024, description: 'local topic filter' }),
            remotePrefix: Type.Optional(Type.String({ maxLength: 1024 })),
          }),
          { minItems: 1, maxItems: 64 },
        ),
        buffer: Type.Optional(
          Closed({
            maxMessages: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000 })),
            maxBytes: Type.Optional(Type.Integer({ minimum: 1024, maximum: 1_000_000_000_000 })),
          }),
        ),
        reconnect: Type.Optional(Duration('wait between reconnect attempts (default 1s)')),
      },
      'forward local topics to a cloud MQTT broker with the gateway SVID (QoS 1 buffered offline)',
    ),
  ),
  factory: Type.Optional(
    Closed(
      {
        rootsFile: FilePath('PEM manufacturer root certificates that factory device certificates chain to'),
        idField: Type.Optional(
          Type.Union([Type.Literal('cn'), Type.Literal('serialNumber'), Type.Literal('dns')]),
        ),
        allowList: Type.Optional(
          Type.Array(Type.String({ pattern: '^[A-Za-z0-9._-]{1,64}$' }), { maxItems: 100_000 }),
        ),
      },
      'enroll devices that present a factory certificate on the enrollment listener',
    ),
  ),
  admin: Type.Optional(
    Closed({
      socket: Type.Optional(FilePath()),
      metricsPort: Type.Optional(Port()),
    }),
  ),
  workload: Type.Optional(
    Closed(
      {
        socket: Type.Optional(FilePath('the Workload API Unix socket; default /run/edgeward/workload.sock')),
        entriesFile: Type.Optional(FilePath('registration entries (YAML): selector sets → workload names')),
        containers: Type.Optional(
          Closed(
            {
              docker: Type.Optional(Type.Union([FilePath("Docker's data-root"), Type.Null()])),
              podman: Type.Optional(
                Type.Union([Closed({ graphRoot: FilePath(), runRoot: FilePath() }), Type.Null()]),
              ),
              containerd: Type.Optional(Type.Union([FilePath("containerd's state directory"), Type.Null()])),
            },
            'where container runtimes record their containers (container:image selectors); null turns one off',
          ),
        ),
      },
      'serve the SPIFFE Workload API to local processes and containers',
    ),
  ),
  log: Type.Optional(Closed({ level: Type.Optional(LogLevel()) })),
});

export type AgentConfig = Static<typeof AgentConfigSchema>;
