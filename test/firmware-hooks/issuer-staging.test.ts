/**
 * The issuer's per-gateway firmware acceptance (runtime/issuer/firmware.ts): which reference
 * values a gateway's quotes may match before, during and after an update, and the typed refusals
 * of staging, commit and retract. The end-to-end behaviour (a downgrade no longer attests, a
 * retracted version no longer attests) runs against the real issuer in ota-swtpm/ota-sim.
 */
import { createHash } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  checkTicket,
  commitStaged,
  manifestsFor,
  retractStaged,
  stageVersion,
} from '../../runtime/issuer/firmware.ts';
import type { GatewayRecord, ManifestRecord } from '../../runtime/issuer/records.ts';
import { rejects } from '../helpers/rejects.ts';

const m = (version: string): ManifestRecord => ({ version, bank: 'sha256', pcrs: {}, addedAt: 0 });
const ALL = [m('1.0'), m('2.0'), m('3.0')];
const gw: GatewayRecord = {
  name: 'gw-1',
  disabled: false,
  method: 'tpm',
  createdAt: 0,
  maxNotAfter: 0,
  firmware: '1.0',
};
const ticket = Buffer.alloc(32, 7);
const hash = createHash('sha256').update(ticket).digest();
const versions = (g: GatewayRecord | undefined): string[] => manifestsFor(g, ALL).map((x) => x.version);

test('a gateway never updated through the hooks accepts every published version', () => {
  assert.equal(versions(undefined), ['1.0', '2.0', '3.0']);
  assert.equal(versions(gw), ['1.0', '2.0', '3.0']);
});

test('staging pins the gateway to what it runs plus the staged version; commit keeps only the new one', () => {
  const staged = stageVersion(gw, '2.0', ALL, hash, 5);
  assert.equal(versions(staged), ['1.0', '2.0']);
  assert.is(checkTicket(staged, ticket), '2.0');
  const proven = { ...staged, firmware: '2.0' };
  const committed = commitStaged(proven, ticket);
  assert.equal(versions(committed), ['2.0']);
  assert.is(committed.firmwareStaged, undefined);
});

test('retract drops the staged version and keeps what was accepted', () => {
  const staged = stageVersion({ ...gw, firmwareAccepted: ['2.0'], firmware: '2.0' }, '3.0', ALL, hash, 5);
  assert.equal(versions(staged), ['2.0', '3.0']);
  assert.equal(versions(retractStaged(staged, ticket)), ['2.0']);
});

test('typed refusals: unknown version, wrong or missing ticket, commit before the gateway proved the version', async () => {
  await rejects(() => stageVersion(gw, '9.9', ALL, hash, 5), 'ERR_ISSUER_FIRMWARE_UNKNOWN');
  const staged = stageVersion(gw, '2.0', ALL, hash, 5);
  await rejects(() => checkTicket(staged, Buffer.alloc(32, 8)), 'ERR_ISSUER_FIRMWARE_TICKET');
  await rejects(() => checkTicket(staged, Buffer.alloc(3)), 'ERR_ISSUER_FIRMWARE_TICKET');
  await rejects(() => retractStaged(gw, ticket), 'ERR_ISSUER_FIRMWARE_TICKET');
  await rejects(() => commitStaged(staged, ticket), 'ERR_ISSUER_FIRMWARE_UNPROVEN');
});

test.run();
