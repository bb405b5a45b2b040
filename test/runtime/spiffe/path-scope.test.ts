/**
 * Path scoping under a delegated CA (issue 14 item 2): a leaf signed by a gateway's delegated CA
 * is admitted only as `<CA ID>/device/<x>`, or as exactly `<CA ID>` (the gateway's local server
 * identity) where a server is verified, with serverAuth and without clientAuth. Never as a
 * client; `<CA ID>/workload/<x>` (issue 18, the Workload API's SVIDs) as client or server. Each
 * case through both verifier entry points.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { OID_CLIENT_AUTH, OID_SERVER_AUTH } from '../../../runtime/spiffe/cert-facts.ts';
import { SvidVerifier, type VerifyOptions, verifyX509Svid } from '../../../runtime/spiffe/verify.ts';
import { buildPki, type Issued } from '../../helpers/pki.ts';
import { rejects } from '../../helpers/rejects.ts';

const NOW = Date.UTC(2026, 0, 1);
const pki = await buildPki({ now: NOW });
const gwId = pki.gateway.id;
const asServer: VerifyOptions = { now: NOW, bundle: pki.bundle, purpose: 'server' };
const asClient: VerifyOptions = { now: NOW, bundle: pki.bundle };

/** The same verdict from `verifyX509Svid`, `verifyDer` and `verifyCerts` (cached twice). */
async function refused(who: Issued, opts: VerifyOptions, code: string): Promise<void> {
  await rejects(() => verifyX509Svid(who.chain, opts), code);
  const v = new SvidVerifier();
  for (let i = 0; i < 2; i++) {
    await rejects(
      () =>
        v.verifyDer(
          who.chain.map((c) => c.raw),
          opts,
        ),
      code,
    );
    await rejects(() => v.verifyCerts(who.chain, opts), code);
  }
}

test('the gateway server identity (exactly the CA ID, serverAuth only) is admitted where a server is verified', async () => {
  const server = await pki.underCa();
  const ok = verifyX509Svid(server.chain, asServer);
  assert.is(ok.spiffeId, gwId);
  assert.is(ok.signerId, gwId);
  const v = new SvidVerifier();
  assert.is(
    v.verifyDer(
      server.chain.map((c) => c.raw),
      asServer,
    ).spiffeId,
    gwId,
  );
  assert.is(v.verifyCerts(server.chain, asServer).spiffeId, gwId);
});

test('the server identity is never admitted as a client (what the broker verifies)', async () => {
  // serverAuth only: the EKU check refuses it first.
  await refused(await pki.underCa(), asClient, 'ERR_SVID_INVALID');
  // Even with clientAuth added, the CA ID itself is out of a client's scope.
  await refused(
    await pki.underCa({ eku: [OID_SERVER_AUTH, OID_CLIENT_AUTH] }),
    asClient,
    'ERR_SVID_PATH_SCOPE',
  );
});

test('as a server, the CA ID needs serverAuth and no clientAuth: both EKUs or none are refused', async () => {
  await refused(
    await pki.underCa({ eku: [OID_SERVER_AUTH, OID_CLIENT_AUTH] }),
    asServer,
    'ERR_SVID_PATH_SCOPE',
  );
  await refused(await pki.underCa({ eku: null }), asServer, 'ERR_SVID_PATH_SCOPE');
});

test('another gateway’s CA cannot sign this gateway’s server identity', async () => {
  await refused(await pki.underCa({ by: pki.otherCa }), asServer, 'ERR_SVID_PATH_SCOPE');
});

test('workloads under the CA are admitted as client and as server (issue 18)', async () => {
  const id = `${gwId}/workload/w1`;
  const leaf = await pki.underCa({ id, eku: [OID_SERVER_AUTH, OID_CLIENT_AUTH] });
  assert.is(verifyX509Svid(leaf.chain, asClient).spiffeId, id);
  assert.is(verifyX509Svid(leaf.chain, asServer).spiffeId, id);
});

test('other paths under the CA are not admitted (reserved), as client or server', async () => {
  for (const id of [
    `${gwId}/workload`,
    `${gwId}/workload/a/b`,
    `${gwId}/gateway`,
    `${gwId}/device`,
    `${gwId}/device/a/b`,
  ]) {
    await refused(
      await pki.underCa({ id, eku: [OID_SERVER_AUTH, OID_CLIENT_AUTH] }),
      asClient,
      'ERR_SVID_PATH_SCOPE',
    );
    await refused(await pki.underCa({ id, eku: [OID_SERVER_AUTH] }), asServer, 'ERR_SVID_PATH_SCOPE');
  }
});

test('devices under the CA are still admitted as clients', async () => {
  const dev = await pki.device('sensor-1');
  assert.is(verifyX509Svid(dev.chain, asClient).spiffeId, `${gwId}/device/sensor-1`);
});

test.run();
