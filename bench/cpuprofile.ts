/**
 * Summarise a V8 `.cpuprofile` (e.g. from `BENCH_PROFILE=dir npm run bench issuer-ha`): busy
 * time by category and the top functions by self time. `node --import tsx bench/cpuprofile.ts
 * FILE [top]`. A sample's category is that of the first frame, from the leaf up, that matches a
 * rule (so a socket write under the PostgreSQL client counts as a database round trip, one under
 * the HTTP response as TLS + HTTP); samples with no JavaScript frame are `(program)`: native work
 * with nothing of ours on the stack, which is where OpenSSL's handshake crypto lands.
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

const RULES: [string, RegExp][] = [
  [
    'DB round trips (pg client, LevelDB)',
    /node_modules\/(pg|pg-protocol|pg-pool|classic-level|abstract-level|memory-level)\/|store-(postgres|level)\.ts/,
  ],
  ['quote verification', /attestors\/tpm\/|tpm-method\.ts/],
  ['X.509 signing (SVID)', /svid\/(signer|extensions|der)\.ts|issuer\/(ca|device-ca)\.ts/],
  ['CSR check (signature, key import)', /svid\/csr\.ts/],
  ['client certificate check', /issuer\/peer\.ts|getPeerX509Certificate/],
  ['CBOR', /node_modules\/cbor-x\//],
  ['logging and audit', /core\/logger\.ts|issuer\/audit\.ts/],
  ['TLS + HTTP (handshake events, request, response)', /node:_tls_|node:_http_|issuer\/http\.ts/],
  ['rest of the issuer', /runtime\/issuer\//],
];

const file = process.argv[2];
if (file === undefined) throw new Error('usage: bench/cpuprofile.ts FILE [top]');
const top = Number(process.argv[3] ?? 15);
const p = JSON.parse(readFileSync(file, 'utf8')) as {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
};
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const self = new Map<number, number>();
for (const [i, id] of p.samples.entries()) self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i + 1] ?? 0));

const label = (n: Node) => {
  const f = n.callFrame;
  return `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules\/)?/, '')}:${f.lineNumber + 1}`;
};
const byCategory = new Map<string, number>();
const byFunction = new Map<string, number>();
let busy = 0;
for (const [id, us] of self) {
  const n = byId.get(id) as Node;
  const fn = n.callFrame.functionName;
  if (fn === '(idle)') continue;
  busy += us;
  byFunction.set(label(n), (byFunction.get(label(n)) ?? 0) + us);
  let category = fn === '(garbage collector)' || fn === '(program)' ? fn : 'other (Node internals, timers)';
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const f = (byId.get(cur) as Node).callFrame;
    const hit = RULES.find(([, re]) => re.test(`${f.url} ${f.functionName}`));
    if (hit !== undefined) {
      category = hit[0];
      break;
    }
  }
  byCategory.set(category, (byCategory.get(category) ?? 0) + us);
}
const pct = (us: number) => `${((100 * us) / busy).toFixed(1).padStart(5)} %`;
console.log(`busy ${(busy / 1000).toFixed(0)} ms (idle excluded)`);
for (const [k, us] of [...byCategory].sort((a, b) => b[1] - a[1])) console.log(`${pct(us)}  ${k}`);
console.log(`top ${top} functions by self time:`);
for (const [k, us] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top))
  console.log(`${pct(us)}  ${k}`);
