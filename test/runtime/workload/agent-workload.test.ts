/**
 * The Workload API in a running agent (dev plan: TypeScript TPM simulator, in-process issuer):
 * `/v1/status` reports `workloadApi.socket`; the dev entry `dev` serves the uid running the agent
 * an SVID from the agent's own delegated CA; an entries file edited on disk is reloaded without
 * a restart and a caller that lost its entry has its stream ended with PERMISSION_DENIED; the
 * dev entry gets a JWT-SVID from the in-process issuer that validates against the JWT bundle.
 */
import { writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { adminRequest } from '../../../runtime/admin/client.ts';
import type { StatusReport } from '../../../runtime/admin/report.ts';
import { runAgent } from '../../../runtime/agent/run.ts';
import { devPlan } from '../../../runtime/cli/dev-plan.ts';
import { systemClock } from '../../../runtime/core/clock.ts';
import { MemoryLogger } from '../../../runtime/core/logger.ts';
import { cryptoRandom } from '../../../runtime/core/random.ts';
import { pythonStubs, startClient } from './harness.ts';

async function statusUntil(socket: string, done: (r: StatusReport) => boolean): Promise<StatusReport> {
  for (;;) {
    const r = await adminRequest<StatusReport>(socket, 'GET', '/v1/status');
    if (done(r)) return r;
    await new Promise((res) => setImmediate(res));
  }
}

test('dev mode: status names the socket; the dev entry gets <gateway>/workload/dev; reload ends a stream', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeward-agent-wl-'));
  const logger = new MemoryLogger();
  const p = await devPlan({
    dataDir: dir,
    clock: systemClock,
    random: cryptoRandom,
    logger,
    mqttPort: 0,
    enrollPort: 0,
  });
  const running = await runAgent(p, { logger });
  const stubs = pythonStubs(dir);
  try {
    const status = await statusUntil(running.adminSocket, (r) => r.gateway.serving && r.deviceCa !== null);
    const socket = join(dir, 'workload.sock');
    assert.equal(status.workloadApi, { socket });
    const c = startClient(stubs, socket, ['x509', '--max', '1']);
    const got = await c.next();
    assert.equal(
      got.svids?.map((s) => s.id),
      [`${status.gateway.spiffeId}/workload/dev`],
    );
    // Another uid has no entry in dev mode.
    const other = await startClient(stubs, socket, ['x509', '--max', '1'], { uid: 41003 }).next();
    assert.is(other.error, 'PERMISSION_DENIED');
    // JWT-SVIDs end to end: the agent asks the in-process issuer over mTLS; the JWT bundle is the
    // one the agent received with its identity; the agent's ValidateJWTSVID accepts the token.
    const jwt = await startClient(stubs, socket, ['jwt', '--aud', 'dev.example']).next();
    assert.is(jwt.error, undefined, jwt.details);
    const token = jwt.jwt?.[0]?.token as string;
    assert.is(jwt.jwt?.[0]?.id, `${status.gateway.spiffeId}/workload/dev`);
    const jwks = await startClient(stubs, socket, ['jwtbundles', '--max', '1']).next();
    const keys = jwks.jwks?.[`spiffe://${String(status.gateway.spiffeId).split('/')[2]}`]?.keys ?? [];
    assert.is(keys.length, 1);
    assert.is(decodeProtectedHeader(token).kid, keys[0]?.kid);
    await jwtVerify(
      token,
      createLocalJWKSet(jwks.jwks?.[Object.keys(jwks.jwks ?? {})[0] as string] as never),
      {
        audience: 'dev.example',
      },
    );
    const v = await startClient(stubs, socket, ['validate', '--aud', 'dev.example', '--token', token]).next();
    assert.is(v.validated?.id, `${status.gateway.spiffeId}/workload/dev`);
    const wrong = await startClient(stubs, socket, ['validate', '--aud', 'other', '--token', token]).next();
    assert.is(wrong.error, 'INVALID_ARGUMENT');
  } finally {
    await running.stop();
  }
});

test('an entries file edited on disk is reloaded: the stream of a caller that lost its entry ends', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeward-agent-wl-'));
  const logger = new MemoryLogger();
  const p = await devPlan({
    dataDir: dir,
    clock: systemClock,
    random: cryptoRandom,
    logger,
    mqttPort: 0,
    enrollPort: 0,
  });
  const entriesFile = join(dir, 'entries.yaml');
  writeFileSync(entriesFile, 'version: 1\nentries:\n  - name: svc\n    selectors: ["unix:uid:0"]\n');
  const socket = join(dir, 'wl', 'api.sock');
  const running = await runAgent({ ...p, workload: { socket, entriesFile } }, { logger });
  const stubs = pythonStubs(dir);
  try {
    const status = await statusUntil(running.adminSocket, (r) => r.gateway.serving && r.deviceCa !== null);
    assert.equal(status.workloadApi, { socket });
    const c = startClient(stubs, socket, ['x509']);
    assert.equal(
      (await c.next()).svids?.map((s) => s.id),
      [`${status.gateway.spiffeId}/workload/svc`],
    );
    // An invalid edit is refused and logged; the entries stay (the stream is not ended by it).
    const refused = new Promise<void>((resolve) => {
      const error = logger.error.bind(logger);
      logger.error = (msg, fields) => {
        error(msg, fields);
        if (fields?.event === 'workload.entries_invalid') resolve();
      };
    });
    writeFileSync(entriesFile, 'version: 1\nentries:\n  - name: svc\n    selectors: ["bogus"]\n');
    await refused;
    writeFileSync(entriesFile, 'version: 1\nentries:\n  - name: other\n    selectors: ["unix:uid:41004"]\n');
    const ended = await c.next();
    assert.is(ended.error, 'PERMISSION_DENIED');
    c.kill();
  } finally {
    await running.stop();
  }
});

test.run();
