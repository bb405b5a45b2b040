/**
 * The hooks' issuer calls across several upstream endpoints go through the agent's `Failover`
 * (runtime/upstream/failover.ts): an endpoint that cannot be reached is skipped, but a refusal
 * for cause is final — another issuer of the same fleet would say the same. Regression: each
 * hook used to try every endpoint and throw the last failure, so a refusal at the first endpoint
 * followed by an unreachable second one read as "issuer unreachable, retry later" (exit 21, for
 * ever) instead of a failed commit (exit 1).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { commit } from '../../firmware-hooks/commit.ts';
import { writeState } from '../../firmware-hooks/ota-state.ts';
import { issuerPublisher } from '../../firmware-hooks/publish.ts';
import { issuerStaging } from '../../firmware-hooks/staging.ts';
import { nullLogger } from '../../runtime/core/logger.ts';
import { AgentError, type AgentErrorCode } from '../../runtime/errors.ts';
import type { LevelDb } from '../../runtime/store/sealed-store.ts';
import type { Upstream, UpstreamEndpoint } from '../../runtime/upstream/types.ts';
import { rejects } from '../helpers/rejects.ts';

/** Endpoints that fail with the given codes (undefined: answers `{}`); records who was called. */
function upstream(codes: readonly (AgentErrorCode | undefined)[], called: string[]): Upstream {
  const endpoints = codes.map((code, i): UpstreamEndpoint => {
    const url = `https://issuer-${i}.example`;
    const call = async <T>(): Promise<T> => {
      called.push(url);
      if (code !== undefined) throw new AgentError(code, `${url}: ${code}`);
      return {} as T;
    };
    return { url, post: call, get: call };
  });
  return { endpoints, close: async () => {} };
}

test('a refusal at the first endpoint is final: commit fails (exit 1), it does not wait for the second', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeward-hook-failover-'));
  try {
    await writeState(dir, {
      format: 'edgeward-ota/1',
      phase: 'booted',
      version: '2.0',
      manifest: '{}',
      issuer: { gateway: 'gw-1', ticket: 'AAAA' },
      updatedAt: 0,
    });
    const called: string[] = [];
    await rejects(
      () =>
        commit({
          stateDir: dir,
          logger: nullLogger,
          staging: issuerStaging(upstream(['ERR_UPSTREAM_REFUSED', 'ERR_UPSTREAM_UNREACHABLE'], called)),
          db: async () => assert.unreachable('nothing to drop after a refused commit') as unknown as LevelDb,
        }),
      'ERR_HOOK_PUBLISH',
    );
    assert.equal(called, ['https://issuer-0.example']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('an unreachable endpoint is skipped; a refusal after it is what the caller sees', async () => {
  const called: string[] = [];
  const staging = issuerStaging(upstream(['ERR_UPSTREAM_UNREACHABLE', 'ERR_UPSTREAM_REFUSED'], called));
  await rejects(() => staging.end('retract', 'gw-1', 'AAAA'), 'ERR_UPSTREAM_REFUSED');
  assert.equal(called, ['https://issuer-0.example', 'https://issuer-1.example']);
});

test('publish: the first endpoint that answers ends the call; a rejection is not retried elsewhere', async () => {
  const called: string[] = [];
  await issuerPublisher(upstream(['ERR_UPSTREAM_UNAVAILABLE', undefined, undefined], called))('{}');
  assert.equal(called, ['https://issuer-0.example', 'https://issuer-1.example']);
  const refused: string[] = [];
  await rejects(
    () => issuerPublisher(upstream(['ERR_UPSTREAM_REJECTED', undefined], refused))('{}'),
    'ERR_UPSTREAM_REJECTED',
  );
  assert.equal(refused, ['https://issuer-0.example']);
});

test.run();
