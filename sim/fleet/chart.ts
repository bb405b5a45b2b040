/**
 * An SVG chart of a fleet run, written by hand (no dependency): gateways serving a valid SVID
 * and devices holding a valid credential over time (as shares of the fleet), rotations as ticks
 * along the bottom, issuer outages as shaded bands, and scenario names along the top.
 *
 * @example
 * ```ts
 * writeFileSync('fleet.svg', chartSvg(fleet.timeline, { gateways: 20, devices: 1000 }));
 * ```
 */
import type { Sample } from './fleet.ts';

const W = 1000;
const H = 360;
const PAD = { l: 50, r: 20, t: 40, b: 50 };

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function chartSvg(samples: readonly Sample[], size: { gateways: number; devices: number }): string {
  if (samples.length < 2)
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><title>edgeward fleet simulation (no samples)</title></svg>`;
  const t0 = (samples[0] as Sample).t;
  const t1 = (samples[samples.length - 1] as Sample).t;
  const x = (t: number) => PAD.l + ((t - t0) / Math.max(1, t1 - t0)) * (W - PAD.l - PAD.r);
  const y = (share: number) => PAD.t + (1 - share) * (H - PAD.t - PAD.b);
  const path = (f: (s: Sample) => number) =>
    samples.map((s, i) => `${i === 0 ? 'M' : 'L'}${x(s.t).toFixed(1)},${y(f(s)).toFixed(1)}`).join(' ');
  const parts: string[] = [];
  // Outages.
  let downFrom: number | undefined;
  for (const s of samples) {
    if (!s.issuerUp && downFrom === undefined) downFrom = s.t;
    if (s.issuerUp && downFrom !== undefined) {
      parts.push(
        `<rect x="${x(downFrom)}" y="${PAD.t}" width="${x(s.t) - x(downFrom)}" height="${H - PAD.t - PAD.b}" fill="#f8d0d0"/>`,
      );
      downFrom = undefined;
    }
  }
  // Scenario labels.
  let last = '';
  for (const s of samples) {
    if (s.scenario === last) continue;
    last = s.scenario;
    parts.push(
      `<line x1="${x(s.t)}" x2="${x(s.t)}" y1="${PAD.t}" y2="${H - PAD.b}" stroke="#ccc" stroke-dasharray="3,3"/>`,
    );
    parts.push(
      `<text x="${x(s.t) + 2}" y="${PAD.t - 6}" font-size="9" transform="rotate(-12 ${x(s.t)} ${PAD.t - 6})">${esc(s.scenario)}</text>`,
    );
  }
  // Rotations as ticks.
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1] as Sample;
    const b = samples[i] as Sample;
    if (b.rotations > a.rotations)
      parts.push(
        `<line x1="${x(b.t)}" x2="${x(b.t)}" y1="${H - PAD.b}" y2="${H - PAD.b + 8}" stroke="#555"/>`,
      );
  }
  const g = Math.max(1, size.gateways);
  const d = Math.max(1, size.devices);
  parts.push(
    `<path d="${path((s) => s.gatewaysServing / g)}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>`,
  );
  parts.push(
    `<path d="${path((s) => s.devicesValid / d)}" fill="none" stroke="#2ca02c" stroke-width="1.5"/>`,
  );
  // Axes.
  parts.push(`<line x1="${PAD.l}" x2="${W - PAD.r}" y1="${H - PAD.b}" y2="${H - PAD.b}" stroke="#000"/>`);
  parts.push(`<line x1="${PAD.l}" x2="${PAD.l}" y1="${PAD.t}" y2="${H - PAD.b}" stroke="#000"/>`);
  for (const v of [0, 0.5, 1])
    parts.push(`<text x="${PAD.l - 6}" y="${y(v) + 3}" font-size="10" text-anchor="end">${v * 100}%</text>`);
  const hours = (t1 - t0) / 3_600_000;
  const stepH = Math.max(1, Math.ceil(hours / 12));
  for (let h = 0; h <= hours; h += stepH)
    parts.push(
      `<text x="${x(t0 + h * 3_600_000)}" y="${H - PAD.b + 22}" font-size="10" text-anchor="middle">${h} h</text>`,
    );
  parts.push(
    `<text x="${PAD.l}" y="${H - 8}" font-size="11"><tspan fill="#1f77b4">— gateways serving a valid SVID</tspan>  <tspan fill="#2ca02c">— devices with a valid, authorized SVID</tspan>  <tspan fill="#c66">■ issuer down</tspan>  | rotation</text>`,
  );
  const title = `<title>edgeward fleet simulation: ${size.gateways} gateways, ${size.devices} devices, ${hours.toFixed(0)} h</title>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">\n${title}\n<rect width="100%" height="100%" fill="#fff"/>\n${parts.join('\n')}\n</svg>\n`;
}
