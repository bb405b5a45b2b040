/**
 * A minimal SPIFFE Workload API client (for `edgeward workload fetch` and tests): one
 * FetchX509SVID message, or one FetchJWTSVID answer, over the Unix socket, with the
 * `workload.spiffe.io: true` metadata. A gRPC error status comes back as
 * `ERR_WORKLOAD_API_STATUS` naming the status.
 */
import * as grpc from '@grpc/grpc-js';
import { WorkloadError } from '../errors.ts';
import { workloadService } from './proto.ts';

export interface FetchedSvid {
  readonly spiffeId: string;
  /** Leaf first (DER). */
  readonly chain: readonly Buffer[];
  /** PKCS#8 DER. */
  readonly key: Buffer;
  readonly bundle: readonly Buffer[];
  readonly hint: string;
}

/** Split concatenated DER certificates (the Workload API's `x509_svid` and `bundle` fields). */
export function splitDer(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at + 2 <= buf.length) {
    const first = buf[at + 1] as number;
    let len = first;
    let hdr = 2;
    if (first & 0x80) {
      const n = first & 0x7f;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + (buf[at + 2 + i] as number);
      hdr = 2 + n;
    }
    if (at + hdr + len > buf.length) throw new TypeError('truncated DER');
    out.push(buf.subarray(at, at + hdr + len));
    at += hdr + len;
  }
  return out;
}

interface RawSvid {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}

/** A client on the socket and the metadata every Workload API call carries. */
function connect(socketPath: string): { client: grpc.Client; md: grpc.Metadata } {
  const Client = grpc.makeGenericClientConstructor(workloadService(), 'SpiffeWorkloadAPI');
  const client = new Client(`unix:${socketPath}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('workload.spiffe.io', 'true');
  return { client, md };
}

export async function fetchX509Once(
  socketPath: string,
  timeoutMs = 10_000,
): Promise<{ svids: FetchedSvid[] }> {
  const { client, md } = connect(socketPath);
  try {
    return await new Promise((resolve, reject) => {
      const call = (
        client as unknown as {
          FetchX509SVID(
            req: object,
            md: grpc.Metadata,
            o: grpc.CallOptions,
          ): grpc.ClientReadableStream<{ svids: RawSvid[] }>;
        }
      ).FetchX509SVID({}, md, { deadline: Date.now() + timeoutMs });
      call.once('data', (msg: { svids: RawSvid[] }) => {
        call.cancel();
        resolve({
          svids: msg.svids.map((s: RawSvid) => ({
            spiffeId: s.spiffe_id,
            chain: splitDer(s.x509_svid),
            key: s.x509_svid_key,
            bundle: splitDer(s.bundle),
            hint: s.hint,
          })),
        });
      });
      call.once('error', (err: grpc.ServiceError) => {
        reject(
          new WorkloadError(
            'ERR_WORKLOAD_API_STATUS',
            `${grpc.status[err.code] ?? err.code}: ${err.details}`,
          ),
        );
      });
    });
  } finally {
    client.close();
  }
}

export interface FetchedJwtSvid {
  readonly spiffeId: string;
  readonly token: string;
  readonly hint: string;
}

/** FetchJWTSVID for `audience` (and only `spiffeId` when given). */
export async function fetchJwtOnce(
  socketPath: string,
  audience: readonly string[],
  spiffeId = '',
  timeoutMs = 10_000,
): Promise<{ svids: FetchedJwtSvid[] }> {
  const { client, md } = connect(socketPath);
  type Answer = { svids: { spiffe_id: string; svid: string; hint: string }[] };
  try {
    const res = await new Promise<Answer>((resolve, reject) => {
      (
        client as unknown as {
          FetchJWTSVID(
            req: object,
            md: grpc.Metadata,
            o: grpc.CallOptions,
            cb: (err: grpc.ServiceError | null, res?: Answer) => void,
          ): void;
        }
      ).FetchJWTSVID(
        { audience: [...audience], spiffe_id: spiffeId },
        md,
        { deadline: Date.now() + timeoutMs },
        (err, r) => {
          if (err !== null || r === undefined)
            reject(
              new WorkloadError(
                'ERR_WORKLOAD_API_STATUS',
                `${grpc.status[err?.code ?? grpc.status.UNKNOWN] ?? err?.code}: ${err?.details ?? 'no answer'}`,
              ),
            );
          else resolve(r);
        },
      );
    });
    return { svids: res.svids.map((s) => ({ spiffeId: s.spiffe_id, token: s.svid, hint: s.hint })) };
  } finally {
    client.close();
  }
}
