/**
 * The operator commands of `edgeward issuer` (issuer.ts parses the flags and picks the channel):
 * tokens, registrations, gateways and their budgets, revocations, CA and JWT key rotation, the
 * audit log (and `audit tail --follow`) and operator certificates. Each is one admin API request
 * over a `Channel`: the running issuer's admin socket or mTLS admin port (`remote`), or, with
 * `--offline` while no issuer runs, the admin API's own dispatcher in process (`local`).
 *
 * @example
 * ```ts
 * return operator(await remote(values, io), 'token', 'create', values, io);
 * ```
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDuration } from '../../config/formats.ts';
import { ISSUER_ROLE, loadConfigFile } from '../../config/load.ts';
import { dispatch } from '../../issuer/admin.ts';
import { type AdminTarget, adminClient } from '../../issuer/admin-client.ts';
import { adminSocketPath } from '../../issuer/from-config.ts';
import type { Issuer } from '../../issuer/issuer.ts';
import { type CliIo, required, UsageError } from '../command.ts';
import type { Values } from './issuer.ts';

/** How an operator command reaches the issuer: the same request, over the socket, mTLS, or in process. */
interface Channel {
  get<T>(path: string): Promise<T>;
  post<T>(path: string, body?: unknown): Promise<T>;
}

/** The in-process channel of --offline: the admin API's own dispatcher, audited as 'offline'. */
export function local(issuer: Issuer): Channel {
  const run = <T>(method: string, path: string, body: unknown) =>
    dispatch(
      issuer,
      method,
      new URL(`/v1/admin${path}`, 'http://offline.invalid'),
      (body ?? {}) as Record<string, unknown>,
      'offline',
    ) as Promise<T>;
  return { get: (p) => run('GET', p, {}), post: (p, b) => run('POST', p, b) };
}

export async function remote(v: Values, io: CliIo): Promise<Channel> {
  if (v.admin !== undefined) {
    const m = /^(.+):(\d{1,5})$/.exec(v.admin);
    if (m === null) throw new UsageError('issuer: --admin must be HOST:PORT');
    let ca = v.ca;
    if (ca === undefined && v.config !== undefined)
      ca = (await loadConfigFile(v.config, ISSUER_ROLE, io.env, {})).ca.certificate;
    const target: AdminTarget = {
      host: (m[1] as string).replace(/^\[|\]$/g, ''),
      port: Number(m[2]),
      cert: await readFile(required(v['operator-cert'], 'operator-cert', 'issuer --admin')),
      key: await readFile(required(v['operator-key'], 'operator-key', 'issuer --admin')),
      ca: await readFile(required(ca, 'ca', 'issuer --admin')),
    };
    return adminClient(target);
  }
  let socket = v.socket;
  if (socket === undefined) {
    const file = required(v.config, 'config', 'issuer (or --socket)');
    socket = adminSocketPath(await loadConfigFile(file, ISSUER_ROLE, io.env, {}));
  }
  return adminClient({ socket });
}

export const DURATION = /^\d+(ms|s|m|h|d)$/;

export async function operator(
  ch: Channel,
  sub: string,
  sub2: string | undefined,
  v: Values,
  io: CliIo,
): Promise<number> {
  const cmd = `issuer ${sub}`;
  const lines = (rows: unknown[]) => {
    for (const r of rows) io.out(JSON.stringify(r));
  };
  const limit = (dflt: number): number => {
    const n = Number(v.limit ?? dflt);
    if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`${cmd}: --limit must be a positive integer`);
    return n;
  };
  switch (`${sub} ${sub2 ?? ''}`.trim()) {
    case 'token create': {
      const ttl = v.ttl ?? '10m';
      if (!DURATION.test(ttl)) throw new UsageError(`${cmd}: --ttl must be a duration such as 10m`);
      const name = required(v.name, 'name', cmd);
      io.out((await ch.post<{ token: string }>('/tokens', { name, ttlMs: parseDuration(ttl) })).token);
      return 0;
    }
    case 'tokens list':
      lines(await ch.get<unknown[]>(`/tokens?limit=${limit(1000)}`));
      return 0;
    case 'register': {
      const name = required(v.name, 'name', cmd);
      if ((v['ek-hash'] === undefined) === (v.factory === undefined))
        throw new UsageError(`${cmd}: give exactly one of --ek-hash or --factory`);
      const body =
        v['ek-hash'] !== undefined
          ? { kind: 'ek', key: v['ek-hash'].toLowerCase(), name }
          : { kind: 'x509', key: v.factory, name };
      await ch.post('/registrations', body);
      io.out(`registered gateway ${name}`);
      return 0;
    }
    case 'disable':
    case 'enable': {
      const name = required(v.name, 'name', cmd);
      await ch.post(`/gateways/${sub}`, { name });
      io.out(`gateway ${name} ${sub}d`);
      return 0;
    }
    case 'gateway budget': {
      const name = required(v.name, 'name', `${cmd} budget`);
      const budget = required(v.budget, 'budget', `${cmd} budget`);
      if (budget !== 'configured' && !DURATION.test(budget))
        throw new UsageError(`${cmd} budget: --budget must be a duration such as 3d, or 'configured'`);
      await ch.post('/gateways/budget', { name, ms: budget === 'configured' ? null : parseDuration(budget) });
      io.out(`gateway ${name}: offline budget ${budget}`);
      return 0;
    }
    case 'gateway show':
      io.out(
        JSON.stringify(
          await ch.get(`/gateway?name=${encodeURIComponent(required(v.name, 'name', `${cmd} show`))}`),
        ),
      );
      return 0;
    case 'gateways list':
      lines(
        await ch.get<unknown[]>(`/gateways?after=${encodeURIComponent(v.after ?? '')}&limit=${limit(1000)}`),
      );
      return 0;
    case 'revoke': {
      if ((v['spiffe-id'] === undefined) === (v.serial === undefined))
        throw new UsageError(`${cmd}: give exactly one of --spiffe-id or --serial`);
      const body =
        v['spiffe-id'] !== undefined
          ? { kind: 'spiffe-id', value: v['spiffe-id'] }
          : { kind: 'serial', value: (v.serial as string).toLowerCase() };
      const r = await ch.post<{ sequence: number; until: number }>('/revocations', body);
      io.out(`revoked (sequence ${r.sequence}, kept until ${new Date(r.until).toISOString()})`);
      return 0;
    }
    case 'revocations list':
      lines(await ch.get<unknown[]>(`/revocations?limit=${limit(1000)}`));
      return 0;
    case 'ca rotate':
      return caRotate(ch, v, io);
    case 'ca show':
      io.out(JSON.stringify(await ch.get('/ca')));
      return 0;
    case 'jwt rotate': {
      const r = await ch.post<{ kid: string; retired: string }>('/jwt/rotate', {});
      io.out(
        `JWT-SVID key ${r.kid} signs now; ${r.retired || 'no key'} retired; move jwtSvid.next into jwtSvid.key in the config for the next start`,
      );
      return 0;
    }
    case 'audit': {
      const since = Number(v.since ?? 0);
      if (!Number.isSafeInteger(since) || since < 0)
        throw new UsageError(`${cmd}: --since must be an integer`);
      lines(await ch.get<unknown[]>(`/audit?since=${since}&limit=${limit(1000)}`));
      return 0;
    }
    case 'audit tail':
      return auditTail(ch, limit(20), v.follow === true, io);
    case 'operator create':
      return operatorCreate(ch, v, io);
    default:
      throw new UsageError(
        `issuer: unknown command '${[sub, sub2].filter(Boolean).join(' ')}' (see edgeward issuer --help)`,
      );
  }
}

async function caRotate(ch: Channel, v: Values, io: CliIo): Promise<number> {
  const cmd = 'issuer ca rotate';
  if (v.status === true) {
    io.out(JSON.stringify(await ch.get('/ca')));
    return 0;
  }
  if ([v.at, v.after, v.now].filter((x) => x !== undefined).length > 1)
    throw new UsageError(`${cmd}: give at most one of --at, --after, --now`);
  const body: { at?: number; afterMs?: number; now?: true } = {};
  if (v.at !== undefined) {
    const at = Date.parse(v.at);
    if (!/^\d{4}-\d{2}-\d{2}T/.test(v.at) || Number.isNaN(at))
      throw new UsageError(`${cmd}: --at must be an ISO 8601 time such as 2026-01-01T12:00:00Z`);
    body.at = at;
  }
  if (v.after !== undefined) {
    if (!DURATION.test(v.after)) throw new UsageError(`${cmd}: --after must be a duration such as 30m`);
    body.afterMs = parseDuration(v.after);
  }
  if (v.now === true) body.now = true;
  const s = await ch.post<{
    active: { fingerprint: string };
    next?: { fingerprint: string; activateAt?: string };
  }>('/ca/rotate', body);
  io.out(
    s.next?.activateAt === undefined
      ? `CA ${s.active.fingerprint} signs now on every replica; the previous one stays in the bundle until what it signed expires`
      : `next CA ${s.next.fingerprint} is in the bundle; every replica signs with it from ${s.next.activateAt}`,
  );
  io.out('then move ca.next into ca in the config for the next start');
  return 0;
}

async function auditTail(ch: Channel, n: number, follow: boolean, io: CliIo): Promise<number> {
  type Ev = { at: number };
  // The last n: walk forward in pages from the start (the API lists in time order).
  let all: Ev[] = [];
  let since = 0;
  for (;;) {
    const page = await ch.get<Ev[]>(`/audit?since=${since}&limit=1000`);
    const fresh = page.filter(
      (e) => !all.some((x) => x.at === e.at && JSON.stringify(x) === JSON.stringify(e)),
    );
    all = [...all, ...fresh].slice(-Math.max(n, 1000));
    if (page.length < 1000 || fresh.length === 0) break;
    since = (page[page.length - 1] as Ev).at;
  }
  const shown = all.slice(-n);
  for (const e of shown) io.out(JSON.stringify(e));
  if (!follow) return 0;
  let last = shown[shown.length - 1]?.at ?? 0;
  let seen = new Set(shown.filter((e) => e.at === last).map((e) => JSON.stringify(e)));
  while (!io.stopSignal.aborted) {
    const page = await ch.get<Ev[]>(`/audit?since=${last}&limit=1000`);
    for (const e of page) {
      const s = JSON.stringify(e);
      if (e.at < last || (e.at === last && seen.has(s))) continue;
      if (e.at > last) {
        last = e.at;
        seen = new Set();
      }
      seen.add(s);
      io.out(s);
    }
    if (page.length >= 1000) continue;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 1000);
      io.stopSignal.addEventListener(
        'abort',
        () => {
          clearTimeout(t);
          resolve();
        },
        { once: true },
      );
    });
  }
  return 0;
}

async function operatorCreate(ch: Channel, v: Values, io: CliIo): Promise<number> {
  const name = required(v.name, 'name', 'issuer operator create');
  const out = required(v.out, 'out', 'issuer operator create');
  const ttl = v.ttl ?? '8h';
  if (!DURATION.test(ttl))
    throw new UsageError('issuer operator create: --ttl must be a duration such as 8h');
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
  const r = await ch.post<{ spiffeId: string; certificate: string; notAfter: number }>('/operators', {
    name,
    spki,
    ttlMs: parseDuration(ttl),
  });
  await mkdir(out, { recursive: true, mode: 0o700 });
  const keyFile = join(out, `${name}.key`);
  const certFile = join(out, `${name}.pem`);
  await writeFile(keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  await writeFile(certFile, new X509Certificate(Buffer.from(r.certificate, 'base64')).toString(), {
    mode: 0o644,
  });
  io.out(`${r.spiffeId} until ${new Date(r.notAfter).toISOString()}: ${certFile}, ${keyFile}`);
  return 0;
}
