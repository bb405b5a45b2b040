/**
 * The issuer pod's init container: `node install-secrets.mjs SRC=DEST ...` copies each file of the
 * mounted Secret directory SRC into DEST, owned by this process's user and mode 0600, DEST itself
 * 0700.
 *
 * Why: the issuer refuses a key, PIN or password file with group or other bits
 * (`ERR_ISSUER_KEY_PERMISSIONS`), and Kubernetes cannot give a Secret volume's files to a non-root
 * user: without `fsGroup` they belong to root (0400 is unreadable to the issuer, 0444 is refused),
 * with `fsGroup` the kubelet adds group read (0440, refused). So the pod mounts the Secrets only
 * into this init container, which reads them through `fsGroup` and writes them into an
 * `emptyDir` with `medium: Memory` (tmpfs: never on the node's disk) that the issuer mounts.
 *
 * A Secret volume holds each key as a symlink into a hidden timestamped directory (`..data`);
 * names starting with `.` are skipped, the links followed. A missing SRC (an `optional` Secret
 * that does not exist) installs nothing. Each file is written under a temporary name and renamed,
 * so a restarted init container replaces what an earlier run left. Exit code 0 done, 1 failed,
 * 2 usage error. Plain JavaScript: the image runs it with node, without the bundle.
 */
import {
  chmodSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { isAbsolute, join } from 'node:path';

function usage(message) {
  process.stderr.write(`install-secrets: ${message}\nusage: install-secrets.mjs SRC=DEST [SRC=DEST ...]\n`);
  process.exit(2);
}

/** Copies the regular files of `src` into `dest` (0600); returns their names. */
function installSecrets(src, dest) {
  mkdirSync(dest, { recursive: true, mode: 0o700 });
  chmodSync(dest, 0o700);
  let names;
  try {
    names = readdirSync(src);
  } catch (err) {
    if (err.code === 'ENOENT') return [];
    throw err;
  }
  const installed = [];
  for (const name of names.sort()) {
    if (name.startsWith('.')) continue;
    const from = join(src, name);
    if (!statSync(from).isFile()) continue;
    const tmp = join(dest, `.${name}.tmp`);
    writeFileSync(tmp, readFileSync(from), { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, join(dest, name));
    installed.push(name);
  }
  return installed;
}

const pairs = process.argv.slice(2);
if (pairs.length === 0) usage('nothing to install');
const jobs = pairs.map((p) => {
  const [src, dest, extra] = p.split('=');
  if (extra !== undefined || !src || !dest || !isAbsolute(src) || !isAbsolute(dest))
    usage(`'${p}' is not SRC=DEST with two absolute paths`);
  return { src, dest };
});
try {
  for (const { src, dest } of jobs) {
    const names = installSecrets(src, dest);
    process.stdout.write(
      `${dest}: ${names.length === 0 ? 'nothing (no Secret mounted)' : names.join(', ')}\n`,
    );
  }
} catch (err) {
  process.stderr.write(`install-secrets: ${err.message}\n`);
  process.exit(1);
}
