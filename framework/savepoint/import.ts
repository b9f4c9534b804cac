import { isStreamError, StreamError } from '../api/errors.ts';
import type { KeyId, Partitioner } from '../api/keys.ts';
import type { Serializer } from '../api/serializer.ts';
import type { OperatorSnapshot } from '../runtime/operators/types.ts';
import { TASK_SNAPSHOT_FORMAT } from '../runtime/snapshot-io.ts';
import type { KeyedStateSnapshot, StateMeta } from '../state/backend.ts';
import { keyGroupOf, keyId } from '../state/keys.ts';
import {
  OPERATOR_SNAPSHOT_FORMAT_VERSION,
  type OperatorStateSnapshot,
  redistributeOperatorState,
} from '../state/operator-state.ts';
import { partitionerFromName, partitionerName } from '../state/partitioners.ts';
import { builtinSerializer } from '../state/serializers.ts';
import { KEYED_SNAPSHOT_FORMAT_VERSION } from '../state/state-meta.ts';
import { mapKeyOf, storedValueCodec } from '../state/value-codec.ts';
import type { SavepointFiles } from './files.ts';
import { fromJsonValue } from './json-values.ts';
import {
  type KeyedManifestState,
  type ManifestState,
  misfit,
  NDJSON_FORMAT,
  NDJSON_VERSION,
  type NdjsonManifest,
  type OperatorManifestState,
} from './manifest.ts';
import type { StageSavepointContent } from './savepoint-io.ts';

/**
 * Build savepoint contents from NDJSON files, in a directory or an object-store prefix (files.ts):
 * the inverse of `exportSavepoint`, Flink's State Processor API bootstrap. `savepoint.json` says which file holds which state and how to encode
 * it; each stage gets `partitions(stage)` tasks, keyed rows going to the key group of their key.
 *
 * Refused with SAVEPOINT_DATA_INVALID, naming the file (and line): a manifest that is not one; a
 * `.ndjson` file the manifest does not describe, or a described file that is missing; an operator or
 * state not in `known` (when given); a row that is not JSON, lacks a field of its kind, has a key that
 * is not a key, a value of another shape than the manifest's `valueType`, a value its serializer
 * refuses, or a key (or map entry, time-indexed version, or broadcast key) given twice. A manifest of another version is
 * SNAPSHOT_FORMAT_UNSUPPORTED. Split operator list state is spread over the tasks in file order
 * (contiguous ranges); union state goes whole to every task; broadcast state to every task. The
 * result has no timers, source positions or committables: sources start where they start without
 * a checkpoint.
 */
export async function importNdjson(
  files: SavepointFiles,
  o: {
    /** The partition count of each stage; `exported` is the manifest's. */
    partitions: (stage: string, exported: number) => number;
    /** Operators (uid -> state names, keyed as `<name>`) the job is known to have; others are refused. */
    known?: ReadonlyMap<string, ReadonlySet<string> | undefined>;
    /**
     * A stage's partitioner. Default: the manifest's `partitioner` of the stage (absent: murmur2); a
     * stage whose manifest names a function (`custom...`) needs it given here.
     */
    partitioner?: (stage: string) => Partitioner | undefined;
  },
): Promise<{ manifest: NdjsonManifest; stages: StageSavepointContent[] }> {
  const manifest = await readManifest(files);
  const present = (await files.list()).filter((f) => f.endsWith('.ndjson'));
  const described = new Set(manifest.states.map((s) => s.file));
  const unknownFile = present.find((f) => !described.has(f));
  if (unknownFile !== undefined) {
    throw invalid(
      `${files.describe(unknownFile)}: savepoint.json does not describe this file; add an entry to its "states" (file, stage, operator, state, type, kind or mode, serializer) or remove the file`,
    );
  }
  for (const s of manifest.states) {
    if (!present.includes(s.file))
      throw invalid(`${files.describe('savepoint.json')}: state file ${s.file} is missing`);
    if (o.known) {
      if (!o.known.has(s.operator)) {
        throw invalid(
          `${files.describe(s.file)}: unknown operator '${s.operator}'; the job's operators are ${[...o.known.keys()].join(', ')}`,
        );
      }
      const states = o.known.get(s.operator);
      if (states && !states.has(s.state)) {
        throw invalid(
          `${files.describe(s.file)}: operator '${s.operator}' has no state '${s.state}'; its states are ${[...states].join(', ') || '(none)'}`,
        );
      }
    }
  }
  const stages: StageSavepointContent[] = [];
  for (const st of manifest.stages) {
    const n = o.partitions(st.stage, st.partitions);
    if (!Number.isSafeInteger(n) || n < 1)
      throw new StreamError(
        'CONFIG_INVALID',
        `partitions of stage ${st.stage} must be a positive integer, got ${n}`,
      );
    const partitioner = o.partitioner?.(st.stage) ?? partitionerFromName(st.partitioner);
    if (partitioner === undefined) {
      throw invalid(
        `${files.describe('savepoint.json')}: stage ${st.stage} is keyed by a partitioner function (${st.partitioner}): import it from code with importSavepointFromDirectory(..., { partitioner }), or name a built-in partitioner (murmur2, crc32, fnv1a) in "stages"`,
      );
    }
    const keyed: { meta: StateMeta; entries: [KeyId, Uint8Array][] }[][] = Array.from(
      { length: n },
      () => [],
    );
    const operators: Record<string, OperatorSnapshot>[] = Array.from({ length: n }, () => ({}));
    for (const s of manifest.states.filter((x) => x.stage === st.stage)) {
      if (s.type === 'keyed') {
        const meta: StateMeta = {
          name: `${s.operator}/${s.state}`,
          kind: s.kind,
          serializerId: s.serializer,
          serializerVersion: s.serializerVersion,
          ...(s.ttl ? { ttl: s.ttl } : {}),
        };
        const groups = await readKeyedFile(files, s.file, s, meta, n, partitioner);
        groups.forEach((entries, p) => {
          keyed[p]!.push({ meta, entries });
        });
      } else {
        const elements = await readOperatorFile(files, s.file, s);
        const one: OperatorStateSnapshot = {
          formatVersion: OPERATOR_SNAPSHOT_FORMAT_VERSION,
          states: [
            {
              name: s.state,
              mode: s.mode,
              serializerId: s.serializer,
              serializerVersion: s.serializerVersion,
              elements,
            },
          ],
        };
        redistributeOperatorState([one], n).forEach((snap, p) => {
          operators[p]![s.operator] ??= {};
          const op = operators[p]![s.operator]!;
          op.operatorState = {
            formatVersion: OPERATOR_SNAPSHOT_FORMAT_VERSION,
            states: [...(op.operatorState?.states ?? []), ...snap.states],
          };
        });
      }
    }
    stages.push({
      stage: st.stage,
      partitioner: partitionerName(partitioner),
      tasks: keyed.map((states, p) => ({
        keyed: { formatVersion: KEYED_SNAPSHOT_FORMAT_VERSION, states } satisfies KeyedStateSnapshot,
        operators: { format: TASK_SNAPSHOT_FORMAT, operators: operators[p]!, inflight: [] },
        channels: [],
      })),
    });
  }
  return { manifest, stages };
}

function invalid(message: string, cause?: unknown): StreamError {
  return new StreamError('SAVEPOINT_DATA_INVALID', message, cause === undefined ? undefined : { cause });
}

const KINDS = new Set(['value', 'list', 'map', 'reducing', 'aggregating', 'timeIndexed']);
const MODES = new Set(['split', 'union', 'broadcast']);

async function readManifest(files: SavepointFiles): Promise<NdjsonManifest> {
  const path = files.describe('savepoint.json');
  const notThere = (why: string, cause?: unknown) =>
    new StreamError(
      'CHECKPOINT_NOT_FOUND',
      `${path} ${why}: --from must be a directory or s3:// prefix written by 'kstate savepoint export', or one with such a manifest`,
      cause === undefined ? undefined : { cause },
    );
  let text: string | undefined;
  try {
    text = await files.readText('savepoint.json');
  } catch (e) {
    // The store's own errors (no such bucket, refused, unreachable) say what they are.
    if (isStreamError(e)) throw e;
    throw notThere(`cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, e);
  }
  if (text === undefined) throw notThere('does not exist');
  let m: NdjsonManifest;
  try {
    m = JSON.parse(text) as NdjsonManifest;
  } catch (e) {
    throw invalid(`${path} is not JSON: ${(e as Error).message}`, e);
  }
  if (m?.format !== NDJSON_FORMAT)
    throw invalid(`${path} is not a savepoint manifest: "format" must be "${NDJSON_FORMAT}"`);
  if (m.version !== NDJSON_VERSION) {
    throw new StreamError(
      'SNAPSHOT_FORMAT_UNSUPPORTED',
      `${path} has version ${JSON.stringify(m.version)}; this build reads version ${NDJSON_VERSION}`,
    );
  }
  if (!Array.isArray(m.stages) || !Array.isArray(m.states))
    throw invalid(`${path}: "stages" and "states" must be arrays`);
  m.stages.forEach((s, i) => {
    if (s?.partitioner !== undefined && typeof s.partitioner !== 'string')
      throw invalid(`${path}: stages[${i}].partitioner must be a partitioner name (murmur2, crc32, fnv1a)`);
  });
  const stages = new Set(m.stages.map((s) => s?.stage));
  m.states.forEach((s: ManifestState, i) => {
    const where = `${path}: states[${i}]`;
    for (const f of ['file', 'stage', 'operator', 'state', 'serializer'] as const)
      if (typeof s?.[f] !== 'string' || s[f] === '')
        throw invalid(`${where}.${f} must be a non-empty string`);
    if (!stages.has(s.stage)) throw invalid(`${where}.stage '${s.stage}' is not one of "stages"`);
    if (!Number.isSafeInteger(s.serializerVersion) || s.serializerVersion < 0)
      throw invalid(`${where}.serializerVersion must be a non-negative integer`);
    if (s.type === 'keyed') {
      if (!KINDS.has(s.kind))
        throw invalid(`${where}.kind is ${JSON.stringify(s.kind)}; allowed: ${[...KINDS].join(', ')}`);
    } else if (s.type === 'operator') {
      if (!MODES.has(s.mode))
        throw invalid(`${where}.mode is ${JSON.stringify(s.mode)}; allowed: ${[...MODES].join(', ')}`);
    } else {
      throw invalid(
        `${where}.type is ${JSON.stringify((s as { type: unknown }).type)}; allowed: keyed, operator`,
      );
    }
    if (!s.serializer.startsWith('user:') && !builtinSerializer(s.serializer))
      throw invalid(`${where}.serializer '${s.serializer}' is unknown; allowed: msgpack, json, user:<name>`);
  });
  const names = m.states.map((s) => s.file);
  const dup = names.find((f, i) => names.indexOf(f) !== i);
  if (dup !== undefined) throw invalid(`${path}: file ${dup} is described twice`);
  return m;
}

/** Each non-blank line of `file` parsed as a JSON object, with its line number. */
async function* rows(
  files: SavepointFiles,
  file: string,
): AsyncGenerator<{ line: number; row: Record<string, unknown> }> {
  const path = files.describe(file);
  let line = 0;
  for await (const text of files.readLines(file)) {
    line++;
    if (text.trim() === '') continue;
    let row: unknown;
    try {
      row = JSON.parse(text);
    } catch (e) {
      throw invalid(`${path}:${line}: not JSON (${(e as Error).message})`, e);
    }
    if (row === null || typeof row !== 'object' || Array.isArray(row))
      throw invalid(`${path}:${line}: a row must be a JSON object`);
    yield { line, row: row as Record<string, unknown> };
  }
}

function field(path: string, line: number, row: Record<string, unknown>, name: string): unknown {
  if (!(name in row)) throw invalid(`${path}:${line}: the row has no "${name}"`);
  return row[name];
}

function decode(path: string, line: number, json: unknown, what: string): unknown {
  try {
    return fromJsonValue(json, what);
  } catch (e) {
    throw invalid(`${path}:${line}: ${(e as Error).message}`, e);
  }
}

function base64(path: string, line: number, row: Record<string, unknown>): Uint8Array {
  const b = field(path, line, row, 'bytes');
  if (typeof b !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(b))
    throw invalid(
      `${path}:${line}: "bytes" must be base64 (a state of a user serializer is imported as its bytes)`,
    );
  return new Uint8Array(Buffer.from(b, 'base64'));
}

function ttlOf(path: string, line: number, row: Record<string, unknown>): number {
  const ts = decode(path, line, field(path, line, row, 'ttl'), 'ttl');
  if (typeof ts !== 'number' || Number.isNaN(ts) || ts === Number.POSITIVE_INFINITY)
    throw invalid(`${path}:${line}: "ttl" must be a timestamp (ms), or {"$number": "-Infinity"}`);
  return ts;
}

/** One serialize call, so that a value the serializer refuses is reported at its line. */
function check(path: string, line: number, s: Serializer<unknown>, v: unknown, what: string): void {
  try {
    s.serialize(v);
  } catch (e) {
    throw invalid(
      `${path}:${line}: the ${what} cannot be written with serializer '${s.id}': ${(e as Error).message}`,
      e,
    );
  }
}

async function readKeyedFile(
  files: SavepointFiles,
  file: string,
  s: KeyedManifestState,
  meta: StateMeta,
  partitions: number,
  partitioner: Partitioner,
): Promise<[KeyId, Uint8Array][][]> {
  const path = files.describe(file);
  const serializer = builtinSerializer(s.serializer);
  const ttl = s.ttl !== undefined;
  const stored = new Map<KeyId, unknown>();
  const raw = new Map<KeyId, Uint8Array>();
  const firstLine = new Map<KeyId, number>();
  for await (const { line, row } of rows(files, file)) {
    const key = decode(path, line, field(path, line, row, 'key'), 'key');
    let id: KeyId;
    try {
      id = keyId(key as Parameters<typeof keyId>[0]);
    } catch (e) {
      throw invalid(`${path}:${line}: "key" is not a key: ${(e as Error).message}`, e);
    }
    const again = (what: string) =>
      invalid(
        `${path}:${line}: ${what} ${JSON.stringify(row.key)} is given twice (first on line ${firstLine.get(id)})`,
      );
    if (!serializer) {
      if (raw.has(id)) throw again('key');
      raw.set(id, base64(path, line, row));
      firstLine.set(id, line);
      continue;
    }
    const json = field(path, line, row, 'value');
    if (s.kind === 'list') {
      if (!Array.isArray(json) || json.length === 0)
        throw invalid(
          `${path}:${line}: "value" of list state '${s.state}' must be a non-empty array of elements`,
        );
      json.forEach((e, i) => {
        const m = misfit(e, s.valueType, `value[${i}]`);
        if (m) throw invalid(`${path}:${line}: ${m} (state '${s.state}', valueType in savepoint.json)`);
      });
      if (stored.has(id)) throw again('key');
      const items = json.map((e, i) => decode(path, line, e, `value[${i}]`));
      for (const e of items) check(path, line, serializer, e, 'element');
      let value: unknown[] = items;
      if (ttl) {
        const ts = field(path, line, row, 'ttl');
        if (!Array.isArray(ts) || ts.length !== items.length)
          throw invalid(
            `${path}:${line}: "ttl" of a list state with TTL must have one timestamp per element`,
          );
        value = items.map((v, i) => ({ v, ts: ttlOf(path, line, { ttl: ts[i] }) }));
      }
      stored.set(id, value);
      firstLine.set(id, line);
      continue;
    }
    const m = misfit(json, s.valueType);
    if (m) throw invalid(`${path}:${line}: ${m} (state '${s.state}', valueType in savepoint.json)`);
    const v = decode(path, line, json, 'value');
    if (s.kind === 'timeIndexed') {
      const time = decode(path, line, field(path, line, row, 'time'), 'time');
      if (typeof time !== 'number' || !Number.isFinite(time))
        throw invalid(
          `${path}:${line}: "time" of time-indexed state '${s.state}' must be a finite number (ms)`,
        );
      check(path, line, serializer, v, 'value');
      const versions = (stored.get(id) as Map<number, unknown> | undefined) ?? new Map<number, unknown>();
      if (versions.has(time))
        throw invalid(`${path}:${line}: key ${JSON.stringify(row.key)} has two versions at time ${time}`);
      versions.set(time, v);
      stored.set(id, versions);
      if (!firstLine.has(id)) firstLine.set(id, line);
      continue;
    }
    if (s.kind === 'map') {
      const mk = decode(path, line, field(path, line, row, 'mapKey'), 'mapKey');
      check(path, line, serializer, [mk, v], 'map entry');
      let mapKey: unknown;
      try {
        mapKey = mapKeyOf(mk, meta.name);
      } catch (e) {
        throw invalid(`${path}:${line}: "mapKey" is not a map key: ${(e as Error).message}`, e);
      }
      const map = (stored.get(id) as Map<unknown, unknown> | undefined) ?? new Map<unknown, unknown>();
      if (map.has(mapKey))
        throw invalid(
          `${path}:${line}: map entry ${JSON.stringify(row.key)} / ${JSON.stringify(row.mapKey)} is given twice`,
        );
      map.set(mapKey, ttl ? { v, ts: ttlOf(path, line, row) } : v);
      stored.set(id, map);
      if (!firstLine.has(id)) firstLine.set(id, line);
      continue;
    }
    if (v === undefined && !ttl)
      throw invalid(
        `${path}:${line}: "value" of ${s.kind} state '${s.state}' is undefined: leave the key out instead`,
      );
    check(path, line, serializer, v, 'value');
    if (stored.has(id)) throw again('key');
    stored.set(id, ttl ? { v, ts: ttlOf(path, line, row) } : v);
    firstLine.set(id, line);
  }
  const groups: [KeyId, Uint8Array][][] = Array.from({ length: partitions }, () => []);
  if (!serializer) {
    for (const [id, bytes] of raw) groups[keyGroupOf(id, partitions, partitioner)]!.push([id, bytes]);
    return groups;
  }
  const codec = storedValueCodec(meta, serializer);
  for (const [id, entry] of stored) {
    let value = entry;
    if (s.kind === 'timeIndexed') {
      const versions = [...(entry as Map<number, unknown>)].sort((a, b) => a[0] - b[0]);
      value = { t: versions.map(([t]) => t), v: versions.map(([, v]) => v) };
    }
    let bytes: Uint8Array;
    try {
      bytes = codec.encode(value);
    } catch (e) {
      throw invalid(
        `${path}:${firstLine.get(id)}: state '${s.state}' key ${JSON.stringify(id)} cannot be encoded: ${(e as Error).message}`,
        e,
      );
    }
    groups[keyGroupOf(id, partitions, partitioner)]!.push([id, bytes]);
  }
  return groups;
}

async function readOperatorFile(
  files: SavepointFiles,
  file: string,
  s: OperatorManifestState,
): Promise<Uint8Array[]> {
  const path = files.describe(file);
  const serializer = builtinSerializer(s.serializer);
  const out: Uint8Array[] = [];
  const keys = new Map<unknown, number>();
  for await (const { line, row } of rows(files, file)) {
    if (!serializer) {
      out.push(base64(path, line, row));
      continue;
    }
    const json = field(path, line, row, 'value');
    const m = misfit(json, s.valueType);
    if (m) throw invalid(`${path}:${line}: ${m} (state '${s.state}', valueType in savepoint.json)`);
    const v = decode(path, line, json, 'value');
    if (s.mode === 'broadcast') {
      const k = decode(path, line, field(path, line, row, 'key'), 'key');
      let mk: unknown;
      try {
        mk = mapKeyOf(k, s.state);
      } catch (e) {
        throw invalid(`${path}:${line}: "key" is not a map key: ${(e as Error).message}`, e);
      }
      if (keys.has(mk))
        throw invalid(
          `${path}:${line}: broadcast key ${JSON.stringify(row.key)} is given twice (first on line ${keys.get(mk)})`,
        );
      keys.set(mk, line);
      check(path, line, serializer, [k, v], 'entry');
      out.push(serializer.serialize([k, v]));
    } else {
      check(path, line, serializer, v, 'element');
      out.push(serializer.serialize(v));
    }
  }
  return out;
}
