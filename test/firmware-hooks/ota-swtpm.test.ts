/**
 * The OTA cycle through the CLI on a real swtpm, with the real issuer and the real TpmAttestor:
 * see helpers/ota-suite.ts for the scenarios.
 */
import { suite } from 'uvu';
import { otaSuite } from './helpers/ota-suite.ts';
import { swtpmTpm } from './helpers/ota-world.ts';

const ota = suite('ota on swtpm');
otaSuite(ota, () => swtpmTpm());
ota.run();
