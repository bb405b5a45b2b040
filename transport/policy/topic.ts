/**
 * MQTT topic names and filters (MQTT 3.1.1 §4.7): validation, matching a topic against a filter,
 * and whether one filter only ever matches what another matches (for subscribe authorization).
 * Filters are pre-split into levels once, so the per-message match allocates nothing.
 *
 * @example
 * ```ts
 * const f = splitFilter('devices/+/#');
 * matches(f, 'devices/s1/temp');          // true
 * covers(splitFilter('devices/s1/#'), splitFilter('devices/s1/+')); // true
 * ```
 */

/** Why `filter` is not a valid topic filter, or undefined when it is. */
export function filterProblem(filter: string): string | undefined {
  if (filter.length === 0) return 'empty topic filter';
  if (Buffer.byteLength(filter) > 65535) return 'topic filter too long';
  if (filter.includes('\u0000')) return 'topic filter contains NUL';
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i] as string;
    // [MQTT-4.7.1-2] '#' alone and last; [MQTT-4.7.1-3] '+' alone in its level.
    if (l.includes('#') && (l !== '#' || i !== levels.length - 1)) return "'#' must be a whole last level";
    if (l.includes('+') && l !== '+') return "'+' must be a whole level";
  }
  return undefined;
}

/** Why `topic` is not a valid topic name for PUBLISH, or undefined when it is. */
export function topicProblem(topic: string): string | undefined {
  if (topic.length === 0) return 'empty topic';
  if (topic.includes('#') || topic.includes('+')) return 'wildcard in a topic name'; // [MQTT-3.3.2-2]
  if (topic.includes('\u0000')) return 'topic contains NUL';
  return undefined;
}

export function splitFilter(filter: string): readonly string[] {
  return filter.split('/');
}

/** True when `topic` matches the split filter. Wildcards at the first level never match `$…` topics [MQTT-4.7.2-1]. */
export function matches(filter: readonly string[], topic: string): boolean {
  let start = 0;
  const n = filter.length;
  for (let i = 0; i < n; i++) {
    const f = filter[i] as string;
    if (f === '#') return !(i === 0 && topic.charCodeAt(0) === 36);
    if (start > topic.length) return false;
    let end = topic.indexOf('/', start);
    if (end === -1) end = topic.length;
    if (f === '+') {
      if (i === 0 && topic.charCodeAt(0) === 36) return false;
    } else if (end - start !== f.length || !topic.startsWith(f, start)) {
      return false;
    }
    start = end + 1;
  }
  return start === topic.length + 1;
}

/** True when every topic matching `inner` also matches `outer` (both split filters). */
export function covers(outer: readonly string[], inner: readonly string[]): boolean {
  for (let i = 0; i < outer.length; i++) {
    const o = outer[i] as string;
    if (o === '#') return !(i === 0 && (inner[0] ?? '').startsWith('$'));
    const n = inner[i];
    if (n === undefined || n === '#') return false;
    if (o === '+') {
      if (i === 0 && n.startsWith('$')) return false;
      continue;
    }
    if (n === '+' || n !== o) return false;
  }
  return inner.length === outer.length;
}
