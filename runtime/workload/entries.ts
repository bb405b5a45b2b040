/**
 * Registration entries as policy as code: a YAML file mapping selector sets to workload names.
 *
 * ```yaml
 * version: 1
 * entries:
 *   - name: modbus-adapter          # SPIFFE ID: spiffe://<td>/gateway/<gw>/workload/modbus-adapter
 *     selectors: [unix:uid:1001, "unix:sha256:9f86d0…"]
 *     hint: internal                # optional, passed to the workload as the SVID's hint
 * ```
 *
 * A workload gets every entry whose selectors are ALL among its attested selectors (default deny:
 * an entry with no selector is refused). Names are one SPIFFE path segment and unique. Every
 * problem is reported with its line (`ERR_WORKLOAD_ENTRIES_INVALID`), as `policy check` does.
 */
import { readFile } from 'node:fs/promises';
import { formatPath, parseYaml } from '../config/yaml.ts';
import { type ConfigIssue, WorkloadError } from '../errors.ts';
import { isPathSegment } from '../spiffe/id.ts';
import { IMAGE_ID_RE, IMAGE_REF_RE } from './container-image.ts';

export interface WorkloadEntry {
  readonly name: string;
  readonly selectors: readonly string[];
  readonly hint?: string;
}

/** One problem of an entries file: `path` as `entries[0].selectors[1]`, its 1-based line when known. */
export interface EntriesIssue {
  readonly path: string;
  readonly line: number | undefined;
  readonly message: string;
}

export class EntriesError extends WorkloadError {
  readonly issues: readonly EntriesIssue[];
  constructor(issues: readonly EntriesIssue[], file?: string) {
    const f = file ?? 'entries';
    super(
      'ERR_WORKLOAD_ENTRIES_INVALID',
      issues.map((i) => `${f}:${i.line ?? 1}: ${i.path ? `${i.path}: ` : ''}${i.message}`).join('; '),
    );
    this.issues = issues;
  }
}

const syntaxIssue = (i: ConfigIssue): EntriesIssue => {
  const m = /^line (\d+): (.*)$/s.exec(i.message);
  return m === null
    ? { path: i.path, line: undefined, message: i.message }
    : { path: i.path, line: Number(m[1]), message: m[2] as string };
};

const SELECTOR_TYPES: Record<string, RegExp> = {
  'unix:uid': /^\d{1,10}$/,
  'unix:gid': /^\d{1,10}$/,
  'unix:supplementary_gid': /^\d{1,10}$/,
  'unix:user': /^[A-Za-z0-9._][A-Za-z0-9._-]{0,31}\$?$/,
  'unix:group': /^[A-Za-z0-9._][A-Za-z0-9._-]{0,31}\$?$/,
  'unix:path': /^\/[^\0]{0,4095}$/,
  'unix:sha256': /^[0-9a-f]{64}$/,
  'container:id': /^[0-9a-f]{64}$/,
  'container:image': IMAGE_REF_RE,
  'container:image_id': IMAGE_ID_RE,
};

/** Whether any entry needs the container image selectors (only then are runtime records read). */
export function usesContainerImage(entries: readonly WorkloadEntry[]): boolean {
  return entries.some((e) => e.selectors.some((s) => s.startsWith('container:image')));
}

/** Why `selector` is not valid, or undefined when it is. */
export function selectorProblem(selector: string): string | undefined {
  const m = /^([a-z0-9]+:[a-z_0-9]+):(.*)$/s.exec(selector);
  if (m === null) return `"${selector.slice(0, 80)}" is not type:key:value`;
  const re = SELECTOR_TYPES[m[1] as string];
  if (re === undefined)
    return `unknown selector "${m[1]}" (known: ${Object.keys(SELECTOR_TYPES).join(', ')})`;
  if (!re.test(m[2] as string)) return `malformed value for ${m[1]}: "${(m[2] as string).slice(0, 80)}"`;
  return undefined;
}

/** Validate entries text; throws `EntriesError` listing every problem with its line. */
export function parseEntries(text: string, file?: string): readonly WorkloadEntry[] {
  const parsed = parseYaml(text);
  if (!parsed.ok) throw new EntriesError(parsed.issues.map(syntaxIssue), file);
  const { doc } = parsed;
  const issues: EntriesIssue[] = [];
  const add = (path: (string | number)[], message: string): void => {
    issues.push({ path: formatPath(path), line: doc.lineOf(path), message });
  };
  const root = doc.value;
  if (root === null || typeof root !== 'object' || Array.isArray(root)) {
    add([], 'must be a mapping with `version: 1` and `entries`');
    throw new EntriesError(issues, file);
  }
  const r = root as Record<string, unknown>;
  for (const k of Object.keys(r)) if (k !== 'version' && k !== 'entries') add([k], 'unknown key');
  if (r.version !== 1) add(['version'], 'must be 1');
  const list = r.entries ?? [];
  const out: WorkloadEntry[] = [];
  if (!Array.isArray(list)) add(['entries'], 'must be a list');
  else {
    const seen = new Set<string>();
    list.forEach((e: unknown, i) => {
      if (e === null || typeof e !== 'object' || Array.isArray(e)) {
        add(['entries', i], 'must be a mapping');
        return;
      }
      const o = e as Record<string, unknown>;
      for (const k of Object.keys(o))
        if (k !== 'name' && k !== 'selectors' && k !== 'hint') add(['entries', i, k], 'unknown key');
      const { name, selectors, hint } = o;
      let ok = true;
      if (typeof name !== 'string' || name.length > 64 || !isPathSegment(name)) {
        add(['entries', i, 'name'], 'must be 1-64 of letters, digits, ".", "-", "_"');
        ok = false;
      } else if (seen.has(name)) {
        add(['entries', i, 'name'], `duplicate name "${name}"`);
        ok = false;
      } else seen.add(name);
      if (!Array.isArray(selectors) || selectors.length === 0) {
        add(['entries', i, 'selectors'], 'must be a non-empty list (default deny)');
        ok = false;
      } else
        selectors.forEach((s: unknown, j) => {
          const why = typeof s === 'string' ? selectorProblem(s) : 'must be a string';
          if (why !== undefined) {
            add(['entries', i, 'selectors', j], why);
            ok = false;
          }
        });
      if (hint !== undefined && (typeof hint !== 'string' || hint.length > 256)) {
        add(['entries', i, 'hint'], 'must be a string of at most 256 characters');
        ok = false;
      }
      if (ok)
        out.push({
          name: name as string,
          selectors: [...new Set(selectors as string[])],
          ...(hint === undefined ? {} : { hint: hint as string }),
        });
    });
  }
  if (issues.length > 0) throw new EntriesError(issues, file);
  return out;
}

export async function loadEntries(file: string): Promise<readonly WorkloadEntry[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new EntriesError(
      [{ path: '', line: undefined, message: `cannot read: ${(cause as Error).message}` }],
      file,
    );
  }
  return parseEntries(text, file);
}

/** The entries a workload with `selectors` is entitled to (all of an entry's selectors present). */
export function matchEntries(
  entries: readonly WorkloadEntry[],
  selectors: ReadonlySet<string>,
): readonly WorkloadEntry[] {
  return entries.filter((e) => e.selectors.every((s) => selectors.has(s)));
}
