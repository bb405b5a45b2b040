/**
 * The policy used when none is configured: a device may publish and subscribe under its own
 * subtree and nothing else; the gateway's own components are configured explicitly. Kept apart
 * from the schema so that a broker without a policy file never loads the validator.
 */
import type { Policy } from './schema.ts';

export const DEFAULT_POLICY: Policy = {
  version: 1,
  rules: [
    {
      match: '{self}/device/*',
      clientId: 'device',
      publish: ['devices/{device}/#'],
      subscribe: ['devices/{device}/#'],
      retain: ['devices/{device}/#'],
    },
  ],
};
