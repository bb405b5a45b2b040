/**
 * Every command the simulator implements — exactly the set edgeward's TPM client uses — keyed
 * by command code, and their TPMA_CC words for GetCapability(COMMANDS).
 */
import { attestCommands } from './commands/attest.ts';
import { capabilityCommands } from './commands/capability.ts';
import { contextCommands } from './commands/context.ts';
import { credentialCommands } from './commands/credential.ts';
import { nvCommands } from './commands/nv.ts';
import { objectCommands } from './commands/object.ts';
import { pcrCommands } from './commands/pcr.ts';
import { policyCommands } from './commands/policy.ts';
import { startupCommands } from './commands/startup.ts';
import type { CommandSpec } from './spec.ts';

const ALL: readonly CommandSpec[] = [
  ...startupCommands,
  ...capabilityCommands,
  ...pcrCommands,
  ...objectCommands,
  ...nvCommands,
  ...contextCommands,
  ...policyCommands,
  ...attestCommands,
  ...credentialCommands,
];

export const COMMANDS: ReadonlyMap<number, CommandSpec> = new Map(ALL.map((s) => [s.cc, s]));

/** [commandCode, TPMA_CC]: commandIndex | cHandles << 25 | rHandle << 28 (Part 2 §8.9). */
export const COMMAND_ATTRIBUTES: readonly [number, number][] = ALL.map((s): [number, number] => [
  s.cc,
  (s.cc | (s.handles.length << 25) | (s.responseHandle === true ? 1 << 28 : 0)) >>> 0,
]).sort((a, b) => a[0] - b[0]);
