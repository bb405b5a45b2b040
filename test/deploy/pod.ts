/**
 * Running a rendered pod template's containers from the image's content on this machine, for
 * test/deploy/image.test.ts: no container engine runs here, so each volume of the pod becomes a
 * directory laid out as the kubelet lays it out (a ConfigMap's keys as files; an emptyDir mode
 * 0777; a Secret as its keys, symlinks through `..data` into a timestamped directory, mode
 * 0440 as `defaultMode: 0400` with `fsGroup` gives them), and each container's command line is
 * the manifest's `command`/`args` over the image's ENTRYPOINT/CMD with every container path
 * mapped to where its volume (or the image's `/app`) lies here. A path in no volume and not in
 * the image fails the mapping: in the container it would not exist. A container with
 * `readOnlyRootFilesystem` runs in a mount namespace where `/` is read-only but for its writable
 * volumes, so a write the pod would refuse fails here too (EROFS).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDocument, visit } from 'yaml';
import type { K8sNode, K8sObject } from './kube.ts';

/**
 * Namespaces: root makes them as it is; anyone else in a user namespace of their own (where
 * root's would hide files of unmapped users, such as the postgres user's socket directory).
 */
export const USERNS = process.getuid?.() === 0 ? [] : ['--user', '--map-root-user'];

export interface Image {
  /** `ENTRYPOINT` and `CMD` of the runtime stage (JSON form). */
  readonly entrypoint: readonly string[];
  readonly cmd: readonly string[];
  readonly workdir: string;
  /** `ENV PATH` of the image: where a bare command (`kubectl exec POD -- edgeward`) is found. */
  readonly path: readonly string[];
  /** Where node is in the image, and where the image's own files are here (`/app` → dir). */
  readonly node: string;
  readonly files: Readonly<Record<string, string>>;
}

/** The runtime stage of a Containerfile: the last `FROM`, its instructions. */
export function runtimeStage(containerfile: string): { from: string; lines: string[] } {
  const lines = containerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const start = lines.findLastIndex((l) => /^FROM\s/i.test(l));
  return { from: lines[start] as string, lines: lines.slice(start + 1) };
}

/** An instruction's JSON-form argument list (`ENTRYPOINT ["a", "b"]`). */
export function jsonForm(lines: readonly string[], instruction: string): string[] {
  const found = lines.filter((l) => l.toUpperCase().startsWith(`${instruction} `));
  if (found.length !== 1) throw new Error(`expected one ${instruction}, found ${found.length}`);
  return JSON.parse((found[0] as string).slice(instruction.length + 1)) as string[];
}

/** Secrets as files: name → key → content. */
export type Secrets = Readonly<Record<string, Readonly<Record<string, string | Buffer>>>>;

export interface Pod {
  /** Container path → path here. */
  map(path: string, container: K8sNode): string;
  /** The argv a container runs, mapped, with the image's node for a script's `#!` line. */
  argv(container: K8sNode): string[];
  /**
   * Runs the container's command as the container would: with `readOnlyRootFilesystem`, in a
   * mount namespace where `/` is read-only but for the container's writable volumes; with
   * `podIp`, in a network namespace of its own holding loopback and that address.
   */
  run(container: K8sNode, o?: { podIp?: string }): ChildProcess;
}

export function podFromTemplate(
  spec: K8sNode,
  o: { root: string; image: Image; configMaps: readonly K8sObject[]; secrets: Secrets },
): Pod {
  const volumes = new Map<string, string>();
  for (const v of spec.volumes ?? []) {
    const dir = join(o.root, 'volumes', v.name);
    mkdirSync(dir, { recursive: true });
    if (v.configMap !== undefined) {
      // Written below, once every volume has its directory.
    } else if (v.emptyDir !== undefined) {
      chmodSync(dir, 0o777);
    } else if (v.secret !== undefined) {
      const data = o.secrets[v.secret.secretName];
      if (data === undefined && v.secret.optional !== true)
        throw new Error(`volume ${v.name}: Secret ${v.secret.secretName} does not exist`);
      const stamp = join(dir, '..2026_01_01_00_00_00.000000001');
      mkdirSync(stamp);
      for (const [k, content] of Object.entries(data ?? {})) {
        writeFileSync(join(stamp, k), content);
        // defaultMode with fsGroup: the kubelet adds group read.
        chmodSync(join(stamp, k), (v.secret.defaultMode ?? 0o644) | 0o040);
        symlinkSync(join('..data', k), join(dir, k));
      }
      symlinkSync('..2026_01_01_00_00_00.000000001', join(dir, '..data'));
    } else {
      throw new Error(`volume ${v.name}: kind not supported here`);
    }
    volumes.set(v.name, dir);
  }
  // The pod's mounts (the same mount path is the same volume in every container of these pods):
  // the container paths in a ConfigMap's YAML files are rewritten to where they are here.
  const podMounts = [...(spec.initContainers ?? []), ...spec.containers].flatMap(
    (c: K8sNode) => c.volumeMounts ?? [],
  );
  const inPod = { name: 'any', volumeMounts: podMounts };
  for (const v of spec.volumes ?? []) {
    if (v.configMap === undefined) continue;
    const cm = o.configMaps.find((c) => c.metadata.name === v.configMap.name);
    if (cm === undefined) throw new Error(`volume ${v.name}: no ConfigMap ${v.configMap.name}`);
    for (const [k, text] of Object.entries<string>(cm.data ?? {})) {
      const at = join(volumes.get(v.name) as string, k);
      if (/\.ya?ml$/.test(k)) {
        const doc = parseDocument(text);
        visit(doc, {
          Scalar(_, node) {
            if (typeof node.value === 'string' && node.value.startsWith('/'))
              node.value = map(node.value, inPod);
          },
        });
        writeFileSync(at, doc.toString());
      } else writeFileSync(at, text);
      chmodSync(at, v.configMap.defaultMode ?? 0o644);
    }
  }
  return { map, argv: (c) => argv(c), run: (c, r) => run(c, r) };

  function map(path: string, c: K8sNode): string {
    if (path === o.image.node) return process.execPath;
    const mounts = [
      ...(c.volumeMounts ?? []).map((m: K8sNode) => [m.mountPath, volumes.get(m.name)] as const),
      ...Object.entries(o.image.files),
    ].sort((a, b) => b[0].length - a[0].length);
    for (const [at, dir] of mounts) {
      if (dir === undefined) throw new Error(`mount ${at}: no such volume`);
      if (path === at) return dir;
      if (path.startsWith(`${at}/`)) return join(dir, path.slice(at.length + 1));
    }
    throw new Error(`${path}: in no volume of container ${c.name} and not in the image`);
  }

  function mapArg(arg: string, c: K8sNode): string {
    return arg
      .split('=')
      .map((part) => (part.startsWith('/') ? map(part, c) : part))
      .join('=');
  }

  function argv(c: K8sNode): string[] {
    const command: string[] = c.command ?? [...o.image.entrypoint];
    const args: string[] = c.args ?? (c.command === undefined ? [...o.image.cmd] : []);
    const [bare, ...given] = [...command, ...args];
    const found = bare?.startsWith('/')
      ? bare
      : o.image.path
          .map((d) => `${d}/${bare}`)
          .find((f) => {
            try {
              return existsSync(map(f, c));
            } catch {
              return false; // a PATH directory in no volume and not in the image's own files
            }
          });
    if (found === undefined) throw new Error(`${bare}: not on the image's PATH`);
    const [exe, ...rest] = [found, ...given].map((a) => mapArg(a, c));
    if (exe === process.execPath) return [exe, ...rest];
    // A script: its `#!` line must name the image's node; run it with ours.
    const shebang = readFileSync(exe as string, 'utf8').split('\n')[0];
    if (shebang !== `#!${o.image.node}`) throw new Error(`${exe}: '${shebang}' is not the image's node`);
    return [process.execPath, exe as string, ...rest];
  }

  function run(c: K8sNode, r: { podIp?: string } = {}): ChildProcess {
    const steps: string[] = [];
    if (c.securityContext?.readOnlyRootFilesystem === true) {
      steps.push('mount --make-rprivate /');
      for (const m of c.volumeMounts ?? [])
        if (m.readOnly !== true) steps.push(`mount --bind '${map(m.mountPath, c)}' '${map(m.mountPath, c)}'`);
      steps.push('mount -o remount,bind,ro /');
    }
    if (r.podIp !== undefined) steps.push('ip link set lo up', `ip addr add ${r.podIp}/32 dev lo`);
    const wrap =
      steps.length === 0
        ? []
        : [
            'unshare',
            ...USERNS,
            ...(steps[0]?.startsWith('mount') ? ['--mount'] : []),
            ...(r.podIp === undefined ? [] : ['--net']),
            'sh',
            '-c',
            `${steps.join(' && ')} && exec "$@"`,
            'sh',
          ];
    const [exe, ...rest] = [...wrap, ...argv(c)];
    const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    for (const e of c.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
    let cwd: string;
    try {
      cwd = map(o.image.workdir, c);
    } catch {
      // The image's own WORKDIR, on its read-only root filesystem.
      cwd = join(o.root, 'rootfs', o.image.workdir);
      mkdirSync(cwd, { recursive: true, mode: 0o555 });
    }
    return spawn(exe as string, rest, {
      cwd,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }
}

/** Resolves with the first stdout line matching `re`; rejects when the process exits first. */
export function lineMatching(child: ChildProcess, re: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const onData = (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => re.test(l));
      if (line !== undefined) resolve(line); // output keeps being read, so the pipe never fills
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`exited ${code} before ${re}:\n${out}\n${err}`)));
  });
}

/** Waits for the process to end: its exit code and output. */
export function finished(child: ChildProcess): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.once('error', (e) => resolve({ code: -1, out, err: `${err}${e.message}` }));
    child.once('close', (code) => resolve({ code, out, err }));
  });
}
