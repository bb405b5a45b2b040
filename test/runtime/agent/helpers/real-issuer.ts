/**
 * TEST ONLY: the real issuer (runtime/issuer `Issuer`), in process, on the agent's virtual clock,
 * as a backend of the FakeIssuer's endpoints (which keep recording calls and injecting network
 * faults): requests go to the issuer's own handlers with the CBOR the wire would carry and the
 * gateway SVID's leaf as the TLS client certificate; its refusals come back as the client makes
 * them (the issuer's `statusFor`, the client's `codeForStatus`, `remoteCode`). So the rotation
 * suite runs against the codes and certificates the issuer really produces.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode } from 'cbor-x';
import type { Clock } from '../../../../runtime/core/clock.ts';
import { isEdgewardError } from '../../../../runtime/core/error.ts';
import type { Random } from '../../../../runtime/core/random.ts';
import { createDevIssuerFiles } from '../../../../runtime/issuer/dev.ts';
import { Issuer, type IssuerOptions, type RequestContext } from '../../../../runtime/issuer/issuer.ts';
import { type IssuerStore, issuerCbor, openMemoryStore } from '../../../../runtime/issuer/store.ts';
import { softwareCaKey } from '../../../../runtime/svid/ca-key.ts';
import { PATHS } from '../../../../runtime/upstream/protocol.ts';
import type { Backend } from './fake-issuer.ts';

export interface RealIssuer {
  readonly issuer: Issuer;
  readonly backend: Backend;
  /** The issuer's store, for records a test checks. */
  readonly store: IssuerStore;
  /** A fresh join token for gateway `gw-1` (single use, as always on the real issuer). */
  token(): Promise<string>;
}

/**
 * `now` is the agent's (virtual) time; the issuer's own housekeeping timers (pruning) are not run,
 * so the agent tests still see exactly the agent's timers on their clock.
 */
export async function realIssuer(
  now: () => number,
  random: Random,
  trustDomain: string,
  methods: IssuerOptions['methods'] = { joinToken: { enabled: true } },
  /** The issuer's CA (default: a dev CA with a file key). */
  ca?: IssuerOptions['ca'],
): Promise<RealIssuer> {
  const clock: Clock = { now, monotonic: now, setTimer: () => ({ cancel: () => {} }) };
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-real-issuer-'));
  const files = await createDevIssuerFiles(join(dir, 'issuer'), { trustDomain, clock, random });
  const store = await openMemoryStore();
  const issuer = await Issuer.create({
    trustDomain,
    store,
    ca: ca ?? files.ca,
    clock,
    random,
    methods,
    // JWT-SVIDs signed with the dev jwt.key (default lifetime 5 min).
    jwtSvid: { key: softwareCaKey(files.jwtKey) },
    // As the FakeIssuer: SVID 1 h, delegated CA (the offline budget) 24 h.
    svidTtlMs: 3_600_000,
    offlineBudgetMs: 24 * 3_600_000,
  });
  const backend: Backend = async (path, body, clientLeaf) => {
    const ctx: RequestContext = {
      address: '127.0.0.1',
      ...(clientLeaf === undefined ? {} : { peerCertificate: clientLeaf }),
    };
    // What the wire carries: the issuer decodes with its own CBOR settings.
    const req = body === undefined ? undefined : issuerCbor.decode(issuerCbor.encode(body) as Uint8Array);
    const route = path.split('?')[0];
    try {
      let res: unknown;
      if (route === PATHS.attestBegin) res = await issuer.attestBegin(req, ctx);
      else if (route === PATHS.attestFinish) res = await issuer.attestFinish(req, ctx);
      else if (route === PATHS.renewBegin) res = await issuer.renewBegin(ctx);
      else if (route === PATHS.renewFinish) res = await issuer.renewFinish(req, ctx);
      else if (route === PATHS.recoverBegin) res = await issuer.recoverBegin(req, ctx);
      else if (route === PATHS.recoverFinish) res = await issuer.recoverFinish(req, ctx);
      else if (route === PATHS.devicesIssued) res = await issuer.devicesIssued(req, ctx);
      else if (route === PATHS.jwtSvid) res = await issuer.jwtSvid(req, ctx);
      else if (route === PATHS.bundle) return { answer: issuer.bundle().json };
      else if (route === PATHS.revocations)
        res = issuer.revocationFeed(Number(new URL(`https://x${path}`).searchParams.get('since') ?? 0));
      else return { refused: 'ERR_ISSUER_NOT_FOUND' };
      return { answer: decode(issuerCbor.encode(res) as Uint8Array) };
    } catch (err) {
      if (isEdgewardError(err)) return { refused: err.code };
      throw err;
    }
  };
  return { issuer, backend, store, token: () => issuer.createJoinToken('gw-1', 24 * 3_600_000) };
}
