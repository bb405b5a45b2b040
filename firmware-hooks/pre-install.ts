/**
 * Phase `pre-install`: refuse an update whose firmware manifest is missing, malformed, unsigned,
 * signed by no configured firmware key, or for another version than the one being installed.
 * On success the verified manifest is recorded (phase `verified`) for the later phases.
 * Deny by default: with no firmware key configured every update is refused.
 */
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isEdgewardError } from '../runtime/core/error.ts';
import type { Logger } from '../runtime/core/logger.ts';
import { type FirmwareManifest, verifyManifest } from '../runtime/firmware/manifest.ts';
import { HookError } from './errors.ts';
import { readState, writeState } from './ota-state.ts';

export interface PreInstallInput {
  /** Path of the manifest shipped with the update; undefined when the update carries none. */
  readonly manifestFile: string | undefined;
  readonly trusted: readonly KeyObject[];
  /** The version the OTA tool says it installs (artifact name); checked when given. */
  readonly expectVersion?: string | undefined;
  readonly stateDir: string;
  readonly now: number;
  readonly logger: Logger;
}

/** Verify a manifest text against the trusted keys, mapping failures to ERR_HOOK_MANIFEST_REFUSED. */
export function checkManifest(text: string, trusted: readonly KeyObject[]): FirmwareManifest {
  if (trusted.length === 0)
    throw new HookError('ERR_HOOK_NO_FIRMWARE_KEY', 'no firmware key configured: every manifest is refused');
  try {
    return verifyManifest(text, trusted);
  } catch (err) {
    if (!isEdgewardError(err)) throw err;
    throw new HookError(
      'ERR_HOOK_MANIFEST_REFUSED',
      `firmware manifest refused: ${err.message}`,
      {
        reason: err.code,
      },
      { cause: err },
    );
  }
}

export async function preInstall(input: PreInstallInput): Promise<FirmwareManifest> {
  if (input.manifestFile === undefined || input.manifestFile === '')
    throw new HookError('ERR_HOOK_MANIFEST_MISSING', 'the update carries no firmware manifest');
  let text: string;
  try {
    text = await readFile(input.manifestFile, 'utf8');
  } catch (cause) {
    throw new HookError(
      'ERR_HOOK_MANIFEST_MISSING',
      `firmware manifest ${input.manifestFile}: ${(cause as Error).message}`,
      { file: input.manifestFile },
      { cause },
    );
  }
  const manifest = checkManifest(text, input.trusted);
  if (input.expectVersion !== undefined && input.expectVersion !== manifest.version)
    throw new HookError(
      'ERR_HOOK_VERSION_MISMATCH',
      `manifest is for version ${manifest.version}, the update installs ${input.expectVersion}`,
    );
  const previous = await readState(input.stateDir);
  if (previous !== undefined && previous.phase !== 'verified')
    throw new HookError(
      'ERR_HOOK_STATE',
      `update ${previous.version} is still ${previous.phase}: commit or roll it back first`,
      { phase: previous.phase },
    );
  await writeState(input.stateDir, {
    format: 'edgeward-ota/1',
    phase: 'verified',
    version: manifest.version,
    manifest: text,
    updatedAt: input.now,
  });
  input.logger.info('firmware manifest verified', {
    event: 'ota.pre-install',
    version: manifest.version,
    keyId: manifest.keyId,
  });
  return manifest;
}
