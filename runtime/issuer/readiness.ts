/**
 * Is this issuer ready to serve (`/readyz`)? The store answers (a read within `timeoutMs`) and,
 * on PostgreSQL, its schema is still the one this build knows; this replica holds the active CA's
 * key (a rotation it was not given the next key for leaves it without: `ca: ERR_ISSUER_CA_INVALID
 * ...`) and that key signs (a probe signature through its `CaKey`, file or PKCS#11 token, verified
 * with the CA certificate's key; the certificate not expired); the bundle is loaded; plus the
 * composition root's own checks (the CA key file still readable and 0600, ...). Each failure is
 * one reason, `name: CODE message`.
 */
import { verify, X509Certificate } from 'node:crypto';
import { isEdgewardError } from '../core/error.ts';
import type { CaKey } from '../svid/ca-key.ts';
import { signatureAlgorithm } from '../svid/signer.ts';
import type { IssuerCore } from './core.ts';
import { K } from './records.ts';

export interface ReadinessCheck {
  readonly name: string;
  /** Resolves when fine; throws (a typed error, ideally) with the reason otherwise. */
  check(): Promise<void>;
}

const reason = (name: string, err: unknown): string =>
  `${name}: ${isEdgewardError(err) ? `${err.code} ` : ''}${err instanceof Error ? err.message : String(err)}`;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export async function readiness(
  core: IssuerCore,
  /** The active CA's key as this replica holds it; throws (ERR_ISSUER_CA_INVALID) when it does not. */
  caKey: () => { certificate: Uint8Array; key: CaKey },
  extra: readonly ReadinessCheck[],
  timeoutMs = 2000,
): Promise<string[]> {
  const reasons: string[] = [];
  const run = async (name: string, fn: () => Promise<void>) => {
    try {
      await withTimeout(fn(), timeoutMs, name);
    } catch (err) {
      reasons.push(reason(name, err));
    }
  };
  await run('store', async () => {
    await core.store.get(K.bundle);
    // PostgreSQL: still at the schema this build knows (a newer edgeward may have migrated it).
    await core.store.checkSchema?.();
  });
  await run('ca', async () => {
    const pair = caKey();
    const cert = new X509Certificate(Buffer.from(pair.certificate));
    if (core.clock.now() > Date.parse(cert.validTo)) throw new Error('the CA certificate has expired');
    // Through the signing seam: a PKCS#11 token that went away fails here with its typed code.
    const probe = Buffer.from('edgeward readiness probe');
    const sig = await pair.key.sign(probe);
    if (!verify(signatureAlgorithm(pair.key.publicKey).hash, probe, cert.publicKey, sig))
      throw new Error('the CA key does not match its certificate');
  });
  await run('bundle', async () => {
    if (core.cas.roots().length === 0 || core.cas.bundleJson().length === 0)
      throw new Error('no bundle loaded');
  });
  for (const c of extra) await run(c.name, () => c.check());
  return reasons;
}
