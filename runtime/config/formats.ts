/**
 * The custom string formats of the config schemas (durations, https URLs, trust domains, TPM
 * transports), kept free of TypeBox and ajv so that the agent's precompiled validator
 * (`agent-validator.gen.ts`) and `parseDuration` load nothing heavy at start-up.
 *
 * @example
 * ```ts
 * parseDuration('10m'); // 600000
 * FORMATS.duration.test('250ms'); // true
 * ```
 */

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION_RE = /^(\d+)(ms|s|m|h|d)$/;
const MAX_DEVICE_SVID_TTL_MS = 30 * 86_400_000;
/** rotation.rootSwitchWindow: well inside the 30 days the issuer keeps a previous root. */
const MAX_ROOT_SWITCH_WINDOW_MS = 7 * 86_400_000;

/** Parse a validated duration string into milliseconds. */
export function parseDuration(text: string): number {
  const m = DURATION_RE.exec(text);
  if (m === null) throw new TypeError(`not a duration: ${text}`);
  return Number(m[1]) * (UNITS[m[2] as string] as number);
}

/** The custom formats and the phrase each one's error message uses. */
export const FORMATS: Record<string, { test: (s: string) => boolean; phrase: string }> = {
  duration: {
    test: (s) => DURATION_RE.test(s),
    phrase: 'must be a duration such as 250ms, 30s, 10m, 1h or 7d',
  },
  'device-svid-ttl': {
    // broker.deviceSvidTtl: > 0 and at most 30 days (device-signer.ts MAX_DEVICE_TTL_MS).
    test: (s) => DURATION_RE.test(s) && parseDuration(s) > 0 && parseDuration(s) <= MAX_DEVICE_SVID_TTL_MS,
    phrase: 'must be a duration > 0 and at most 30d, such as 1h',
  },
  'root-switch-window': {
    test: (s) => DURATION_RE.test(s) && parseDuration(s) <= MAX_ROOT_SWITCH_WINDOW_MS,
    phrase: 'must be a duration of at most 7d, such as 1h (0s: at once)',
  },
  'https-url': {
    test: (s) => {
      try {
        const u = new URL(s);
        return u.protocol === 'https:' && u.hostname !== '' && u.username === '' && u.password === '';
      } catch {
        return false;
      }
    },
    phrase: 'must be https URL',
  },
  'trust-domain': {
    test: (s) => /^[a-z0-9._-]+$/.test(s) && s.length <= 255,
    phrase: 'must be a SPIFFE trust domain name (lowercase letters, digits, ".", "-", "_")',
  },
  'tpm-transport': {
    test: (s) => /^(device:\/.+|swtpm:(host=[^,]+,port=\d+|path=\/.+)|sim:.+)$/.test(s),
    phrase: 'must be a TPM transport: device:/dev/tpmrm0, swtpm:host=H,port=P, swtpm:path=SOCK or sim:DIR',
  },
};

/** The format tests by name, in the shape ajv (and its standalone code) calls them. */
export const FORMAT_TESTS: Record<string, (s: string) => boolean> = Object.fromEntries(
  Object.entries(FORMATS).map(([name, f]) => [name, f.test]),
);

/** String length in Unicode code points, as JSON Schema's minLength/maxLength count it. */
export function ucs2length(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}
