/**
 * From an agent config file to an `AgentPlan` (part of the composition root): the attestor named
 * by `attestation.method`, the data-key protector (TPM seal, or a 0600 key file for join-token and
 * x509pop gateways; `sealing.pcrPolicy` binds the TPM seal to PCR values), the HTTPS upstream,
 * rotation policy, broker listeners and limits, the optional upstream bridge (`bridge`) and
 * factory-certificate enrollment (`factory`), and the admin endpoint. Files named by the config
 * (CA roots, manufacturer roots) are read here: unreadable → `ERR_CONFIG_UNREADABLE`, not PEM
 * certificates → `ERR_CONFIG_INVALID`, each naming the config key.
 */

import type { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Attestor } from '../../attestors/attestor.ts';
import type { TpmTransport } from '../../attestors/tpm/transport/transport.ts';
import type { AgentConfig } from '../config/agent-schema.ts';
import { parseDuration } from '../config/formats.ts';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/logger.ts';
import type { Random } from '../core/random.ts';
import { ConfigError } from '../errors.ts';
import { keyFileProtector } from '../store/key-file.ts';
import { attestorProtector } from '../store/protector.ts';
import { pemCertificates } from '../svid/certificate.ts';
import { httpsUpstream } from '../upstream/client.ts';
import type { Upstream } from '../upstream/types.ts';
import { DEFAULT_CONTAINER_ROOTS } from '../workload/container-image.ts';
import { DEFAULT_WORKLOAD_SOCKET } from '../workload/socket.ts';
import type { AgentOptions } from './agent.ts';
import { fullJitterBackoff } from './policy.ts';
import type { AgentPlan, BrokerBridgePlan, BrokerFactoryPlan } from './run.ts';

export interface PlanDeps {
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  /**
   * Opens the TPM named by the config's `tpm` (default: `openTransport`, with `sim:DIR` served by
   * the TypeScript simulator). Tests of boots with other PCR values inject their own.
   */
  readonly openTpm?: (spec: string) => Promise<TpmTransport>;
}

export async function planFromConfig(c: AgentConfig, deps: PlanDeps): Promise<AgentPlan> {
  const { clock, random, logger } = deps;
  // Files first: a config error must not leave the TPM opened.
  const upstream = await upstreamFor(c, clock);
  const bridge = c.bridge === undefined ? undefined : await bridgePlan(c.bridge);
  const factory = c.factory === undefined ? undefined : await factoryPlan(c.factory);
  const attestor = await attestorFor(c, deps);
  const pcrs = policyPcrs(c);
  const r = c.rotation ?? {};
  const agent: Partial<AgentOptions> = {
    backoff: fullJitterBackoff(
      {
        initialMs: r.backoffInitial ? parseDuration(r.backoffInitial) : 1_000,
        factor: r.backoffFactor ?? 2,
        capMs: r.backoffCap ? parseDuration(r.backoffCap) : 300_000,
      },
      random,
    ),
    breaker: {
      failures: r.breakerFailures ?? 5,
      openMs: r.breakerOpen ? parseDuration(r.breakerOpen) : 300_000,
    },
    ...(c.broker?.deviceSvidTtl !== undefined ? { deviceTtlMs: parseDuration(c.broker.deviceSvidTtl) } : {}),
    ...(r.rootSwitchWindow !== undefined ? { rootSwitchWindowMs: parseDuration(r.rootSwitchWindow) } : {}),
  };
  const b = c.broker ?? {};
  return {
    trustDomain: c.trustDomain,
    dataDir: c.dataDir,
    attestor,
    protector: async (a) =>
      a.supports.sealing
        ? attestorProtector(a, pcrs === undefined ? {} : { pcrs })
        : keyFileProtector(join(c.dataDir, 'store.key'), random, logger),
    upstream,
    agent,
    broker: {
      listen: { host: b.listen?.host ?? '127.0.0.1', port: b.listen?.port ?? 8883 },
      enrollment: { host: b.enrollment?.host ?? '127.0.0.1', port: b.enrollment?.port ?? 8884 },
      ...(b.policyFile !== undefined ? { policyFile: b.policyFile } : {}),
      ...(b.serverNames !== undefined ? { serverNames: b.serverNames } : {}),
      ...(b.maxConnections !== undefined ||
      b.maxPacketSize !== undefined ||
      b.handshakeTimeoutMs !== undefined
        ? {
            limits: {
              ...(b.maxConnections !== undefined ? { maxConnections: b.maxConnections } : {}),
              ...(b.maxPacketSize !== undefined ? { maxPacketSize: b.maxPacketSize } : {}),
              ...(b.handshakeTimeoutMs !== undefined ? { handshakeTimeoutMs: b.handshakeTimeoutMs } : {}),
            },
          }
        : {}),
      ...(bridge === undefined ? {} : { bridge }),
      ...(factory === undefined ? {} : { factory }),
    },
    admin: {
      ...(c.admin?.socket !== undefined ? { socket: c.admin.socket } : {}),
      ...(c.admin?.metricsPort !== undefined ? { metricsPort: c.admin.metricsPort } : {}),
    },
    ...(c.workload === undefined
      ? {}
      : {
          workload: {
            socket: c.workload.socket ?? DEFAULT_WORKLOAD_SOCKET,
            ...(c.workload.entriesFile !== undefined ? { entriesFile: c.workload.entriesFile } : {}),
            ...(c.workload.containers !== undefined
              ? { containers: { ...DEFAULT_CONTAINER_ROOTS, ...c.workload.containers } }
              : {}),
          },
        }),
  };
}

async function attestorFor(c: AgentConfig, deps: PlanDeps): Promise<Attestor> {
  const a = c.attestation;
  switch (a.method) {
    case 'tpm': {
      const { TpmAttestor } = await import('../../attestors/tpm/attestor.ts');
      const spec = c.tpm ?? 'device:/dev/tpmrm0';
      const transport = await (deps.openTpm ?? defaultOpenTpm(deps))(spec);
      return new TpmAttestor({
        transport,
        random: deps.random,
        logger: deps.logger,
        ...(a.pcrs !== undefined ? { pcrSelection: a.pcrs } : {}),
      });
    }
    case 'join-token': {
      if (a.joinTokenFile === undefined)
        throw new TypeError('attestation.joinTokenFile is required for join-token');
      const { JoinTokenAttestor } = await import('../../attestors/join-token/attestor.ts');
      return new JoinTokenAttestor({ tokenFile: a.joinTokenFile });
    }
    case 'x509pop': {
      if (a.certificate === undefined || a.key === undefined)
        throw new TypeError('attestation.certificate and attestation.key are required for x509pop');
      const { X509PopAttestor } = await import('../../attestors/x509pop/attestor.ts');
      return new X509PopAttestor({ chainFile: a.certificate, keyFile: a.key });
    }
  }
}

function defaultOpenTpm(deps: PlanDeps): (spec: string) => Promise<TpmTransport> {
  return async (spec) => {
    const { openTransport } = await import('../../attestors/tpm/transport/open.ts');
    return openTransport(
      spec,
      {
        // `sim:DIR` in a config file: the TypeScript simulator (composition root only).
        sim: async (dir) => (await import('../../sim/tpm/index.ts')).openSimTransport(dir, deps),
      },
      { clock: deps.clock },
    );
  };
}

/** Defaults of the `bridge` section (README "Configuration"). */
export const BRIDGE_DEFAULTS = {
  port: 8883,
  maxMessages: 10_000,
  maxBytes: 16 * 1024 * 1024,
  reconnectMs: 1000,
};

async function bridgePlan(b: NonNullable<AgentConfig['bridge']>): Promise<BrokerBridgePlan> {
  return {
    upstream: {
      host: b.host,
      port: b.port ?? BRIDGE_DEFAULTS.port,
      ca: await readPem(b.caFile, 'bridge.caFile'),
      ...(b.servername !== undefined ? { servername: b.servername } : {}),
    },
    topics: b.topics.map((t) => ({
      local: t.local,
      ...(t.remotePrefix !== undefined ? { remotePrefix: t.remotePrefix } : {}),
    })),
    maxMessages: b.buffer?.maxMessages ?? BRIDGE_DEFAULTS.maxMessages,
    maxBytes: b.buffer?.maxBytes ?? BRIDGE_DEFAULTS.maxBytes,
    reconnectMs: b.reconnect !== undefined ? parseDuration(b.reconnect) : BRIDGE_DEFAULTS.reconnectMs,
  };
}

/** The HTTPS upstream of `upstream:` (endpoints, CA file, timeout), for the agent and the OTA hooks. */
export async function upstreamFor(c: AgentConfig, clock: Clock): Promise<Upstream> {
  const ca =
    c.upstream.caFile === undefined ? undefined : [await readPem(c.upstream.caFile, 'upstream.caFile')];
  return httpsUpstream({
    endpoints: c.upstream.endpoints,
    ...(ca === undefined ? {} : { ca }),
    clock,
    ...(c.upstream.timeout ? { timeoutMs: parseDuration(c.upstream.timeout) } : {}),
  });
}

/** `sealing.pcrPolicy` `sha256:7,0,7` → [0, 7] (sorted, no repeats); undefined without a policy. */
export function policyPcrs(c: AgentConfig): number[] | undefined {
  const list = c.sealing?.pcrPolicy?.split(':')[1];
  return list === undefined ? undefined : [...new Set(list.split(',').map(Number))].sort((a, b) => a - b);
}

async function factoryPlan(f: NonNullable<AgentConfig['factory']>): Promise<BrokerFactoryPlan> {
  const text = await readPem(f.rootsFile, 'factory.rootsFile');
  let roots: X509Certificate[];
  try {
    roots = pemCertificates(text);
  } catch (cause) {
    throw new ConfigError(
      'ERR_CONFIG_INVALID',
      [{ path: 'factory.rootsFile', message: `${f.rootsFile}: a certificate does not parse` }],
      undefined,
      { cause },
    );
  }
  if (roots.length === 0)
    throw new ConfigError('ERR_CONFIG_INVALID', [
      { path: 'factory.rootsFile', message: `${f.rootsFile}: holds no PEM certificate` },
    ]);
  return {
    roots,
    idField: f.idField ?? 'cn',
    ...(f.allowList !== undefined ? { allowList: f.allowList } : {}),
  };
}

/** A file named by the config, as text; unreadable → `ERR_CONFIG_UNREADABLE` naming the key. */
async function readPem(file: string, key: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (cause) {
    throw new ConfigError(
      'ERR_CONFIG_UNREADABLE',
      [{ path: key, message: `${file}: ${(cause as Error).message}` }],
      undefined,
      { cause },
    );
  }
}
