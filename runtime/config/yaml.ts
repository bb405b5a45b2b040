/**
 * YAML parsing that keeps positions, so every validation error can name its line.
 * Shared by config files and the broker policy file.
 */
import { type Document, LineCounter, parseDocument } from 'yaml';
import type { ConfigIssue } from '../errors.ts';

export interface ParsedYaml {
  readonly value: unknown;
  /** 1-based line of the node at `path` (or of its nearest existing parent). */
  lineOf(path: readonly (string | number)[]): number | undefined;
}

/** Parse YAML text; syntax errors come back as issues with their line, never as exceptions. */
export function parseYaml(
  text: string,
): { ok: true; doc: ParsedYaml } | { ok: false; issues: ConfigIssue[] } {
  const lineCounter = new LineCounter();
  const doc: Document = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      issues: doc.errors.map((e) => ({
        path: '',
        message: `line ${lineCounter.linePos(e.pos[0]).line}: ${e.message.split('\n')[0]}`,
      })),
    };
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 50 });
  } catch (err) {
    // yaml throws (a ReferenceError) on an alias bomb or an unresolvable alias (fuzz finding).
    return { ok: false, issues: [{ path: '', message: `cannot be read: ${(err as Error).message}` }] };
  }
  return {
    ok: true,
    doc: {
      value,
      lineOf(path) {
        for (let n = path.length; n >= 0; n--) {
          const node = doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
          if (node?.range) return lineCounter.linePos(node.range[0]).line;
        }
        return undefined;
      },
    },
  };
}

/** `['upstream', 'endpoints', 0]` → `upstream.endpoints[0]`. */
export function formatPath(path: readonly (string | number)[]): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out === '' ? seg : `.${seg}`;
  return out;
}
