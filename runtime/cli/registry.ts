/**
 * The subcommands of `edgeward`, loaded lazily so that `--help` and the idle agent do not pay
 * for code they never run.
 */
import type { Command } from './command.ts';

export interface Entry {
  readonly name: string;
  readonly summary: string;
  load(): Promise<Command>;
}

export const COMMANDS: readonly Entry[] = [
  {
    name: 'agent',
    summary: 'run the gateway agent: attest, rotate identities, serve devices over MQTT',
    load: async () => (await import('./commands/agent.ts')).command,
  },
  {
    name: 'issuer',
    summary: 'run the upstream issuer: verify attestation, sign SVIDs and device CAs',
    load: async () => (await import('./commands/issuer.ts')).command,
  },
  {
    name: 'status',
    summary: "show the running agent's identity, expiries and upstream state",
    load: async () => (await import('./commands/status.ts')).command,
  },
  {
    name: 'device',
    summary: 'enroll a device and manage one-time device join tokens',
    load: async () => (await import('./commands/device.ts')).command,
  },
  {
    name: 'tpm',
    summary: 'TPM diagnostics: info, EK export, quotes that tpm2_checkquote verifies',
    load: async () => (await import('./commands/tpm.ts')).command,
  },
  {
    name: 'policy',
    summary: 'check a broker authorization policy file',
    load: async () => (await import('./commands/policy.ts')).command,
  },
  {
    name: 'workload',
    summary: 'SPIFFE Workload API: check an entries file, fetch SVIDs (debugging client)',
    load: async () => (await import('./commands/workload.ts')).command,
  },
  {
    name: 'hook',
    summary: 'OTA firmware-update phases for Mender, RAUC and SWUpdate',
    load: async () => (await import('./commands/hook.ts')).command,
  },
  {
    name: 'config',
    summary: 'validate an agent or issuer config file',
    load: async () => (await import('./commands/config.ts')).command,
  },
];
