/**
 * What crosses between the task thread and the producer thread (producer-thread.ts): the calls, their
 * answers, sends packed as one string of text keys and values, one buffer of byte ones and one array
 * of lengths and timestamps (moved to the thread, not copied), and errors as the fields the error
 * catalogue reads. Imports nothing but types (kafkajs's, ./producer-handover.ts's), so that the producer
 * thread loads little.
 */
import type { Message } from './kafkajs.ts';
import type { ProducerIdentity } from './producer-handover.ts';

/** The sink's sends: per topic, its messages. */
export type TopicMessages = readonly { readonly topic: string; readonly messages: readonly Message[] }[];

/**
 * A send of records without headers or explicit partitions, as it crosses to the thread: text keys
 * and values in one string, byte ones in one buffer (both moved, never copied again).
 */
export interface PackedSend {
  /** The string keys and values of every message, one after the other, in order. */
  readonly text: string;
  /** The `Buffer` keys and values, one after the other, in order (an ArrayBuffer of its own). */
  readonly bytes: Uint8Array | undefined;
  /**
   * Per message: key, value (a string's length; -1: null; -2 - n: n bytes), timestamp (NaN: none).
   */
  readonly meta: Float64Array;
  readonly topics: readonly (readonly [topic: string, count: number])[];
}

/** What an error keeps across the thread: the fields the error catalogue reads. */
export interface PlainError {
  readonly name: string;
  readonly message: string;
  readonly stack?: string;
  readonly retriable?: boolean;
  readonly type?: string;
  readonly code?: number | string;
  readonly cause?: PlainError;
  readonly errors?: readonly PlainError[];
}

export type Call =
  | { readonly op: 'create'; readonly h: number; readonly config: unknown }
  | { readonly op: 'connect' | 'disconnect' | 'commit' | 'abort'; readonly h: number }
  | {
      readonly op: 'transaction';
      readonly h: number;
      /** Take over this identity (the fence made on the task's thread) instead of InitProducerId. */
      readonly identity?: ProducerIdentity & { readonly transactionalId: string };
    }
  | { readonly op: 'send'; readonly h: number; readonly txn: boolean; readonly packed: PackedSend }
  | { readonly op: 'send'; readonly h: number; readonly txn: boolean; readonly topicMessages: TopicMessages }
  | { readonly op: 'offsets'; readonly h: number; readonly offsets: unknown };

export interface Answer {
  readonly id: number;
  readonly error?: PlainError;
  /** The producer's transaction's `isActive()` once the call settled (when it has one). */
  readonly active?: boolean;
}

/** Pack a send (undefined: a message has headers or an explicit partition: it is cloned instead). */
export function packSend(topicMessages: TopicMessages): PackedSend | undefined {
  let n = 0;
  for (const t of topicMessages) n += t.messages.length;
  const meta = new Float64Array(n * 3);
  let text = '';
  const buffers: Uint8Array[] = [];
  let byteLength = 0;
  const field = (x: unknown, i: number): boolean => {
    if (x === null || x === undefined) meta[i] = -1;
    else if (typeof x === 'string') {
      meta[i] = x.length;
      text += x;
    } else if (x instanceof Uint8Array) {
      meta[i] = -2 - x.byteLength;
      buffers.push(x);
      byteLength += x.byteLength;
    } else return false;
    return true;
  };
  let i = 0;
  for (const t of topicMessages)
    for (const m of t.messages) {
      if (m.headers !== undefined || m.partition !== undefined) return undefined;
      if (!field(m.key, i) || !field(m.value, i + 1)) return undefined;
      meta[i + 2] = m.timestamp === undefined ? Number.NaN : Number(m.timestamp);
      i += 3;
    }
  let bytes: Uint8Array | undefined;
  if (buffers.length > 0) {
    // Not from Buffer's shared pool: this ArrayBuffer is moved to the thread.
    bytes = new Uint8Array(byteLength);
    let at = 0;
    for (const b of buffers) {
      bytes.set(b, at);
      at += b.byteLength;
    }
  }
  return { text, bytes, meta, topics: topicMessages.map((t) => [t.topic, t.messages.length] as const) };
}

/** What a packed send moves to the thread instead of copying. */
export function transferList(p: PackedSend): ArrayBuffer[] {
  const list = [p.meta.buffer as ArrayBuffer];
  if (p.bytes !== undefined) list.push(p.bytes.buffer as ArrayBuffer);
  return list;
}

/** The messages of a packed send (on the producer's thread). */
export function unpackSend(p: PackedSend): { topic: string; messages: Message[] }[] {
  const { text, meta } = p;
  const bytes =
    p.bytes === undefined ? undefined : Buffer.from(p.bytes.buffer, p.bytes.byteOffset, p.bytes.byteLength);
  // ASCII text (JSON mostly is): its UTF-8 bytes at once, and each field a view of them, which
  // kafkajs copies as it is instead of measuring and encoding each string.
  const ascii = Buffer.byteLength(text, 'utf8') === text.length ? Buffer.from(text, 'latin1') : undefined;
  let at = 0;
  let byteAt = 0;
  const field = (len: number): string | Buffer | null => {
    if (len === -1) return null;
    if (len >= 0) {
      at += len;
      return ascii === undefined ? text.slice(at - len, at) : ascii.subarray(at - len, at);
    }
    const n = -2 - len;
    byteAt += n;
    return bytes!.subarray(byteAt - n, byteAt);
  };
  let i = 0;
  // Records sent together mostly share their millisecond: format each distinct timestamp once.
  let lastTs = Number.NaN;
  let lastText: string | undefined;
  return p.topics.map(([topic, n]) => {
    const messages: Message[] = new Array(n);
    for (let j = 0; j < n; j++, i += 3) {
      const key = field(meta[i]!);
      const value = field(meta[i + 1]!);
      const ts = meta[i + 2]!;
      if (!Object.is(ts, lastTs)) {
        lastTs = ts;
        lastText = Number.isNaN(ts) ? undefined : String(ts);
      }
      messages[j] = lastText === undefined ? { key, value } : { key, value, timestamp: lastText };
    }
    return { topic, messages };
  });
}

/** An error as it crosses the thread. */
export function plainError(e: unknown): PlainError {
  if (!(e instanceof Error)) return { name: 'Error', message: String(e) };
  const x = e as Error & Record<string, unknown>;
  const o: { -readonly [K in keyof PlainError]: PlainError[K] } = { name: e.name, message: e.message };
  if (e.stack !== undefined) o.stack = e.stack;
  if (typeof x.retriable === 'boolean') o.retriable = x.retriable;
  if (typeof x.type === 'string') o.type = x.type;
  if (typeof x.code === 'number' || typeof x.code === 'string') o.code = x.code;
  if (x.cause !== undefined) o.cause = plainError(x.cause);
  if (Array.isArray(x.errors)) o.errors = x.errors.map(plainError);
  return o;
}

/** The error a plain one describes (its fields on an `Error`). */
export function reviveError(p: PlainError): Error {
  const e = new Error(p.message) as Error & Record<string, unknown>;
  e.name = p.name;
  if (p.stack !== undefined) e.stack = p.stack;
  if (p.retriable !== undefined) e.retriable = p.retriable;
  if (p.type !== undefined) e.type = p.type;
  if (p.code !== undefined) e.code = p.code;
  if (p.cause !== undefined) e.cause = reviveError(p.cause);
  if (p.errors !== undefined) e.errors = p.errors.map(reviveError);
  return e;
}

/** A cloned `Buffer` arrives as a plain `Uint8Array`, which kafkajs would print as text: a `Buffer` again (no copy). */
function buffer<T>(v: T): T | Buffer {
  return v instanceof Uint8Array && !Buffer.isBuffer(v)
    ? Buffer.from(v.buffer, v.byteOffset, v.byteLength)
    : v;
}

/** The messages of a cloned send (on the producer's thread): their `Buffer`s made `Buffer`s again. */
export function unpackCloned(topicMessages: TopicMessages): { topic: string; messages: Message[] }[] {
  return topicMessages.map((t) => ({
    topic: t.topic,
    messages: t.messages.map((m) => {
      const out: Message = { ...m, key: buffer(m.key), value: buffer(m.value) };
      if (m.headers !== undefined) {
        // Defined, not assigned: a header named `__proto__` stays a header.
        const headers: NonNullable<Message['headers']> = {};
        for (const [name, h] of Object.entries(m.headers))
          Object.defineProperty(headers, name, {
            value: Array.isArray(h) ? h.map((x) => buffer(x)) : buffer(h),
            enumerable: true,
            writable: true,
            configurable: true,
          });
        out.headers = headers;
      }
      return out;
    }),
  }));
}
