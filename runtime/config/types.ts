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

// Moved to formats.ts (no TypeBox there, so the agent's start-up loads none); re-exported here.
export { FORMATS, parseDuration } from './formats.ts';
