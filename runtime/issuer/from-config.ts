/**
 * From a validated issuer config file to `startIssuer` options: reads the CA and TLS key
 * material (keys must be 0600; a `pkcs11:` CA key is opened in its token, `pkcs11/key.ts`, and
 * closed with the issuer, and rotates in that token: `ca rotate` makes the next key there and
 * every replica finds it there, `pkcs11/rotation.ts`; a `pkcs11:` JWT-SVID key is opened in the
 * same module), manufacturer and factory roots, firmware-signing keys, and
 * turns durations into milliseconds. Defaults deny: no method is on unless configured,
 * auto-registration is off, PCR values must match signed manifests.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { IssuerConfig } from '../config/issuer-schema.ts';
import { parseDuration } from '../config/types.ts';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/logger.ts';
import type { Random } from '../core/random.ts';
import { type CaKey, softwareCaKey } from '../svid/ca-key.ts';
import type { CaKeyPair } from './ca.ts';
import { readCertificatesFile, readPrivateKeyFile, readPublicKeyFile } from './files.ts';
import { openPkcs11CaKey } from './pkcs11/key.ts';
import { pkcs11Rotation } from './pkcs11/rotation.ts';
import { isPkcs11Uri } from './pkcs11/uri.ts';
import type { StartIssuerOptions } from './start.ts';
import type { IssuerStore } from './store.ts';

/** Where the issuer's probes listen unless the config says (`health`). */
export const DEFAULT_HEALTH = { host: '127.0.0.1', port: 9101 } as const;

/** Where a PostgreSQL replica's admin socket is unless `admin.socket` says (it has no store directory). */
export const DEFAULT_POSTGRES_ADMIN_SOCKET = '/run/edgeward/issuer-admin.sock';

/**
 * The admin socket of the issuer this config describes: `admin.socket`, else `admin.sock` in the
 * LevelDB store directory, else (PostgreSQL) DEFAULT_POSTGRES_ADMIN_SOCKET.
 */
export function adminSocketPath(cfg: Pick<IssuerConfig, 'admin' | 'store'>): string {
  if (cfg.admin?.socket !== undefined) return cfg.admin.socket;
  return cfg.store.leveldb === undefined
    ? DEFAULT_POSTGRES_ADMIN_SOCKET
    : join(cfg.store.leveldb.dir, 'admin.sock');
}

export async function issuerOptionsFromConfig(
  cfg: IssuerConfig,
  deps: { store: IssuerStore; clock: Clock; random: Random; logger: Logger },
): Promise<StartIssuerOptions> {
  // PKCS#11 keys hold a module and sessions: closed with the issuer (`owned`), or here on a failure.
  const owned: CaKey[] = [];
  const caPair = async (c: { certificate: string; key: string }): Promise<CaKeyPair> => {
    const [cert] = await readCertificatesFile(c.certificate);
    const certificate = (cert as NonNullable<typeof cert>).raw;
    if (!isPkcs11Uri(c.key)) return { certificate, privateKey: await readPrivateKeyFile(c.key) };
    // issuerBounds made sure ca.pkcs11 is set for a pkcs11: key.
    const p = cfg.ca.pkcs11 as NonNullable<IssuerConfig['ca']['pkcs11']>;
    const key = await openPkcs11CaKey({
      uri: c.key,
      module: p.module,
      pinFile: p.pinFile,
      certificate,
      clock: deps.clock,
    });
    owned.push(key);
    return { certificate, key };
  };
  // A JWT-SVID key: a PEM file, or a key in the CA's token (`pkcs11:`, opened with ca.pkcs11).
  const jwtKey = async (k: string): Promise<CaKey> => {
    if (!isPkcs11Uri(k)) return softwareCaKey(await readPrivateKeyFile(k));
    const p = cfg.ca.pkcs11 as NonNullable<IssuerConfig['ca']['pkcs11']>;
    const key = await openPkcs11CaKey({ uri: k, module: p.module, pinFile: p.pinFile, clock: deps.clock });
    owned.push(key);
    return key;
  };
  try {
    return await fromConfig(cfg, deps, caPair, jwtKey, owned);
  } catch (err) {
    for (const k of owned) await k.close();
    throw err;
  }
}

function rotationInToken(
  cfg: IssuerConfig,
  deps: { clock: Clock; random: Random },
  owned: CaKey[],
): Pick<StartIssuerOptions, 'nextCaSource' | 'caKeyFor'> {
  const p = cfg.ca.pkcs11 as NonNullable<IssuerConfig['ca']['pkcs11']>;
  const r = pkcs11Rotation({
    uri: cfg.ca.key,
    module: p.module,
    pinFile: p.pinFile,
    trustDomain: cfg.trustDomain,
    clock: deps.clock,
    random: deps.random,
    owned,
  });
  return { nextCaSource: r.nextSource, caKeyFor: r.keyFor };
}

async function fromConfig(
  cfg: IssuerConfig,
  deps: { store: IssuerStore; clock: Clock; random: Random; logger: Logger },
  caPair: (c: { certificate: string; key: string }) => Promise<CaKeyPair>,
  jwtKey: (k: string) => Promise<CaKey>,
  owned: CaKey[],
): Promise<StartIssuerOptions> {
  const many = async (files: readonly string[] = []) =>
    (await Promise.all(files.map(readCertificatesFile))).flat();
  const a = cfg.attestation;
  const ms = (d: string | undefined): number | undefined => (d === undefined ? undefined : parseDuration(d));
  await readPrivateKeyFile(cfg.listen.key); // mode check before TLS reads it
  const opt = <K extends string, V>(k: K, v: V | undefined): { [P in K]?: V } =>
    (v === undefined ? {} : { [k]: v }) as { [P in K]?: V };
  const hint = ms(cfg.bundleRefreshHint);
  const jwt =
    cfg.jwtSvid === undefined
      ? undefined
      : {
          key: await jwtKey(cfg.jwtSvid.key),
          ...(cfg.jwtSvid.next === undefined ? {} : { next: await jwtKey(cfg.jwtSvid.next) }),
        };
  return {
    trustDomain: cfg.trustDomain,
    ...deps,
    ca: await caPair(cfg.ca),
    ...(cfg.ca.next === undefined ? {} : { nextCa: await caPair(cfg.ca.next) }),
    // A pkcs11: CA rotates inside its token: the next key is generated there and found there by
    // every replica (pkcs11/rotation.ts), no ca.next and no restart needed.
    ...(isPkcs11Uri(cfg.ca.key) ? rotationInToken(cfg, deps, owned) : {}),
    tls: { cert: await readFile(cfg.listen.certificate), key: await readFile(cfg.listen.key) },
    host: cfg.listen.host,
    port: cfg.listen.port,
    listenerLimits: {
      ...opt('handshakeTimeoutMs', ms(cfg.listen.handshakeTimeout)),
      ...opt('requestTimeoutMs', ms(cfg.listen.requestTimeout)),
      ...opt('maxConnections', cfg.listen.maxConnections),
    },
    admin: {
      socket: adminSocketPath(cfg),
      ...(cfg.admin?.listen === undefined ? {} : { listen: cfg.admin.listen }),
    },
    health: cfg.health ?? DEFAULT_HEALTH,
    // The CA key file must stay readable and 0600: a replica restarted now must be able to sign
    // (a PKCS#11 key is checked by the 'ca' probe signature, through the token); the JWT key too.
    readinessChecks: [
      ...(isPkcs11Uri(cfg.ca.key)
        ? []
        : [{ name: 'ca-key', check: async () => void (await readPrivateKeyFile(cfg.ca.key)) }]),
      // The JWT key: its file still readable and 0600, or (in the token) a probe signature.
      ...(cfg.jwtSvid === undefined || jwt === undefined
        ? []
        : [
            {
              name: 'jwt-key',
              check: isPkcs11Uri(cfg.jwtSvid.key)
                ? async () => void (await jwt.key.sign(Buffer.from('edgeward readiness probe')))
                : async () => void (await readPrivateKeyFile((cfg.jwtSvid as { key: string }).key)),
            },
          ]),
    ],
    owned,
    ...(cfg.jwtSvid === undefined
      ? {}
      : {
          jwtSvid: {
            ...(jwt as NonNullable<typeof jwt>),
            ...opt('ttlMs', ms(cfg.jwtSvid.ttl)),
            ...opt('perGateway', cfg.jwtSvid.perGateway),
          },
        }),
    ...opt('svidTtlMs', ms(cfg.svidTtl)),
    ...opt('offlineBudgetMs', ms(cfg.offlineBudget)),
    ...opt('serverNames', cfg.serverNames),
    ...opt('sessionTtlMs', ms(cfg.sessionTtl)),
    ...opt('refreshHintSeconds', hint === undefined ? undefined : Math.round(hint / 1000)),
    methods: {
      ...(a.joinToken === undefined ? {} : { joinToken: { enabled: a.joinToken.enabled } }),
      ...(a.x509pop === undefined
        ? {}
        : {
            x509pop: {
              roots: await many(a.x509pop.roots),
              nameFrom: a.x509pop.nameFrom ?? 'cn',
              autoRegister: a.x509pop.autoRegister ?? false,
            },
          }),
      ...(a.tpm === undefined
        ? {}
        : {
            tpm: {
              manufacturerRoots: await many(a.tpm.manufacturerRoots),
              intermediates: await many(a.tpm.intermediates),
              pcrSelection: a.tpm.pcrs ?? 'sha256:0,1,2,3,4,5,6,7',
              autoRegister: a.tpm.autoRegister ?? false,
              pcrPolicy: a.tpm.pcrPolicy ?? 'manifests',
            },
          }),
    },
    firmwareKeys: await Promise.all((cfg.firmware?.signingKeys ?? []).map(readPublicKeyFile)),
    ...(cfg.rateLimit === undefined
      ? {}
      : {
          rateLimit: {
            perAddress: cfg.rateLimit.perAddress ?? 60,
            perGateway: cfg.rateLimit.perGateway ?? 10,
            windowMs: ms(cfg.rateLimit.window) ?? 60_000,
          },
        }),
  };
}
