/**
 * The OTA state file: which update is in flight and how far it got. One JSON file, mode 0600,
 * written atomically (temp file, fsync, rename) so a power cut leaves the old or the new state,
 * never half of one. The manifest inside is re-verified at every phase, so editing the file
 * cannot smuggle in unsigned reference values.
 *
 * Phases move forward only: `verified` (pre-install) → `installed` (post-install) → `booted`
 * (post-boot) → gone (commit or rollback). A failed post-boot records `failed` with its code.
 */
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { HookError } from './errors.ts';

export const STATE_FORMAT = 'edgeward-ota/1';
export const STATE_FILE = 'ota-state.json';

export type OtaPhase = 'verified' | 'installed' | 'booted' | 'failed';

export interface OtaState {
  readonly format: typeof STATE_FORMAT;
  readonly phase: OtaPhase;
  /** The version of the firmware being installed (from its signed manifest). */
  readonly version: string;
  /** The signed manifest envelope, as the vendor shipped it. */
  readonly manifest: string;
  /** SPIFFE ID and SVID serial before the update (post-install), to report what rollback restores. */
  readonly previous?: { spiffeId: string; serial: string };
  /** The issuer's staging of this version for this gateway (post-install), ended by commit or rollback. */
  readonly issuer?: { gateway: string; ticket: string };
  /** The failure that ended post-boot, when phase is `failed`. */
  readonly failure?: { code: string; message: string };
  readonly updatedAt: number;
}

export async function readState(dir: string): Promise<OtaState | undefined> {
  const file = join(dir, STATE_FILE);
  let text: string;
  try {
    const info = await stat(file);
    if ((info.mode & 0o077) !== 0)
      throw new HookError(
        'ERR_HOOK_STATE_FILE',
        `${file} has mode ${(info.mode & 0o777).toString(8)}, not 0600`,
      );
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (err instanceof HookError) throw err;
    throw new HookError(
      'ERR_HOOK_STATE_FILE',
      `${file}: ${(err as Error).message}`,
      { file },
      { cause: err },
    );
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (cause) {
    throw new HookError('ERR_HOOK_STATE_FILE', `${file} is not JSON`, { file }, { cause });
  }
  const s = doc as Partial<OtaState>;
  if (
    s === null ||
    typeof s !== 'object' ||
    s.format !== STATE_FORMAT ||
    !['verified', 'installed', 'booted', 'failed'].includes(s.phase as string) ||
    typeof s.version !== 'string' ||
    typeof s.manifest !== 'string' ||
    typeof s.updatedAt !== 'number'
  )
    throw new HookError('ERR_HOOK_STATE_FILE', `${file} is not an ${STATE_FORMAT} state`, { file });
  return s as OtaState;
}

export async function writeState(dir: string, state: OtaState): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, STATE_FILE);
  const tmp = `${file}.tmp`;
  await rm(tmp, { force: true });
  const handle = await open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(state, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, file);
}

export async function clearState(dir: string): Promise<void> {
  await rm(join(dir, STATE_FILE), { force: true });
}

/** Throws ERR_HOOK_STATE unless an update is in flight in one of `phases`. */
export function expectPhase(state: OtaState | undefined, phases: readonly OtaPhase[], op: string): OtaState {
  if (state === undefined)
    throw new HookError('ERR_HOOK_STATE', `${op}: no update in flight (run pre-install first)`);
  if (!phases.includes(state.phase))
    throw new HookError(
      'ERR_HOOK_STATE',
      `${op}: update ${state.version} is ${state.phase}, not ${phases.join(' or ')}`,
      {
        phase: state.phase,
      },
    );
  return state;
}
