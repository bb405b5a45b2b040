/**
 * The real key factory: EC P-256 from the OS CSPRNG through OpenSSL. Only the composition root
 * and tests pass it to the agent; library code receives it as `newKey`.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';

export function newP256Key(): KeyObject {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
}
