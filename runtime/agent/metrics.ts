/**
 * The agent's counters, rendered in Prometheus text format (exposition format 0.0.4) by the admin
 * endpoint together with gauges read from the status snapshot. Label values are codes and
 * endpoint URLs only — never identities' keys or tokens.
 */
export class Counters {
  readonly #values = new Map<string, Map<string, number>>();

  inc(name: string, labels: Record<string, string> = {}, by = 1): void {
    let series = this.#values.get(name);
    if (series === undefined) {
      series = new Map();
      this.#values.set(name, series);
    }
    const key = labelText(labels);
    series.set(key, (series.get(key) ?? 0) + by);
  }

  get(name: string, labels: Record<string, string> = {}): number {
    return this.#values.get(name)?.get(labelText(labels)) ?? 0;
  }

  /** `[name, labelText, value]` for every series. */
  *series(): Iterable<[string, string, number]> {
    for (const [name, s] of this.#values) for (const [labels, v] of s) yield [name, labels, v];
  }
}

/** `{a="x",b="y"}` with Prometheus escaping, or '' without labels. */
export function labelText(labels: Record<string, string>): string {
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return '';
  const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
  return `{${keys.map((k) => `${k}="${esc(labels[k] as string)}"`).join(',')}}`;
}
