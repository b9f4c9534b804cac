/**
 * Avro, JSON Schema and Protobuf serdes in the Confluent wire format (wire.ts), with schemas from a
 * Confluent-compatible registry (registry.ts). Interoperable with Confluent's Java, Go, Python and
 * librdkafka serializers, including Protobuf's message indexes.
 *
 * Steady state is synchronous: once a schema id is cached, `deserialize` and `serialize` return values,
 * not Promises. The first record of an unknown schema id (and the first write of a subject) returns a
 * Promise while the registry is asked.
 *
 * Values: Avro records decode as avsc record instances (their fields as own properties); JSON Schema
 * as JSON.parse gives them; Protobuf as plain objects with defaults filled in, 64-bit integers and enums
 * as strings (protobufjs `toObject` with `longs: String, enums: String`), which `serialize` accepts back.
 */
import { DeserializationError, type DeserializationReason, SerializationError } from './errors.ts';
import type {
  RegistrySchema,
  SchemaDefinition,
  SchemaKind,
  SchemaLookup,
  SchemaReference,
  SchemaRegistryClient,
} from './registry.ts';
import { isPromise, type MaybePromise, type Serde } from './serde.ts';
import { readHeader, readMessageIndexes, writeHeader, writeMessageIndexes } from './wire.ts';

export interface RegistrySerdeOptions {
  readonly registry: SchemaRegistryClient;
  /**
   * The writer schema for `serialize`: Avro or JSON Schema as JSON text or an object, Protobuf as .proto
   * text. Without it, `serialize` writes with the latest version registered under the subject.
   * `deserialize` always reads with the writer's schema named by each record's schema id.
   */
  readonly schema?: string | object;
  readonly references?: readonly SchemaReference[];
  /** The subject for `serialize`; default the TopicNameStrategy, `<topic>-value` (`<topic>-key` with `isKey`). */
  readonly subject?: string | ((topic: string) => string);
  readonly isKey?: boolean;
  /**
   * Default true: register the schema under the subject on first use (idempotent in the registry).
   * false: the schema must be registered already; `serialize` only looks its id up.
   */
  readonly autoRegister?: boolean;
}

export interface ProtobufSerdeOptions extends RegistrySerdeOptions {
  /** The message type `serialize` writes, when the .proto file has several; default the first one. */
  readonly messageName?: string;
}

/** Avro records in the Confluent wire format. */
export function avroSerde<T = Record<string, unknown>>(options: RegistrySerdeOptions): Serde<T> {
  return new RegistrySerde<T>('AVRO', 'avro', options, libraryCodec);
}

/** JSON validated by a JSON Schema, in the Confluent wire format. */
export function jsonSchemaSerde<T = unknown>(options: RegistrySerdeOptions): Serde<T> {
  return new RegistrySerde<T>('JSON', 'json-schema', options, libraryCodec);
}

/** Protobuf messages in the Confluent wire format, message indexes included. */
export function protobufSerde<T = Record<string, unknown>>(options: ProtobufSerdeOptions): Serde<T> {
  return new RegistrySerde<T>('PROTOBUF', 'protobuf', options, protobufCodec(options.messageName));
}

/** How one schema kind turns a value into payload bytes (after the 5-byte header) and back. */
interface Codec {
  encode(schema: RegistrySchema, value: unknown): Buffer;
  /** Returns the value, or the reason it cannot. */
  decode(schema: RegistrySchema, body: Buffer): { ok: true; value: unknown } | DecodeFailure;
}

type DecodeFailure = { ok: false; reason: DeserializationReason; detail: string; cause?: unknown };

/** Avro and JSON Schema: the library's schema instance (avsc Type, or ajv for JSON) does the work. */
const libraryCodec: Codec = {
  encode: (schema, value) => schema.parsed.toBuffer(value as object),
  decode(schema, body) {
    try {
      return { ok: true, value: schema.parsed.fromBuffer(body) };
    } catch (cause) {
      // JSON Schema payloads that are not JSON at all are an encoding problem, not a schema mismatch.
      const reason = cause instanceof SyntaxError ? 'invalid-encoding' : 'schema-mismatch';
      return { ok: false, reason, detail: describe(cause), cause };
    }
  },
};

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const paths = (error as Error & { paths?: unknown }).paths;
  return Array.isArray(paths) && paths.length > 0
    ? `${error.message} at ${JSON.stringify(paths).slice(0, 300)}`
    : error.message;
}

class RegistrySerde<T> implements Serde<T> {
  readonly format: string;
  readonly #kind: SchemaKind;
  readonly #options: RegistrySerdeOptions;
  readonly #codec: Codec;
  readonly #definition: SchemaDefinition | undefined;

  constructor(kind: SchemaKind, format: string, options: RegistrySerdeOptions, codec: Codec) {
    this.format = format;
    this.#kind = kind;
    this.#options = options;
    this.#codec = codec;
    this.#definition =
      options.schema === undefined
        ? undefined
        : {
            kind,
            schema: typeof options.schema === 'string' ? options.schema : JSON.stringify(options.schema),
            ...(options.references === undefined ? {} : { references: options.references }),
          };
  }

  deserialize(bytes: Buffer | null, topic: string): MaybePromise<T | null> {
    if (bytes === null) return null;
    const header = readHeader(bytes);
    if (!header.ok) {
      throw new DeserializationError({
        reason: header.reason,
        format: this.format,
        topic,
        detail: header.detail,
      });
    }
    const lookup = this.#options.registry.schemaById(header.schemaId);
    if (isPromise(lookup))
      return lookup.then((found) => this.#decode(found, header.schemaId, header.body, topic));
    return this.#decode(lookup, header.schemaId, header.body, topic);
  }

  serialize(value: T | null, topic: string): MaybePromise<Buffer | null> {
    if (value === null) return null;
    const id = this.#schemaId(topic);
    if (isPromise(id)) return id.then((known) => this.#encodeWith(known, value, topic));
    return this.#encodeWith(id, value, topic);
  }

  #decode(lookup: SchemaLookup, schemaId: number, body: Buffer, topic: string): T {
    const fail = (reason: DeserializationReason, detail: string, cause?: unknown): never => {
      throw new DeserializationError(
        { reason, format: this.format, topic, detail, schemaId },
        cause === undefined ? undefined : { cause },
      );
    };
    if (lookup.status === 'not-found')
      return fail('unknown-schema-id', `schema id ${schemaId} is not in the registry (404)`);
    if (lookup.status === 'unusable') {
      return fail('unusable-schema', `schema id ${schemaId} cannot be used: ${lookup.detail}`, lookup.cause);
    }
    if (lookup.schema.kind !== this.#kind) {
      return fail(
        'schema-type-mismatch',
        `schema id ${schemaId} is a ${lookup.schema.kind} schema, not ${this.#kind}`,
      );
    }
    const decoded = this.#codec.decode(lookup.schema, body);
    if (!decoded.ok) return fail(decoded.reason, `schema id ${schemaId}: ${decoded.detail}`, decoded.cause);
    return decoded.value as T;
  }

  #subject(topic: string): string {
    const subject = this.#options.subject;
    if (typeof subject === 'function') return subject(topic);
    return subject ?? `${topic}-${this.#options.isKey === true ? 'key' : 'value'}`;
  }

  #schemaId(topic: string): MaybePromise<number> {
    const subject = this.#subject(topic);
    const registry = this.#options.registry;
    const id =
      this.#definition === undefined
        ? registry.latestIdOf(subject)
        : registry.idOf(
            subject,
            this.#definition,
            this.#options.autoRegister === false ? 'lookup' : 'register',
          );
    const check = (found: number | undefined): number => {
      if (found !== undefined) return found;
      throw new SerializationError(
        this.format,
        topic,
        this.#definition === undefined
          ? `subject ${subject} has no schema in the registry: register one, or give the serde a schema`
          : `the schema is not registered under subject ${subject}, and autoRegister is off: register it first`,
      );
    };
    return isPromise(id) ? id.then(check) : check(id);
  }

  #encodeWith(schemaId: number, value: T, topic: string): MaybePromise<Buffer> {
    const lookup = this.#options.registry.schemaById(schemaId);
    const encode = (found: SchemaLookup): Buffer => {
      if (found.status !== 'found') {
        throw new SerializationError(
          this.format,
          topic,
          found.status === 'not-found'
            ? `schema id ${schemaId} of subject ${this.#subject(topic)} is not in the registry`
            : `schema id ${schemaId} cannot be used: ${found.detail}`,
        );
      }
      if (found.schema.kind !== this.#kind) {
        throw new SerializationError(
          this.format,
          topic,
          `schema id ${schemaId} of subject ${this.#subject(topic)} is a ${found.schema.kind} schema, not ${this.#kind}`,
        );
      }
      try {
        return writeHeader(schemaId, this.#codec.encode(found.schema, value));
      } catch (cause) {
        throw new SerializationError(
          this.format,
          topic,
          `the value does not match schema id ${schemaId}: ${describe(cause)}`,
          { cause },
        );
      }
    };
    return isPromise(lookup) ? lookup.then(encode) : encode(lookup);
  }
}

// ---- Protobuf: message types found by their index path in the .proto file ----

/** The part of a protobufjs reflection object used here (duck-typed: protobufjs is the library's dependency). */
interface ProtoReflection {
  readonly name: string;
  readonly parent: ProtoReflection | null;
  readonly nestedArray?: readonly ProtoReflection[];
  readonly fields?: object;
}

interface ProtoType extends ProtoReflection {
  readonly fields: object;
  fromObject(value: object): object;
  verify(message: object): string | null;
  encode(message: object): { finish(): Uint8Array };
  decode(bytes: Uint8Array): object;
  toObject(message: object, options: object): Record<string, unknown>;
}

interface ProtoNamespace extends ProtoReflection {
  lookupType(path: string): ProtoType;
}

const TO_OBJECT = { longs: String, enums: String, defaults: true };

function isMessageType(reflection: ProtoReflection): reflection is ProtoType {
  return reflection.fields !== undefined;
}

function messageTypesIn(namespace: ProtoReflection): ProtoType[] {
  return (namespace.nestedArray ?? []).filter(isMessageType);
}

/** The library's ProtoSchema keeps its protobufjs Type in `message`. */
function protoTypeOf(schema: RegistrySchema): ProtoType {
  const message = (schema.parsed as unknown as { message?: ProtoType }).message;
  if (message === undefined || !isMessageType(message)) {
    throw new Error('the Protobuf schema instance has no message type');
  }
  return message;
}

/** The namespace of the .proto file's package: the first ancestor that is not a message. */
function fileNamespace(type: ProtoType): ProtoReflection {
  let current: ProtoReflection = type;
  while (current.parent !== null && isMessageType(current.parent)) current = current.parent;
  return current.parent ?? current;
}

function typeAt(type: ProtoType, indexes: readonly number[]): ProtoType | undefined {
  let candidates = messageTypesIn(fileNamespace(type));
  let found: ProtoType | undefined;
  for (const index of indexes) {
    found = candidates[index];
    if (found === undefined) return undefined;
    candidates = messageTypesIn(found);
  }
  return found;
}

function indexesOf(type: ProtoType): number[] {
  const path: number[] = [];
  let current: ProtoType = type;
  for (;;) {
    const parent = current.parent;
    if (parent === null) break;
    path.unshift(messageTypesIn(parent).indexOf(current));
    if (!isMessageType(parent)) break;
    current = parent;
  }
  return path;
}

function protobufCodec(messageName: string | undefined): Codec {
  const writeTypes = new WeakMap<RegistrySchema, { type: ProtoType; prefix: Buffer }>();
  const writeTypeOf = (schema: RegistrySchema) => {
    let entry = writeTypes.get(schema);
    if (entry === undefined) {
      const first = protoTypeOf(schema);
      const type =
        messageName === undefined ? first : (fileNamespace(first) as ProtoNamespace).lookupType(messageName);
      entry = { type, prefix: writeMessageIndexes(indexesOf(type)) };
      writeTypes.set(schema, entry);
    }
    return entry;
  };
  return {
    encode(schema, value) {
      const { type, prefix } = writeTypeOf(schema);
      const message = type.fromObject(value as object);
      const problem = type.verify(message);
      if (problem !== null) throw new Error(problem);
      return Buffer.concat([prefix, type.encode(message).finish()]);
    },
    decode(schema, body) {
      const read = readMessageIndexes(body);
      if (!read.ok) return read;
      let type: ProtoType | undefined;
      try {
        type = typeAt(protoTypeOf(schema), read.indexes);
      } catch (cause) {
        return { ok: false, reason: 'unusable-schema', detail: describe(cause), cause };
      }
      if (type === undefined) {
        return {
          ok: false,
          reason: 'schema-mismatch',
          detail: `message indexes [${read.indexes.join(', ')}] name no message type of the schema`,
        };
      }
      try {
        return { ok: true, value: type.toObject(type.decode(read.payload), TO_OBJECT) };
      } catch (cause) {
        return { ok: false, reason: 'schema-mismatch', detail: describe(cause), cause };
      }
    },
  };
}
