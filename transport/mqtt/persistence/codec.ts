/**
 * The journal's records: keys and CBOR values, and the checks that turn an undecodable or
 * ill-shaped value into a typed `ERR_MQTT_JOURNAL_CORRUPT` instead of a broker crash.
 *
 * | key                 | value                                              |
 * |---------------------|----------------------------------------------------|
 * | `r!<topic>`         | a retained message                                 |
 * | `s!<clientId>`      | a persistent session's subscriptions               |
 * | `q!<seq>`           | one queued/in-flight outgoing message of a session |
 * | `i!<seq>`           | one inbound QoS 2 message awaiting PUBREL          |
 * | `w!<clientId>`      | the will of a persistent session                   |
 * | `p!<seq>`           | a QoS 1/2 message logged ahead of its PUBACK       |
 * | `o!<clientId>`      | the SPIFFE ID holding a persistent session's id    |
 *
 * `<seq>` is a zero-padded hex counter, so LevelDB's key order is the order of arrival.
 */
import { decode, encode } from 'cbor-x';
import { TransportError } from '../../errors.ts';

/** The fields of an aedes packet the journal keeps (MQTT 3.1.1: no properties). */
export interface StoredPacket {
  cmd: 'publish' | 'pubrel';
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
  dup: boolean;
  brokerId?: string;
  brokerCounter?: number;
  messageId?: number;
  clientId?: string;
  /** A will's owner: the SPIFFE ID of the session that set it (`wills.ts`). */
  edgewardOwner?: string;
}

export interface StoredSubscription {
  topic: string;
  qos: 0 | 1 | 2;
  rh?: number;
  rap?: boolean;
  nl?: boolean;
}

export const SEQ_DIGITS = 13;

export function seqKey(prefix: 'q!' | 'i!' | 'p!', seq: number): string {
  return prefix + seq.toString(16).padStart(SEQ_DIGITS, '0');
}

export function parseSeq(key: string): number {
  const hex = key.slice(2);
  if (!/^[0-9a-f]+$/.test(hex)) throw corrupt(key, 'sequence is not hex');
  return Number.parseInt(hex, 16);
}

/** A copy with only the kept fields (aedes' packets carry more, e.g. a write callback). */
export function packetOf(p: Partial<StoredPacket> & { cmd?: string }): StoredPacket {
  const out: StoredPacket = {
    cmd: p.cmd === 'pubrel' ? 'pubrel' : 'publish',
    topic: p.topic ?? '',
    payload: p.payload ?? Buffer.alloc(0),
    qos: p.qos ?? 0,
    retain: p.retain ?? false,
    dup: p.dup ?? false,
  };
  if (p.brokerId !== undefined) out.brokerId = p.brokerId;
  if (p.brokerCounter !== undefined) out.brokerCounter = p.brokerCounter;
  if (p.messageId !== undefined) out.messageId = p.messageId;
  if (p.clientId !== undefined) out.clientId = p.clientId;
  if (p.edgewardOwner !== undefined) out.edgewardOwner = p.edgewardOwner;
  return out;
}

export function encodeValue(value: unknown): Uint8Array {
  return encode(value);
}

function corrupt(key: string, why: string, cause?: unknown): TransportError {
  return new TransportError('ERR_MQTT_JOURNAL_CORRUPT', `journal entry ${JSON.stringify(key)}: ${why}`, {
    cause,
  });
}

function decodeAny(key: string, bytes: Uint8Array): unknown {
  try {
    return decode(bytes);
  } catch (err) {
    throw corrupt(key, 'not CBOR', err);
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
const isQos = (v: unknown): v is 0 | 1 | 2 => v === 0 || v === 1 || v === 2;
const isId = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 65535;

function checkPacket(key: string, v: unknown): StoredPacket {
  if (!isObj(v)) throw corrupt(key, 'not a packet');
  const {
    cmd,
    topic,
    payload,
    qos,
    retain,
    dup,
    brokerId,
    brokerCounter,
    messageId,
    clientId,
    edgewardOwner,
  } = v;
  if (cmd !== 'publish' && cmd !== 'pubrel') throw corrupt(key, 'bad cmd');
  if (typeof topic !== 'string') throw corrupt(key, 'bad topic');
  if (!(payload instanceof Uint8Array)) throw corrupt(key, 'bad payload');
  if (!isQos(qos) || typeof retain !== 'boolean' || typeof dup !== 'boolean') throw corrupt(key, 'bad flags');
  if (brokerId !== undefined && typeof brokerId !== 'string') throw corrupt(key, 'bad brokerId');
  if (brokerCounter !== undefined && !Number.isSafeInteger(brokerCounter))
    throw corrupt(key, 'bad brokerCounter');
  if (
    messageId !== undefined &&
    !(Number.isInteger(messageId) && (messageId as number) > 0 && (messageId as number) < 65536)
  )
    throw corrupt(key, 'bad messageId');
  if (clientId !== undefined && typeof clientId !== 'string') throw corrupt(key, 'bad clientId');
  if (edgewardOwner !== undefined && typeof edgewardOwner !== 'string') throw corrupt(key, 'bad owner');
  if (cmd === 'publish' && topic.length === 0) throw corrupt(key, 'empty topic');
  if (cmd === 'pubrel' && messageId === undefined) throw corrupt(key, 'pubrel without messageId');
  return packetOf({
    ...(v as Partial<StoredPacket>),
    payload: Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength),
  });
}

/** A queued outgoing message or an inbound QoS 2 message: the session's client id and the packet. */
export interface SessionPacket {
  readonly clientId: string;
  readonly packet: StoredPacket;
}

export function decodeSessionPacket(key: string, bytes: Uint8Array): SessionPacket {
  const v = decodeAny(key, bytes);
  if (!isObj(v) || !isId(v.clientId)) throw corrupt(key, 'no client id');
  return { clientId: v.clientId, packet: checkPacket(key, v.packet) };
}

export function decodePacket(key: string, bytes: Uint8Array): StoredPacket {
  return checkPacket(key, decodeAny(key, bytes));
}

export function decodeSubscriptions(key: string, bytes: Uint8Array): StoredSubscription[] {
  const v = decodeAny(key, bytes);
  if (!Array.isArray(v) || v.length === 0) throw corrupt(key, 'not a subscription list');
  return v.map((s: unknown) => {
    if (!isObj(s) || typeof s.topic !== 'string' || s.topic.length === 0 || !isQos(s.qos))
      throw corrupt(key, 'bad subscription');
    const out: StoredSubscription = { topic: s.topic, qos: s.qos };
    if (typeof s.rh === 'number') out.rh = s.rh;
    if (typeof s.rap === 'boolean') out.rap = s.rap;
    if (typeof s.nl === 'boolean') out.nl = s.nl;
    return out;
  });
}

export function decodeOwner(key: string, bytes: Uint8Array): string {
  const v = decodeAny(key, bytes);
  if (typeof v !== 'string' || !v.startsWith('spiffe://')) throw corrupt(key, 'not a SPIFFE ID');
  return v;
}

export { corrupt as journalCorrupt };
