/**
 * A replica whose configured CA (`ca.certificate`) has expired by the time it starts: the CA
 * state in the store may name a newer active CA (a rotation done while this replica's file still
 * names the old one). It starts on that CA when it holds its key (configured as `ca.next`, or
 * found by `keyFor` in a shared PKCS#11 token), and is refused with ERR_ISSUER_CA_INVALID, saying
 * which CA it lacks, when it has no usable CA: the store names none besides the expired one, the
 * store's active CA expired too, or this replica does not hold its key. Nothing is written.
 */
import { X509Certificate } from 'node:crypto';
import { IssuerError } from '../errors.ts';
import type { CaKeyPair } from './ca.ts';
import { checkedBundle, effectiveAt, fingerprint } from './ca-state.ts';
import { K } from './records.ts';
import type { IssuerStore } from './store.ts';

const named = (x: X509Certificate): string =>
  `${x.subject.replace(/\n/g, ', ')}, sha256 ${fingerprint(x.raw)}`;

/**
 * The store's active CA for a replica whose configured CA `configured` expired before `now`:
 * `undefined` when the replica already holds its key (`held`), the pair `keyFor` found otherwise;
 * throws ERR_ISSUER_CA_INVALID when there is no usable CA.
 */
export async function storeCaForExpired(o: {
  readonly store: IssuerStore;
  readonly configured: X509Certificate;
  readonly now: number;
  readonly held: (print: string) => boolean;
  readonly keyFor?: (certificate: Uint8Array) => Promise<CaKeyPair | undefined>;
}): Promise<CaKeyPair | undefined> {
  const expired = `the configured CA (ca.certificate: ${named(o.configured)}) expired at ${new Date(o.configured.validTo).toISOString()}`;
  const stored = await o.store.get<unknown>(K.bundle);
  const active = stored === undefined ? undefined : effectiveAt(checkedBundle(stored), o.now).active;
  if (active === undefined || fingerprint(active) === fingerprint(o.configured.raw))
    throw new IssuerError(
      'ERR_ISSUER_CA_INVALID',
      `${expired} and the store names no newer active CA: configure a valid CA as ca`,
    );
  const x = new X509Certificate(Buffer.from(active));
  if (Date.parse(x.validTo) <= o.now)
    throw new IssuerError(
      'ERR_ISSUER_CA_INVALID',
      `${expired} and the store's active CA (${named(x)}) expired too: configure a valid CA as ca`,
    );
  if (o.held(fingerprint(active))) return undefined;
  const pair = await o.keyFor?.(active);
  if (pair !== undefined && Buffer.from(pair.certificate).equals(Buffer.from(active))) return pair;
  throw new IssuerError(
    'ERR_ISSUER_CA_INVALID',
    `${expired} and this replica does not hold the key of the store's active CA (${named(x)}): configure that CA as ca (or ca.next) with its key`,
  );
}
