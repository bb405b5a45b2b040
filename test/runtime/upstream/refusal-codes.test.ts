/**
 * The simulated fleet network (sim/fleet/link.ts) turns an issuer refusal into the same agent
 * code as the product does over HTTPS: the issuer's front answers a status for the code, the
 * client maps the status back. Checked on a real loopback HTTPS front for every issuer code
 * (the record below fails to compile when runtime/errors.ts gains or loses one) and for the
 * other codes the issuer answers with.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { systemClock } from '../../../runtime/core/clock.ts';
import { EdgewardError } from '../../../runtime/core/error.ts';
import { nullLogger } from '../../../runtime/core/logger.ts';
import type { AgentError, IssuerErrorCode } from '../../../runtime/errors.ts';
import { createIssuerServer } from '../../../runtime/issuer/http.ts';
import type { Issuer } from '../../../runtime/issuer/issuer.ts';
import { httpsUpstream } from '../../../runtime/upstream/client.ts';
import { PATHS } from '../../../runtime/upstream/protocol.ts';
import { agentCodeFor } from '../../../sim/fleet/link.ts';
import { makeCert } from '../../helpers/pki.ts';
import { rejects } from '../../helpers/rejects.ts';

const ISSUER_CODES: Record<IssuerErrorCode, true> = {
  ERR_ISSUER_BAD_REQUEST: true,
  ERR_ISSUER_SERVER_NAME: true,
  ERR_ISSUER_BODY_TOO_LARGE: true,
  ERR_ISSUER_CONTENT_TYPE: true,
  ERR_ISSUER_NOT_FOUND: true,
  ERR_ISSUER_METHOD_DISABLED: true,
  ERR_ISSUER_SESSION_UNKNOWN: true,
  ERR_ISSUER_SESSION_EXPIRED: true,
  ERR_ISSUER_TOKEN_INVALID: true,
  ERR_ISSUER_NOT_REGISTERED: true,
  ERR_ISSUER_GATEWAY_DISABLED: true,
  ERR_ISSUER_CHAIN_INVALID: true,
  ERR_ISSUER_POP_INVALID: true,
  ERR_ISSUER_CREDENTIAL: true,
  ERR_ISSUER_QUOTE_INVALID: true,
  ERR_ISSUER_PCR_MISMATCH: true,
  ERR_ISSUER_CLIENT_CERT: true,
  ERR_ISSUER_REVOKED: true,
  ERR_ISSUER_RATE_LIMITED: true,
  ERR_ISSUER_REQUEST_TIMEOUT: true,
  ERR_ISSUER_MANIFEST_INVALID: true,
  ERR_ISSUER_FIRMWARE_UNKNOWN: true,
  ERR_ISSUER_FIRMWARE_TICKET: true,
  ERR_ISSUER_FIRMWARE_UNPROVEN: true,
  ERR_ISSUER_CA_INVALID: true,
  ERR_ISSUER_CA_EXPIRED: true,
  ERR_ISSUER_CA_UNKNOWN: true,
  ERR_ISSUER_CA_KEY_MISSING: true,
  ERR_ISSUER_DEVICE_SCOPE: true,
  ERR_ISSUER_JWT_SCOPE: true,
  ERR_ISSUER_JWT_KEY: true,
  ERR_ISSUER_KEY_PERMISSIONS: true,
  ERR_ISSUER_PKCS11_MODULE: true,
  ERR_ISSUER_PKCS11_OBJECT: true,
  ERR_ISSUER_PKCS11_PIN: true,
  ERR_ISSUER_PKCS11_TOKEN: true,
  ERR_ISSUER_PKCS11_URI: true,
  ERR_ISSUER_CLOSED: true,
  ERR_ISSUER_STORE_CONFLICT: true,
  ERR_ISSUER_STORE_UNAVAILABLE: true,
  ERR_ISSUER_STORE_AUTH: true,
  ERR_ISSUER_STORE_URL: true,
  ERR_ISSUER_STORE_SCHEMA_NEWER: true,
  ERR_ISSUER_STORE_NOT_MIGRATED: true,
  ERR_ISSUER_STORE_UNSUPPORTED: true,
  ERR_ISSUER_DRAINING: true,
  ERR_ISSUER_ADMIN_FORBIDDEN: true,
  ERR_ISSUER_NOT_RUNNING: true,
  ERR_ISSUER_ADMIN_TIMEOUT: true,
  ERR_ISSUER_INTERNAL: true,
};
/** Codes of other folders that reach the issuer's front from the code it calls. */
const OTHER_CODES = [
  'ERR_CSR_MALFORMED',
  'ERR_CSR_SIGNATURE',
  'ERR_CSR_WEAK_KEY',
  'ERR_DER_MALFORMED',
  'ERR_SVID_ID_INVALID',
  'ERR_SPIFFE_ID_INVALID',
  'ERR_MANIFEST_INVALID',
  'ERR_MANIFEST_UNKNOWN_KEY',
  'ERR_MANIFEST_SIGNATURE',
  'ERR_ATTEST_QUOTE_INVALID',
  'ERR_ATTEST_EK_CHAIN',
];

const now = Date.now();
const DAY = 86_400_000;
const ca = await makeCert({ subject: 'CN=root', ca: true, notBefore: now - DAY, notAfter: now + DAY });
const leaf = await makeCert({
  subject: 'CN=issuer',
  ips: ['127.0.0.1'],
  notBefore: now - DAY,
  notAfter: now + DAY,
  issuer: ca,
});

// An issuer whose attestation refuses with the code it is sent.
const refusing = {
  attestBegin: async (body: { code: string }) => {
    throw new EdgewardError(body.code, 'refused');
  },
} as unknown as Issuer;
const server = createIssuerServer(
  refusing,
  { cert: leaf.cert.toString(), key: leaf.key.export({ type: 'pkcs8', format: 'pem' }) },
  nullLogger,
);
await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
const url = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
const upstream = httpsUpstream({ endpoints: [url], ca: [ca.cert.toString()], clock: systemClock });
test.after(() => new Promise<void>((r) => server.close(() => r())));

test('the sim maps every issuer refusal to the agent code the HTTPS front and client give', async () => {
  for (const code of [...Object.keys(ISSUER_CODES), ...OTHER_CODES]) {
    const err = await rejects<AgentError>(
      () => upstream.endpoints[0]?.post(PATHS.attestBegin, { code }),
      agentCodeFor(code),
    );
    assert.is(err.fields.remoteCode, code);
  }
});

test.run();
