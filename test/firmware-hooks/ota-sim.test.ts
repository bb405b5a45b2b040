/**
 * The OTA cycle through the CLI on the TypeScript TPM simulator (kept powered in this process and
 * served on a Unix socket, see helpers/ota-world.ts), with the real issuer and the real
 * TpmAttestor: see helpers/ota-suite.ts for the scenarios.
 */
import { suite } from 'uvu';
import { otaSuite } from './helpers/ota-suite.ts';
import { simTpm } from './helpers/ota-world.ts';

const ota = suite('ota on the TypeScript simulator');
otaSuite(ota, (dir) => simTpm(dir));
ota.run();
