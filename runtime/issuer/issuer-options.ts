/**
 * What an `Issuer` is built from (`issuer.ts`): trust domain, store, CA keys, clock and
 * randomness, lifetimes, attestation methods, policies and limits. The composition root
 * (`from-config.ts`, `start.ts`) fills it from the config; tests and the simulator directly.
 */
import type { KeyObject, X509Certificate } from 'node:crypto';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/logger.ts';
import type { Random } from '../core/random.ts';
import type { CaKey } from '../svid/ca-key.ts';
import type { CaKeyPair } from './ca.ts';
import type { IssuerMethods } from './core.ts';
import type { ReadinessCheck } from './readiness.ts';
import type { ServerNamePolicy } from './server-names.ts';
import type { IssuerStore } from './store.ts';

export interface IssuerOptions {
  readonly trustDomain: string;
  readonly store: IssuerStore;
  readonly ca: CaKeyPair;
  /** A prepared next CA: published in the bundle now, signs from the time `rotateCa()` records. */
  readonly nextCa?: CaKeyPair;
  /** Where `rotateCa()` gets a next CA when none is published or configured (a PKCS#11 token's generator). */
  readonly nextCaSource?: (active: X509Certificate) => Promise<CaKeyPair>;
  /** The key of a CA certificate seen in the store but not configured here (one generated in a shared token). */
  readonly caKeyFor?: (certificate: Uint8Array) => Promise<CaKeyPair | undefined>;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger?: Logger;
  readonly svidTtlMs?: number;
  /** The delegated CA's lifetime (default 7d); an operator may override it per gateway. */
  readonly offlineBudgetMs?: number;
  readonly sessionTtlMs?: number;
  readonly refreshHintSeconds?: number;
  readonly methods: IssuerMethods;
  readonly firmwareKeys?: readonly KeyObject[];
  /** Which broker host names a gateway SVID may carry (default: local names only). */
  readonly serverNames?: ServerNamePolicy;
  readonly rateLimit?: {
    readonly perAddress: number;
    readonly perGateway: number;
    readonly windowMs: number;
  };
  /** Told of every request's outcome (`code` 'ok' or the refusal's), for metrics (`metrics.ts`). */
  readonly observe?: (o: { op: string; method: string; code: string; ms: number }) => void;
  /** How often this replica tries to prune (default 60 s; one replica at a time does it). */
  readonly pruneIntervalMs?: number;
  /** Readiness checks of the composition root besides store, CA key and bundle (`readiness.ts`). */
  readonly readinessChecks?: readonly ReadinessCheck[];
  /** JWT-SVID signing (`jwt-keys.ts`, `jwt-svid.ts`): the key, a prepared next key, the token lifetime, requests per gateway per window (default 60). */
  readonly jwtSvid?: {
    readonly key?: CaKey;
    readonly next?: CaKey;
    readonly ttlMs?: number;
    readonly perGateway?: number;
  };
  /** Closed when the issuer closes: the PKCS#11 CA keys the composition root opened (`from-config.ts`). */
  readonly owned?: readonly { close(): Promise<void> }[];
}
