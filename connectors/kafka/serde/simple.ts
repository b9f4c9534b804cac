/**
 * Serdes that need no registry: UTF-8 strings, JSON, and raw bytes. All are synchronous.
 * Bytes that are not valid UTF-8 (string, JSON) or not valid JSON are a DeserializationError, never a
 * value with replacement characters.
 */
import { DeserializationError, SerializationError } from './errors.ts';
import type { Serde } from './serde.ts';

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeUtf8(bytes: Buffer, format: string, topic: string): string {
  try {
    return utf8.decode(bytes);
  } catch (cause) {
    throw new DeserializationError(
      { reason: 'invalid-encoding', format, topic, detail: `${bytes.length} bytes that are not valid UTF-8` },
      { cause },
    );
  }
}

/** UTF-8 text. */
export function stringSerde(): Serde<string> {
  return {
    format: 'string',
    serialize: (value) => (value === null ? null : Buffer.from(value, 'utf8')),
    deserialize: (bytes, topic) => (bytes === null ? null : decodeUtf8(bytes, 'string', topic)),
  };
}

/**
 * JSON text in UTF-8. Values are what JSON.parse gives: the type parameter is the caller's promise, not
 * a check (use `jsonSchemaSerde` for validated JSON).
 */
export function jsonSerde<T = unknown>(): Serde<T> {
  return {
    format: 'json',
    serialize(value, topic) {
      if (value === null) return null;
      let text: string | undefined;
      try {
        text = JSON.stringify(value);
      } catch (cause) {
        throw new SerializationError('json', topic, `JSON.stringify failed: ${(cause as Error).message}`, {
          cause,
        });
      }
      if (text === undefined) {
        throw new SerializationError('json', topic, `a ${typeof value} has no JSON form`);
      }
      return Buffer.from(text, 'utf8');
    },
    deserialize(bytes, topic) {
      if (bytes === null) return null;
      const text = decodeUtf8(bytes, 'json', topic);
      try {
        return JSON.parse(text) as T;
      } catch (cause) {
        throw new DeserializationError(
          { reason: 'invalid-encoding', format: 'json', topic, detail: (cause as Error).message },
          { cause },
        );
      }
    },
  };
}

/** The bytes as they are. */
export function bytesSerde(): Serde<Buffer> {
  return {
    format: 'bytes',
    serialize: (value) => value,
    deserialize: (bytes) => bytes,
  };
}
