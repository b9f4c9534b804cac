/**
 * A schema-registry client for the serdes: @kafkajs/confluent-schema-registry fetches and parses
 * schemas, and this class adds what a stream source needs on top:
 *
 * - Caches answered synchronously. `schemaById` returns the cached schema itself (no Promise) once it has
 *   been fetched, and concurrent misses for one id share one request. Registered ids are cached per
 *   subject and schema text. Schemas are immutable in a registry, so nothing expires.
 * - Failures classified at one place. No answer (connection refused or reset, a timeout of one attempt,
 *   HTTP 5xx, 408, 429) is retried with exponential backoff and jitter, one log line per failed attempt,
 *   until `retry.maxElapsedMs`; then `RegistryUnavailableError` (retryable). 404 for a schema id is an
 *   answer, returned as `{ status: 'not-found' }` (the record is poison). Any other refusal (401, 403,
 *   409, 422 ...) is `RegistryRequestError` at once. A schema the library cannot parse is returned as
 *   `{ status: 'unusable' }`.
 *
 * Registration and subject look-ups go to the REST API directly (fetch), not through the library's
 * `register`: that one also reads and rewrites the subject's compatibility setting, which a serializer
 * must not do.
 */
import type { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import { type Clock, systemClock } from '../../../framework/index.ts';
import { RegistryRequestError, RegistryUnavailableError } from './errors.ts';
import { type Classified, DEFAULT_RETRY_POLICY, type RetryPolicy, retrying } from './retry.ts';

export type SchemaKind = 'AVRO' | 'JSON' | 'PROTOBUF';

/** A schema instance of the library: avsc Type (Avro), ajv-backed JsonSchema, or ProtoSchema. */
export interface ParsedSchema {
  toBuffer(payload: object): Buffer;
  fromBuffer(buffer: Buffer): unknown;
}

export interface RegistrySchema {
  readonly id: number;
  readonly kind: SchemaKind;
  readonly parsed: ParsedSchema;
}

export type SchemaLookup =
  | { readonly status: 'found'; readonly schema: RegistrySchema }
  | { readonly status: 'not-found' }
  | { readonly status: 'unusable'; readonly detail: string; readonly cause: unknown };

export interface SchemaReference {
  readonly name: string;
  readonly subject: string;
  readonly version: number;
}

export interface SchemaDefinition {
  readonly kind: SchemaKind;
  /** The schema text: Avro or JSON Schema as JSON, Protobuf as a .proto file. */
  readonly schema: string;
  readonly references?: readonly SchemaReference[];
}

export interface SchemaRegistryClientOptions {
  /** Base URL of a Confluent-compatible API: `http://host:8081`, or Apicurio's `.../apis/ccompat/v7`. */
  readonly url: string;
  readonly auth?: { readonly username: string; readonly password: string };
  readonly retry?: Partial<RetryPolicy>;
  /** Time for the backoff; default the system clock. */
  readonly clock?: Clock;
  /** For the jitter; default Math.random. */
  readonly random?: () => number;
  /** One line per failed attempt; default console.warn. */
  readonly log?: (line: string) => void;
}

/** A non-2xx answer of a request made with fetch. */
class HttpStatusError extends Error {
  readonly status: number;
  constructor(status: number, detail: string) {
    super(`HTTP ${status}: ${detail}`);
    this.name = 'HttpStatusError';
    this.status = status;
  }
}

/**
 * Without an HTTP answer, the library's HTTP layer (mappersmith) reports a client-side failure as a
 * ResponseError of status 400 whose message is the Node error ("Error, status 400: connect
 * ECONNREFUSED ..."), while a real 400 carries the registry's JSON message. These are the failures that
 * mean "no answer".
 */
const NO_ANSWER =
  /Error, status 400: .*(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|EPIPE|socket hang up|Timeout \(\d+ms\))/;

function statusOf(error: unknown): number | undefined {
  if (error instanceof HttpStatusError) return error.status;
  if (error instanceof Error && error.name === 'ResponseError') {
    const status = (error as Error & { status?: unknown }).status;
    return typeof status === 'number' ? status : undefined;
  }
  return undefined;
}

function messageOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
  return `${error.message}${cause}`;
}

/** One place that says whether a registry failure is worth another attempt. */
export function classifyRegistryFailure(error: unknown): Classified {
  const status = statusOf(error);
  if (status !== undefined) {
    if (status === 400 && NO_ANSWER.test(messageOf(error))) {
      return { transient: true, why: messageOf(error).replace(/^.*Error, status 400: /, '') };
    }
    if (status >= 500 || status === 408 || status === 429) return { transient: true, why: `HTTP ${status}` };
    return { transient: false };
  }
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) {
    return { transient: true, why: 'attempt timed out' };
  }
  // fetch: "TypeError: fetch failed" with the socket error as its cause.
  if (error instanceof TypeError && error.message === 'fetch failed') {
    return { transient: true, why: messageOf(error).replace(/^fetch failed: /, '') };
  }
  return { transient: false };
}

const CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';

export class SchemaRegistryClient {
  readonly url: string;
  /** Requests made (including retries), for tests and metrics. */
  readonly stats = { schemaFetches: 0, registrations: 0, subjectLookups: 0 };
  /**
   * The library client, loaded on first use: it brings ajv, avsc, protobufjs and mappersmith (about
   * 160 modules, a third of a service's start-up CPU), which a job without a registry never needs.
   */
  #api: Promise<SchemaRegistry> | undefined;
  readonly #apiOptions: ConstructorParameters<typeof SchemaRegistry>[0];
  readonly #policy: RetryPolicy;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #log: (line: string) => void;
  readonly #authHeader: string | undefined;
  readonly #schemas = new Map<number, SchemaLookup>();
  readonly #pendingSchemas = new Map<number, Promise<SchemaLookup>>();
  readonly #ids = new Map<string, number>();
  readonly #pendingIds = new Map<string, Promise<number | undefined>>();

  constructor(options: SchemaRegistryClientOptions) {
    this.url = options.url.replace(/\/+$/, '');
    this.#policy = { ...DEFAULT_RETRY_POLICY, ...options.retry };
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#log = options.log ?? ((line) => console.warn(line));
    this.#authHeader =
      options.auth === undefined
        ? undefined
        : `Basic ${Buffer.from(`${options.auth.username}:${options.auth.password}`).toString('base64')}`;
    const attemptTimeoutMs = this.#policy.attemptTimeoutMs;
    this.#apiOptions = {
      host: this.url,
      clientId: 'kstate',
      ...(options.auth === undefined ? {} : { auth: { ...options.auth } }),
      // Retries are ours (classified, logged, on the injected clock); the library makes one attempt.
      retry: { retries: 0 },
      middlewares: [
        () => ({
          request: (request) => request.enhance({ timeout: attemptTimeoutMs }),
        }),
      ],
    };
  }

  #client(): Promise<SchemaRegistry> {
    this.#api ??= import('@kafkajs/confluent-schema-registry').then(
      (m) => new m.SchemaRegistry(this.#apiOptions),
    );
    return this.#api;
  }

  /** The schema with this id: the cached lookup itself when known, else a Promise of it. */
  schemaById(id: number): SchemaLookup | Promise<SchemaLookup> {
    const cached = this.#schemas.get(id);
    if (cached !== undefined) return cached;
    let pending = this.#pendingSchemas.get(id);
    if (pending === undefined) {
      pending = this.#fetchSchema(id).finally(() => this.#pendingSchemas.delete(id));
      this.#pendingSchemas.set(id, pending);
    }
    return pending;
  }

  /**
   * The id of `definition` under `subject`: registered (`register`, idempotent in the registry) or only
   * looked up (`lookup`: undefined when the subject does not hold it). Cached; a number when known.
   */
  idOf(
    subject: string,
    definition: SchemaDefinition,
    mode: 'register' | 'lookup',
  ): number | undefined | Promise<number | undefined> {
    const key = `${mode}\u0000${subject}\u0000${definition.kind}\u0000${definition.schema}\u0000${JSON.stringify(definition.references ?? [])}`;
    const cached = this.#ids.get(key);
    if (cached !== undefined) return cached;
    let pending = this.#pendingIds.get(key);
    if (pending === undefined) {
      const body: Record<string, unknown> = { schema: definition.schema };
      if (definition.kind !== 'AVRO') body.schemaType = definition.kind;
      if (definition.references !== undefined && definition.references.length > 0) {
        body.references = definition.references;
      }
      const path =
        mode === 'register'
          ? `/subjects/${encodeURIComponent(subject)}/versions`
          : `/subjects/${encodeURIComponent(subject)}`;
      pending = this.#requestId('POST', path, body, mode === 'register' ? 'registrations' : 'subjectLookups')
        .then((id) => {
          if (id !== undefined) this.#ids.set(key, id);
          return id;
        })
        .finally(() => this.#pendingIds.delete(key));
      this.#pendingIds.set(key, pending);
    }
    return pending;
  }

  /** The id of the latest version under `subject` (undefined when the subject does not exist); cached. */
  latestIdOf(subject: string): number | undefined | Promise<number | undefined> {
    const key = `latest\u0000${subject}`;
    const cached = this.#ids.get(key);
    if (cached !== undefined) return cached;
    let pending = this.#pendingIds.get(key);
    if (pending === undefined) {
      pending = this.#requestId(
        'GET',
        `/subjects/${encodeURIComponent(subject)}/versions/latest`,
        undefined,
        'subjectLookups',
      )
        .then((id) => {
          if (id !== undefined) this.#ids.set(key, id);
          return id;
        })
        .finally(() => this.#pendingIds.delete(key));
      this.#pendingIds.set(key, pending);
    }
    return pending;
  }

  async #fetchSchema(id: number): Promise<SchemaLookup> {
    const operation = `GET /schemas/ids/${id}`;
    let parsed: ParsedSchema;
    const api = await this.#client();
    try {
      parsed = (await this.#retrying(operation, () => {
        this.stats.schemaFetches++;
        return api.getSchema(id);
      })) as ParsedSchema;
    } catch (error) {
      if (error instanceof RegistryUnavailableError || error instanceof RegistryRequestError) throw error;
      // The registry answered, but the library could not parse or resolve the schema.
      return { status: 'unusable', detail: messageOf(error), cause: error };
    }
    if (parsed === undefined) return { status: 'not-found' };
    const entry = api.cache.getSchema(id);
    const lookup: SchemaLookup = {
      status: 'found',
      schema: { id, kind: (entry?.type ?? 'AVRO') as SchemaKind, parsed },
    };
    this.#schemas.set(id, lookup);
    return lookup;
  }

  async #requestId(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    counter: 'registrations' | 'subjectLookups',
  ): Promise<number | undefined> {
    const answer = await this.#retrying(`${method} ${path}`, async () => {
      this.stats[counter]++;
      const headers: Record<string, string> = { Accept: `${CONTENT_TYPE}, application/json` };
      if (body !== undefined) headers['Content-Type'] = CONTENT_TYPE;
      if (this.#authHeader !== undefined) headers.Authorization = this.#authHeader;
      const response = await fetch(`${this.url}${path}`, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.#policy.attemptTimeoutMs),
      });
      const text = await response.text();
      if (!response.ok) {
        let detail = text.slice(0, 500);
        try {
          detail = String((JSON.parse(text) as { message?: unknown }).message ?? detail);
        } catch {}
        throw new HttpStatusError(response.status, detail);
      }
      return JSON.parse(text) as { id?: unknown };
    });
    if (answer === undefined) return undefined;
    if (typeof answer.id !== 'number') {
      throw new RegistryRequestError({
        url: this.url,
        operation: `${method} ${path}`,
        status: 200,
        detail: 'the answer has no numeric "id"',
      });
    }
    return answer.id;
  }

  /** Retries transient failures; 404 becomes `undefined`; other refusals RegistryRequestError. */
  async #retrying<T>(operation: string, attempt: () => Promise<T>): Promise<T | undefined> {
    try {
      return await retrying(attempt, {
        policy: this.#policy,
        clock: this.#clock,
        random: this.#random,
        log: this.#log,
        operation: `${operation} at ${this.url}`,
        classify: classifyRegistryFailure,
        giveUp: ({ attempts, elapsedMs, lastError, cause }) =>
          new RegistryUnavailableError(
            { url: this.url, operation, attempts, elapsedMs, lastError },
            { cause },
          ),
      });
    } catch (error) {
      const status = statusOf(error);
      if (status === 404) return undefined;
      if (status !== undefined) {
        throw new RegistryRequestError(
          { url: this.url, operation, status, detail: messageOf(error) },
          { cause: error },
        );
      }
      throw error;
    }
  }
}
