/**
 * The Workload API's streamed answers, serialized once: an `X509SVIDResponse` per set of entries
 * (cached while the SVIDs, the bundle and the entries are the very same objects, at most
 * SVID_BODIES_MAX sets), the `X509BundlesResponse` and the `JWTBundlesResponse`. Each comes as its
 * protobuf bytes, which grpc-js is handed as they are (`passThroughStreams`), and their SHA-256:
 * what a stream was last sent, kept instead of a copy (never a second copy of a private key).
 */
import { createHash } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { RuntimeError } from '../errors.ts';
import type { WorkloadEntry } from './entries.ts';
import { jwksBytes } from './jwt.ts';
import { workloadService } from './proto.ts';
import type { WorkloadHost, WorkloadSvid, WorkloadSvids } from './svids.ts';

/** A response's bytes and their digest. */
export interface Encoded {
  readonly bytes: Buffer;
  readonly key: string;
}

/** An X509SVIDResponse serialized once, with the very objects it was built from. */
interface SvidBody extends Encoded {
  readonly entries: readonly WorkloadEntry[];
  readonly svids: readonly WorkloadSvid[];
  readonly roots: readonly Uint8Array[];
}
const SVID_BODIES_MAX = 64;

type StreamMethod = 'FetchX509SVID' | 'FetchX509Bundles' | 'FetchJWTBundles';

/** A stream's response message serialized (protobuf), as grpc-js would on every write. */
function encode(method: StreamMethod, body: unknown): Encoded {
  const def = workloadService()[method];
  if (def === undefined) throw new Error(`workload.proto has no ${method}`);
  const bytes = def.responseSerialize(body);
  return { bytes, key: createHash('sha256').update(bytes).digest('hex') };
}

/**
 * The service as the server registers it: a streamed response is written as the bytes `encode`
 * made (a new connection's first answer is then cached bytes, not a fresh protobuf encoding);
 * unary answers are serialized by grpc-js as usual.
 */
export function passThroughStreams(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  return Object.fromEntries(
    Object.entries(service).map(([name, def]) => [
      name,
      def.responseStream
        ? { ...def, responseSerialize: (v: unknown) => (Buffer.isBuffer(v) ? v : def.responseSerialize(v)) }
        : def,
    ]),
  );
}

const concat = (ders: readonly Uint8Array[]): Buffer => Buffer.concat(ders.map((d) => Buffer.from(d)));

export class WorkloadResponses {
  readonly #host: WorkloadHost;
  readonly #svids: WorkloadSvids;
  /** X509SVIDResponses by the entry names they answer, least recently used first. */
  readonly #bodies = new Map<string, SvidBody>();

  constructor(host: WorkloadHost, svids: WorkloadSvids) {
    this.#host = host;
    this.#svids = svids;
  }

  /** Forget every response built (something changed; none keeps a replaced private key alive). */
  clear(): void {
    this.#bodies.clear();
  }

  /** The X509SVIDResponse for `entries`, and the SVIDs in it (to schedule their rotation). */
  async svid(entries: readonly WorkloadEntry[]): Promise<SvidBody> {
    const roots = this.#roots();
    const svids: WorkloadSvid[] = await Promise.all(entries.map((e) => this.#svids.get(e.name)));
    const name = entries.map((e) => e.name).join('\n');
    const hit = this.#bodies.get(name);
    const same = <T>(a: readonly T[], b: readonly T[]): boolean =>
      a.length === b.length && a.every((x, i) => x === b[i]);
    if (hit !== undefined && same(hit.entries, entries) && same(hit.svids, svids) && same(hit.roots, roots))
      return hit;
    const bundle = concat(roots);
    const body = {
      svids: svids.map((s, i) => ({
        spiffe_id: s.spiffeId,
        x509_svid: concat(s.chain),
        x509_svid_key: s.key,
        bundle,
        hint: entries[i]?.hint ?? '',
      })),
      crl: [],
      federated_bundles: {},
    };
    const built: SvidBody = { entries, svids, roots, ...encode('FetchX509SVID', body) };
    this.#bodies.delete(name);
    this.#bodies.set(name, built);
    if (this.#bodies.size > SVID_BODIES_MAX) this.#bodies.delete(this.#bodies.keys().next().value as string);
    return built;
  }

  bundles(): Encoded {
    const bundles = { [`spiffe://${this.#host.trustDomain}`]: concat(this.#roots()) };
    return encode('FetchX509Bundles', { crl: [], bundles });
  }

  jwtBundles(): Encoded {
    const keys = this.#host.jwtKeys?.();
    if (keys === undefined)
      throw new RuntimeError('ERR_BUNDLE_UNAVAILABLE', 'no bundle for the trust domain');
    return encode('FetchJWTBundles', {
      bundles: { [`spiffe://${this.#host.trustDomain}`]: jwksBytes(keys) },
    });
  }

  /** The DER of each root of the trust domain's X.509 bundle. */
  #roots(): readonly Uint8Array[] {
    const b = this.#host.bundle();
    if (b === undefined || b.roots.length === 0)
      throw new RuntimeError('ERR_BUNDLE_UNAVAILABLE', 'no X.509 bundle for the trust domain');
    return b.roots.map((c) => c.raw);
  }
}
