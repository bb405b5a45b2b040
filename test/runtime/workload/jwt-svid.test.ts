/**
 * JWT-SVIDs over the SPIFFE Workload API (issue 18 item 4): the Python gRPC stack fetches a
 * JWT-SVID for its entry, which validates with `jose` against the JWKS of FetchJWTBundles and
 * fails for another audience and after `exp` (virtual clock); ValidateJWTSVID accepts it and
 * refuses garbage, another audience and an empty audience with INVALID_ARGUMENT; a `spiffe_id`
 * the caller is not entitled to and a caller with no entry get PERMISSION_DENIED; the JWT
 * bundle stream sends again when the keys change. The cache: one upstream call per (ID,
 * audience set) until half-life; while the upstream is away the cached token is served until
 * just before `exp`, never at or after it. The upstream here signs with the issuer's own code
 * (`signJwtSvid` through a software `CaKey`) and can be switched off; the issuer's endpoint is
 * tested against the real issuer in test/runtime/issuer/jwt-svid.test.ts.
 */
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { command as workloadCommand } from '../../../runtime/cli/commands/workload.ts';
import { AgentError } from '../../../runtime/errors.ts';
import { softwareCaKey } from '../../../runtime/svid/ca-key.ts';
import { type JwtAuthority, jwkThumbprint, publicJwk, signJwtSvid } from '../../../runtime/svid/jwt-svid.ts';
import { fetchJwtOnce } from '../../../runtime/workload/client.ts';
import { captureIo } from '../../helpers/cli-io.ts';
import { rejects } from '../../helpers/rejects.ts';
import { type Harness, harness } from './harness.ts';

const UID_A = 41011;
const UID_B = 41012;
const TTL_S = 300;

function signingKey() {
  const key = softwareCaKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
  const authority: JwtAuthority = { kid: jwkThumbprint(key.publicKey), jwk: publicJwk(key.publicKey) };
  return { key, authority };
}

/** An upstream that signs like the issuer, counts its calls, and can be taken away. */
function upstream(now: () => number) {
  const u = {
    signing: signingKey(),
    keys: [] as JwtAuthority[],
    calls: 0,
    away: false,
    async fetchJwtSvid(spiffeId: string, audience: readonly string[]) {
      u.calls++;
      if (u.away) throw new AgentError('ERR_UPSTREAM_UNREACHABLE', 'issuer away');
      const iat = Math.floor(now() / 1000);
      const token = await signJwtSvid(u.signing.key, u.signing.authority.kid, {
        sub: spiffeId,
        aud: audience,
        iat,
        exp: iat + TTL_S,
      });
      return { token, expiresAt: (iat + TTL_S) * 1000 };
    },
  };
  u.keys = [u.signing.authority];
  return u;
}

async function setup(entries: Parameters<typeof harness>[0]) {
  let up: ReturnType<typeof upstream> | undefined;
  const h: Harness = await harness(
    entries,
    {},
    {
      jwtKeys: () => up?.keys,
      fetchJwtSvid: (id, aud) => (up as ReturnType<typeof upstream>).fetchJwtSvid(id, aud),
    },
  );
  up = upstream(() => h.clock.now());
  return { h, up };
}

test('Python fetches a JWT-SVID; jose validates it against the JWKS; another audience and exp fail', async () => {
  const { h, up } = await setup([{ name: 'adapter', selectors: [`unix:uid:${UID_A}`], hint: 'ext' }]);
  try {
    const got = await h.client(['jwt', '--aud', 'api.example'], { uid: UID_A }).next();
    assert.is(got.error, undefined, got.details);
    const svid = got.jwt?.[0];
    assert.is(svid?.id, `${h.pki.gateway.id}/workload/adapter`);
    assert.is(svid?.hint, 'ext');
    const bundles = await h.client(['jwtbundles', '--max', '1'], { uid: UID_A }).next();
    const doc = bundles.jwks?.[`spiffe://${h.pki.trustDomain}`];
    assert.equal(
      doc?.keys.map((k) => [k.kid, k.use]),
      [[up.signing.authority.kid, undefined]],
      'a JWKS as go-spiffe marshals it: kid, no use (jose skips keys whose use is not sig)',
    );
    const set = createLocalJWKSet(doc as never);
    const token = svid?.token as string;
    const v = await jwtVerify(token, set, { audience: 'api.example', currentDate: new Date(h.clock.now()) });
    assert.is(v.payload.sub, svid?.id);
    await rejects(
      () => jwtVerify(token, set, { audience: 'other', currentDate: new Date(h.clock.now()) }),
      'ERR_JWT_CLAIM_VALIDATION_FAILED',
    );
    await h.clock.advance(TTL_S * 1000 + 1000);
    await rejects(
      () => jwtVerify(token, set, { audience: 'api.example', currentDate: new Date(h.clock.now()) }),
      'ERR_JWT_EXPIRED',
    );
  } finally {
    await h.close();
  }
});

test('empty audience → INVALID_ARGUMENT; a spiffe_id not entitled or no entry → PERMISSION_DENIED', async () => {
  const { h } = await setup([{ name: 'a', selectors: [`unix:uid:${UID_A}`] }]);
  try {
    assert.is((await h.client(['jwt'], { uid: UID_A }).next()).error, 'INVALID_ARGUMENT');
    const other = `${h.pki.gateway.id}/workload/b`;
    const r = await h.client(['jwt', '--aud', 'x', '--spiffe-id', other], { uid: UID_A }).next();
    assert.is(r.error, 'PERMISSION_DENIED');
    const own = `${h.pki.gateway.id}/workload/a`;
    const ok = await h.client(['jwt', '--aud', 'x', '--spiffe-id', own], { uid: UID_A }).next();
    assert.equal(
      ok.jwt?.map((s) => s.id),
      [own],
    );
    assert.is((await h.client(['jwt', '--aud', 'x'], { uid: UID_B }).next()).error, 'PERMISSION_DENIED');
    assert.is((await h.client(['jwtbundles'], { uid: UID_B }).next()).error, 'PERMISSION_DENIED');
  } finally {
    await h.close();
  }
});

test('ValidateJWTSVID: a good token → its ID and claims; garbage, another audience, empty → INVALID_ARGUMENT', async () => {
  const { h, up } = await setup([{ name: 'svc', selectors: ['unix:uid:0'] }]);
  try {
    const id = `${h.pki.gateway.id}/workload/svc`;
    const { token } = await up.fetchJwtSvid(id, ['api', 'b']);
    const v = await h.client(['validate', '--aud', 'api', '--token', token]).next();
    assert.is(v.error, undefined, v.details);
    assert.is(v.validated?.id, id);
    assert.equal(v.validated?.claims.aud, ['api', 'b']);
    assert.is(v.validated?.claims.exp, decodeJwt(token).exp);
    for (const [aud, tok] of [
      ['api', 'garbage'],
      ['api', 'a.b.c'],
      ['other', token],
      ['', token],
      ['api', ''],
    ] as const) {
      const r = await h.client(['validate', '--aud', aud, '--token', tok]).next();
      assert.is(r.error, 'INVALID_ARGUMENT', `${aud} ${tok.slice(0, 10)}`);
    }
    // Signed by a key the bundle does not have, and a token of another trust domain.
    const stranger = signingKey();
    const iat = Math.floor(h.clock.now() / 1000);
    const foreign = await signJwtSvid(stranger.key, stranger.authority.kid, {
      sub: id,
      aud: ['api'],
      iat,
      exp: iat + 60,
    });
    assert.is(
      (await h.client(['validate', '--aud', 'api', '--token', foreign]).next()).error,
      'INVALID_ARGUMENT',
    );
    const otherTd = await signJwtSvid(up.signing.key, up.signing.authority.kid, {
      sub: 'spiffe://elsewhere.example/w',
      aud: ['api'],
      iat,
      exp: iat + 60,
    });
    assert.is(
      (await h.client(['validate', '--aud', 'api', '--token', otherTd]).next()).error,
      'INVALID_ARGUMENT',
    );
    // After exp at the agent's clock.
    await h.clock.advance(TTL_S * 1000 + 1000);
    assert.is(
      (await h.client(['validate', '--aud', 'api', '--token', token]).next()).error,
      'INVALID_ARGUMENT',
    );
  } finally {
    await h.close();
  }
});

test('the JWT bundle stream sends again when the keys change', async () => {
  const { h, up } = await setup([{ name: 'svc', selectors: ['unix:uid:0'] }]);
  try {
    const c = h.client(['jwtbundles']);
    const first = await c.next();
    const td = `spiffe://${h.pki.trustDomain}`;
    assert.is(first.jwks?.[td]?.keys.length, 1);
    const next = signingKey();
    up.keys = [up.signing.authority, next.authority];
    h.setLive(h.live()); // the agent adopted a new bundle: its sources notify
    const second = await c.next();
    assert.equal(
      second.jwks?.[td]?.keys.map((k) => k.kid).sort(),
      [up.signing.authority.kid, next.authority.kid].sort(),
    );
  } finally {
    await h.close();
  }
});

test('cache: reused until half-life; upstream away → cached token until just before exp, never at or after it', async () => {
  const { h, up } = await setup([{ name: 'svc', selectors: ['unix:uid:0'] }]);
  try {
    const a = (await fetchJwtOnce(h.socket, ['x', 'y'])).svids[0];
    const b = (await fetchJwtOnce(h.socket, ['y', 'x', 'x'])).svids[0];
    assert.is(up.calls, 1, 'one upstream call per (ID, audience set)');
    assert.is(b?.token, a?.token);
    await fetchJwtOnce(h.socket, ['z']);
    assert.is(up.calls, 2, 'another audience set is another token');
    await h.clock.advance((TTL_S / 2) * 1000 + 1000);
    const c = (await fetchJwtOnce(h.socket, ['x', 'y'])).svids[0];
    assert.is(up.calls, 3, 'past half-life a fresh token is asked for');
    assert.is.not(c?.token, a?.token);
    // The upstream goes away: the cached token is served while it lives.
    up.away = true;
    await h.clock.advance((TTL_S / 2) * 1000 + 1000);
    const d = (await fetchJwtOnce(h.socket, ['x', 'y'])).svids[0];
    assert.is(d?.token, c?.token, 'served from the cache while the upstream is away');
    assert.is(up.calls, 4);
    const exp = (decodeJwt(c?.token as string).exp as number) * 1000;
    await h.clock.advance(exp - 1 - h.clock.now());
    assert.is((await fetchJwtOnce(h.socket, ['x', 'y'])).svids[0]?.token, c?.token, '1 ms before exp');
    await h.clock.advance(1);
    await rejects(() => fetchJwtOnce(h.socket, ['x', 'y']), 'ERR_WORKLOAD_API_STATUS');
    const err = await fetchJwtOnce(h.socket, ['x', 'y']).catch((e: Error) => e.message);
    assert.match(String(err), /^UNAVAILABLE/);
    // Back: a fresh token at once.
    up.away = false;
    const e = (await fetchJwtOnce(h.socket, ['x', 'y'])).svids[0];
    assert.ok((decodeJwt(e?.token as string).exp as number) * 1000 > h.clock.now());
  } finally {
    await h.close();
  }
});

test('edgeward workload fetch --jwt AUD prints the ID, audience and expiry and writes the token 0600', async () => {
  const { h } = await setup([{ name: 'svc', selectors: ['unix:uid:0'] }]);
  try {
    const io = captureIo();
    const out = join(h.dir, 'out');
    const code = await workloadCommand.run(
      ['fetch', '--socket', h.socket, '--jwt', 'api.example', '--jwt', 'b', '--write', out],
      io,
    );
    assert.is(code, 0, io.stderr.join('\n'));
    assert.match(io.stdout.join('\n'), `SPIFFE ID: ${h.pki.gateway.id}/workload/svc`);
    assert.match(io.stdout.join('\n'), /JWT-SVID #0: audience \["api.example","b"\], expires \d{4}-/);
    const file = join(out, 'jwt.0.token');
    assert.is(statSync(file).mode & 0o777, 0o600);
    assert.is(decodeJwt(readFileSync(file, 'utf8').trim()).sub, `${h.pki.gateway.id}/workload/svc`);
    const bad = captureIo();
    assert.is(await workloadCommand.run(['fetch', '--socket', h.socket, '--jwt', ''], bad), 1);
    assert.match(bad.stderr.join('\n'), /INVALID_ARGUMENT/);
  } finally {
    await h.close();
  }
});

test.run();
