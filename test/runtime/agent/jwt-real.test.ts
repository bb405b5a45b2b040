/**
 * JWT-SVIDs from a real agent and the real issuer in process (helpers/real-issuer.ts): the agent
 * asks over mTLS with its gateway SVID and gets a token jose validates against the JWT keys of
 * the bundle it received; another gateway's workload is refused with the issuer's own code; the
 * JWT keys survive a power cut in the sealed store and are there with the upstream down; the
 * Workload API's cache in front of the agent serves the token while the upstream is away, until
 * its exp and not at it (virtual clock).
 */
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { AgentError } from '../../../runtime/errors.ts';
import { JwtSvidCache } from '../../../runtime/workload/jwt-svids.ts';
import { rejects } from '../../helpers/rejects.ts';
import { harness, MIN } from './helpers/harness.ts';

const TD = 'fleet.example';
const GW = `spiffe://${TD}/gateway/gw-1`;

test('real issuer: a JWT-SVID validates against the bundle; scope refused; keys kept across a power cut; cache offline until exp', async () => {
  const h = await harness({ breaker: { failures: 1000, openMs: MIN } }, { real: true });
  await h.clock.advance(0);
  assert.is(h.agent.svidSource.getX509Svid().spiffeId, GW);
  const keys = h.agent.bundleSource.jwtKeysFor(TD);
  assert.is(keys.length, 1);
  const set = createLocalJWKSet({ keys: keys.map((k) => ({ ...k.jwk, kid: k.kid })) });
  const { token } = await h.agent.requestJwtSvid(`${GW}/workload/w`, ['api']);
  const v = await jwtVerify(token, set, { audience: 'api', currentDate: new Date(h.clock.now()) });
  assert.is(v.payload.sub, `${GW}/workload/w`);
  const refused = await rejects<AgentError & { fields: { remoteCode: string } }>(
    () => h.agent.requestJwtSvid(`spiffe://${TD}/gateway/gw-2/workload/w`, ['api']),
    'ERR_UPSTREAM_REFUSED',
  );
  assert.is(refused.fields.remoteCode, 'ERR_ISSUER_JWT_SCOPE');

  // The cache in front of the agent, as the Workload API has it.
  const cache = new JwtSvidCache({
    now: () => h.agent.now(),
    fetchJwtSvid: (id, aud) => h.agent.requestJwtSvid(id, aud),
  });
  const first = await cache.get(`${GW}/workload/w`, ['api']);
  h.issuer.faults.set('*', 'down');
  await h.clock.advance(3 * MIN);
  await rejects(() => h.agent.requestJwtSvid(`${GW}/workload/w`, ['api']), 'ERR_UPSTREAM_UNREACHABLE');
  assert.is((await cache.get(`${GW}/workload/w`, ['api'])).token, first.token, 'served while away');
  await h.clock.advance(first.expiresAt - h.clock.now());
  await rejects(() => cache.get(`${GW}/workload/w`, ['api']), 'ERR_UPSTREAM_UNREACHABLE');
  assert.ok((decodeJwt(first.token).exp as number) * 1000 <= h.clock.now());

  // Power cut with the upstream still down: the JWT keys come back from the sealed store.
  const again = await h.restart();
  assert.equal(
    again.bundleSource.jwtKeysFor(TD).map((k) => k.kid),
    keys.map((k) => k.kid),
  );
  await again.stop();
});

test.run();
