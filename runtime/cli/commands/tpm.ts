/**
 * `edgeward tpm`: TPM diagnostics for operators, and for cross-checking edgeward's TPM client with
 * tpm2-tools.
 *
 *   edgeward tpm info  --tpm SPEC
 *   edgeward tpm ek    --tpm SPEC --out DIR
 *   edgeward tpm quote --tpm SPEC --pcrs sha256:0,1,2,7 --nonce HEX --out DIR
 *
 * `quote` writes quote.msg (TPMS_ATTEST), quote.sig (TPMT_SIGNATURE), quote.pcrs (tpm2-tools'
 * format) and ak.pub.pem, so that
 * `tpm2_checkquote -u ak.pub.pem -m quote.msg -s quote.sig -f quote.pcrs -q NONCE -g sha256` verifies.
 * The AK is edgeward's endorsement-hierarchy AK (the one the agent attests with).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { execute } from '../../../attestors/tpm/client/execute.ts';
import { activeBanks, listHandles, tpmProperties } from '../../../attestors/tpm/client/helpers.ts';
import { GetCapability } from '../../../attestors/tpm/commands/capability.ts';
import { publicKeyOf } from '../../../attestors/tpm/crypto/name.ts';
import { findEks } from '../../../attestors/tpm/ek.ts';
import { quotePcrs, withAk } from '../../../attestors/tpm/quote.ts';
import { tpm2ToolsPcrFile } from '../../../attestors/tpm/tools-format.ts';
import { openTransport } from '../../../attestors/tpm/transport/open.ts';
import type { TpmTransport } from '../../../attestors/tpm/transport/transport.ts';
import { EK_NV, HASHES, TPM_CAP, TPM_PT } from '../../../attestors/tpm/wire/constants.ts';
import { parsePcrSelection } from '../../../attestors/tpm/wire/pcr-selection.ts';
import { parsePublic } from '../../../attestors/tpm/wire/public.ts';
import { systemClock } from '../../core/clock.ts';
import { type CliIo, type Command, parseFlags, required, UsageError } from '../command.ts';

const HELP = `Usage: edgeward tpm (info | ek | quote) --tpm SPEC [options]

  edgeward tpm info  --tpm SPEC
  edgeward tpm ek    --tpm SPEC --out DIR
  edgeward tpm quote --tpm SPEC --pcrs sha256:0,1,2,7 --nonce HEX --out DIR

SPEC selects the TPM: device:/dev/tpmrm0, swtpm:host=127.0.0.1,port=2321, swtpm:path=SOCK, sim:DIR.

info   manufacturer, firmware, algorithms, active PCR banks, EK types present
ek     writes ek-<template>.pub.pem and ek-<template>.crt.der for every certified EK
quote  quotes the PCRs with edgeward's AK; writes quote.msg, quote.sig, quote.pcrs, ak.pub.pem for
       tpm2_checkquote -u ak.pub.pem -m quote.msg -s quote.sig -f quote.pcrs -q NONCE -g sha256`;

const ascii = (v: number | undefined): string =>
  v === undefined
    ? ''
    : Buffer.from([v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff])
        .toString('latin1')
        .replace(/[^\x20-\x7e]/g, '');

async function open(spec: string): Promise<TpmTransport> {
  return openTransport(
    spec,
    { sim: async (dir) => (await import('../../../sim/tpm/index.ts')).openSimTransport(dir) },
    { clock: systemClock },
  );
}

async function info(t: TpmTransport, io: CliIo): Promise<void> {
  const p = await tpmProperties(t);
  const fw1 = p.get(TPM_PT.FIRMWARE_VERSION_1) ?? 0;
  const fw2 = p.get(TPM_PT.FIRMWARE_VERSION_2) ?? 0;
  const algs = await execute(t, GetCapability, { capability: TPM_CAP.ALGS, property: 0, propertyCount: 128 });
  const algList = algs.capabilityData.capability === TPM_CAP.ALGS ? algs.capabilityData.algs : [];
  const nv = new Set(await listHandles(t, 0x01000000));
  const eks = [
    [EK_NV.RSA2048_CERT, 'L-1 RSA-2048'],
    [EK_NV.ECC_P256_CERT, 'L-2 ECC P-256'],
    [EK_NV.ECC_P384_H3_CERT, 'H-3 ECC P-384'],
  ].filter(([i]) => nv.has(i as number));
  io.out(`manufacturer: ${ascii(p.get(TPM_PT.MANUFACTURER))}`);
  io.out(
    `vendor: ${[TPM_PT.VENDOR_STRING_1, TPM_PT.VENDOR_STRING_2, TPM_PT.VENDOR_STRING_3, TPM_PT.VENDOR_STRING_4].map((k) => ascii(p.get(k))).join('')}`,
  );
  io.out(`firmware: ${fw1.toString(16).padStart(8, '0')}${fw2.toString(16).padStart(8, '0')}`);
  io.out(`algorithms: ${algList.map((a) => `0x${a.alg.toString(16).padStart(4, '0')}`).join(' ')}`);
  io.out(
    `pcr banks: ${(await activeBanks(t)).map((h) => HASHES[h]?.name ?? `0x${h.toString(16)}`).join(' ')}`,
  );
  io.out(
    `ek certificates: ${eks.length === 0 ? 'none' : eks.map(([i, n]) => `${n} (nv 0x${(i as number).toString(16)})`).join(', ')}`,
  );
}

async function ek(t: TpmTransport, out: string, io: CliIo): Promise<void> {
  await mkdir(out, { recursive: true });
  for (const e of await findEks(t)) {
    const pem = publicKeyOf(parsePublic(e.public)).export({ type: 'spki', format: 'pem' }) as string;
    await writeFile(join(out, `ek-${e.template}.pub.pem`), pem);
    if (e.certificate !== undefined) await writeFile(join(out, `ek-${e.template}.crt.der`), e.certificate);
    io.out(`ek ${e.template}: ${e.certificate !== undefined ? 'certified' : 'no certificate'}`);
  }
}

async function quote(t: TpmTransport, pcrs: string, nonceHex: string, out: string, io: CliIo): Promise<void> {
  if (!/^([0-9a-fA-F]{2}){1,64}$/.test(nonceHex))
    throw new UsageError('tpm quote: --nonce must be 1..64 bytes of hex');
  const selection = parsePcrSelection(pcrs);
  const nonce = Buffer.from(nonceHex, 'hex');
  const q = await withAk(t, async (ak) => ({ ...(await quotePcrs(t, ak, nonce, selection)), ak: ak.public }));
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'quote.msg'), q.quote);
  await writeFile(join(out, 'quote.sig'), q.signature);
  await writeFile(join(out, 'quote.pcrs'), tpm2ToolsPcrFile(selection, q.pcrValues));
  await writeFile(
    join(out, 'ak.pub.pem'),
    publicKeyOf(parsePublic(q.ak)).export({ type: 'spki', format: 'pem' }),
  );
  await writeFile(join(out, 'ak.pub.tpmt'), q.ak);
  io.out(`quote of ${pcrs} written to ${out}`);
}

export const command: Command = {
  name: 'tpm',
  summary: 'TPM diagnostics: info, EK export, quotes that tpm2_checkquote verifies',
  help: HELP,
  async run(argv, io) {
    const [sub, ...rest] = argv;
    if (sub !== 'info' && sub !== 'ek' && sub !== 'quote')
      throw new UsageError(`tpm: expected info, ek or quote${sub === undefined ? '' : `, not '${sub}'`}`);
    const { values } = parseFlags(
      rest,
      {
        tpm: { type: 'string' },
        out: { type: 'string' },
        pcrs: { type: 'string' },
        nonce: { type: 'string' },
      },
      { command: `tpm ${sub}` },
    );
    const spec = required(values.tpm, 'tpm', `tpm ${sub}`);
    const out = sub === 'info' ? '' : resolve(io.cwd, required(values.out, 'out', `tpm ${sub}`));
    const pcrs = sub === 'quote' ? required(values.pcrs, 'pcrs', 'tpm quote') : '';
    const nonce = sub === 'quote' ? required(values.nonce, 'nonce', 'tpm quote') : '';
    const t = await open(spec);
    try {
      if (sub === 'info') await info(t, io);
      else if (sub === 'ek') await ek(t, out, io);
      else await quote(t, pcrs, nonce, out, io);
    } finally {
      await t.close();
    }
    return 0;
  },
};
