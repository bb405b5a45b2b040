/**
 * Schema building blocks shared by the agent and issuer configs. Every object is closed
 * (`additionalProperties: false`) so a misspelt key is an error, not a silently ignored setting.
 */
import { type TObject, type TProperties, Type } from '@sinclair/typebox';

export const Closed = <T extends TProperties>(props: T, description?: string): TObject<T> =>
  Type.Object(props, { additionalProperties: false, ...(description ? { description } : {}) });

/** `30s`, `10m`, `1h`, `7d`, `250ms`. */
export const Duration = (description?: string) =>
  Type.String({ format: 'duration', ...(description ? { description } : {}) });
export const HttpsUrl = () => Type.String({ format: 'https-url' });
export const SpiffeTrustDomain = () => Type.String({ format: 'trust-domain' });
export const FilePath = (description?: string) =>
  Type.String({ minLength: 1, ...(description ? { description } : {}) });
export const Port = () => Type.Integer({ minimum: 0, maximum: 65535 });
export const LogLevel = () =>
  Type.Union([Type.Literal('debug'), Type.Literal('info'), Type.Literal('warn'), Type.Literal('error')]);
/** A TPM transport string: `device:/dev/tpmrm0`, `swtpm:host=…,port=…`, `swtpm:path=…`, `sim:DIR`. */
export const TpmTransport = () => Type.String({ format: 'tpm-transport' });

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION_RE = /^(\d+)(ms|s|m|h|d)$/;

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
