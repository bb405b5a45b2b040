/**
 * Reading a policy file: YAML with line positions (runtime/config/yaml.ts), the TypeBox schema
 * (schema.ts, checked by its precompiled validator policy-validator.gen.ts), then the checks a schema cannot express — match patterns, topic
 * filters, shared-subscription filters (`share.ts`), templates, reserved topics — each reported with its line. `edgeward policy check`
 * prints these issues; the broker refuses to start (or to reload) on any of them.
 *
 * @example
 * ```ts
 * const r = parsePolicy(text);
 * if (!r.ok) for (const i of r.issues) console.log(`line ${i.line}: ${i.path}: ${i.message}`);
 * const policy = await loadPolicyFile('/etc/edgeward/policy.yaml'); // throws ERR_POLICY_INVALID
 * ```
 */
import { readFile } from 'node:fs/promises';
import type { ErrorObject } from 'ajv';
import { issuesFromAjv } from '../../runtime/config/issues.ts';
import { formatPath, parseYaml } from '../../runtime/config/yaml.ts';
import { PolicyError, type PolicyIssue } from '../errors.ts';
import { RESERVED_PREFIX } from './grants.ts';
import { validate } from './policy-validator.gen.ts';
import type { Policy } from './schema.ts';
import { isShared, parseShared } from './share.ts';
import { filterProblem, splitFilter } from './topic.ts';

/** Precompiled from `schema.ts` (scripts/gen-validators.ts): no TypeBox or ajv at run time. */
const validatePolicy = validate as unknown as ((data: unknown) => boolean) & {
  errors?: ErrorObject[] | null;
};

const TEMPLATE_RE = /\{([^}]*)\}/g;
const TOPIC_TEMPLATES = new Set(['device', 'name']);
const MAX_POLICY_BYTES = 1024 * 1024;

export type PolicyParse = { ok: true; policy: Policy } | { ok: false; issues: PolicyIssue[] };

export function parsePolicy(text: string): PolicyParse {
  if (text.length > MAX_POLICY_BYTES) {
    return { ok: false, issues: [{ path: '', message: 'policy file larger than 1 MiB', line: undefined }] };
  }
  const parsed = parseYaml(text);
  if (!parsed.ok) {
    return {
      ok: false,
      issues: parsed.issues.map((i) => {
        const m = /^line (\d+): (.*)$/.exec(i.message);
        return {
          path: i.path,
          message: m ? (m[2] as string) : i.message,
          line: m ? Number(m[1]) : undefined,
        };
      }),
    };
  }
  const { value, lineOf } = parsed.doc;
  const schemaIssues = validatePolicy(value) ? [] : issuesFromAjv(validatePolicy.errors ?? [], lineOf);
  const issues: PolicyIssue[] = schemaIssues.map((i) => {
    const m = /^(.*) \(line (\d+)\)$/.exec(i.message);
    return { path: i.path, message: m ? (m[1] as string) : i.message, line: m ? Number(m[2]) : undefined };
  });
  if (issues.length > 0) return { ok: false, issues };
  const policy = value as Policy;
  const add = (path: (string | number)[], message: string): void => {
    issues.push({ path: formatPath(path), message, line: lineOf(path) });
  };
  policy.rules.forEach((rule, r) => {
    const mp = matchProblem(rule.match);
    if (mp !== undefined) add(['rules', r, 'match'], mp);
    for (const key of ['publish', 'subscribe', 'retain', 'deny'] as const) {
      (rule[key] ?? []).forEach((entry, e) => {
        const p = entryProblem(entry, key) ?? (key === 'deny' ? denyProblem(entry, rule) : undefined);
        if (p !== undefined) add(['rules', r, key, e], p);
      });
    }
  });
  return issues.length > 0 ? { ok: false, issues } : { ok: true, policy };
}

/** Read and parse a policy file; throws `ERR_POLICY_INVALID` with every issue. */
export async function loadPolicyFile(file: string): Promise<Policy> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new PolicyError(
      [{ path: '', message: `cannot read: ${(err as Error).message}`, line: undefined }],
      file,
    );
  }
  const r = parsePolicy(text);
  if (!r.ok) throw new PolicyError(r.issues, file);
  return r.policy;
}

function matchProblem(match: string): string | undefined {
  const expanded = match.replaceAll('{self}', 'spiffe://td/gateway/self');
  const unknown = [...expanded.matchAll(TEMPLATE_RE)].map((m) => m[1]);
  if (unknown.length > 0) return `unknown template {${unknown[0]}} in match (only {self})`;
  if (!expanded.startsWith('spiffe://')) return 'match must start with spiffe:// or {self}';
  const levels = expanded.slice('spiffe://'.length).split('/');
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i] as string;
    if (l === '**' && i !== levels.length - 1) return "'**' must be the last segment";
    if (l === '**' || l === '*') {
      if (i === 0) return 'the trust domain cannot be a wildcard';
      continue;
    }
    if (!/^[A-Za-z0-9._-]+$/.test(l))
      return `segment ${JSON.stringify(l)} is not a SPIFFE ID segment or * / **`;
  }
  return undefined;
}

/**
 * A deny must take something back from a grant of its own rule: some plain publish, subscribe or
 * retain entry must overlap it (templates compared as written). Else it is a typo or a no-op.
 */
function denyProblem(entry: string, rule: Policy['rules'][number]): string | undefined {
  const deny = splitFilter(entry);
  const grants = [...(rule.publish ?? []), ...(rule.subscribe ?? []), ...(rule.retain ?? [])].filter(
    (g) => !isShared(g),
  );
  if (grants.some((g) => overlaps(splitFilter(g), deny))) return undefined;
  return grants.length === 0
    ? 'deny in a rule that grants nothing (a deny only narrows the grants of its own rule)'
    : 'deny takes back nothing this rule grants (it overlaps no publish, subscribe or retain entry)';
}

/** True when some topic matches both filters (levels compared literally, `+`/`#` as wildcards). */
function overlaps(a: readonly string[], b: readonly string[]): boolean {
  for (let i = 0; ; i++) {
    const x = a[i];
    const y = b[i];
    if (x === '#' || y === '#') return true;
    if (x === undefined || y === undefined) return x === y;
    if (x !== '+' && y !== '+' && x !== y) return false;
  }
}

function entryProblem(entry: string, kind: 'publish' | 'subscribe' | 'retain' | 'deny'): string | undefined {
  for (const m of entry.matchAll(TEMPLATE_RE)) {
    if (!TOPIC_TEMPLATES.has(m[1] as string)) return `unknown template {${m[1]}} (use {device} or {name})`;
  }
  const filter = entry.replace(TEMPLATE_RE, 'x');
  const reserved = reservedProblem(filter);
  if (reserved !== undefined) return reserved;
  if (isShared(filter)) {
    if (kind !== 'subscribe')
      return kind === 'deny'
        ? 'deny takes topic filters, not $share/… (a deny of the filter also denies its shared deliveries)'
        : `$share/… is a shared subscription: only allowed in subscribe, not in ${kind}`;
    const shared = parseShared(filter, { grant: true });
    return 'problem' in shared ? shared.problem : reservedProblem(shared.filter);
  }
  return filterProblem(filter);
}

/** A policy never grants the reserved topics, plainly or as the filter of a `$share` grant. */
function reservedProblem(filter: string): string | undefined {
  return filter.startsWith(RESERVED_PREFIX) || filter === '$edgeward'
    ? `${RESERVED_PREFIX}… topics are reserved for enrollment, renewal and the bundle`
    : undefined;
}
