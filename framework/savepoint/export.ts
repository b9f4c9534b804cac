import { StreamError } from '../api/errors.ts';
import type { KeyedStateSnapshotEntry } from '../state/backend.ts';
import { keyFromId } from '../state/keys.ts';
import type { OperatorStateSnapshotEntry } from '../state/operator-state.ts';
import { builtinSerializer } from '../state/serializers.ts';
import { storedValueCodec, type TtlValue, userKeyOf } from '../state/value-codec.ts';
import type { SavepointFiles } from './files.ts';
import { toJsonValue } from './json-values.ts';
import {
  fileSegment,
  type ManifestState,
  NDJSON_FORMAT,
  NDJSON_VERSION,
  type NdjsonManifest,
  ShapeInference,
} from './manifest.ts';
import type { JobSavepoint, StageSavepoint } from './savepoint-io.ts';

/**
 * Export a savepoint as NDJSON into `files` (a directory or an object-store prefix: files.ts):
 * `<operator>/<state>.ndjson`, one JSON object per line, and `savepoint.json` (the manifest), written
 * last, so an export without it is incomplete. `files` must be empty (CONFIG_INVALID otherwise).
 * Rows (values through `toJsonValue`):
 *
 * | state | one row per | row |
 * | --- | --- | --- |
 * | keyed value, reducing, aggregating | key | `{"key", "value", "keyGroup"}` |
 * | keyed list | key | `{"key", "value": [elements], "keyGroup"}` |
 * | keyed map | map entry | `{"key", "mapKey", "value", "keyGroup"}` |
 * | keyed time-indexed | version | `{"key", "time", "value", "keyGroup"}` |
 * | operator list (split, union) | element | `{"task", "value"}` |
 * | broadcast | entry (task 0's copy) | `{"key", "value"}` |
 *
 * With TTL, keyed rows carry `"ttl"`: the timestamp the entry's age counts from (for lists, one per
 * element). `keyGroup` is the key's group at the savepoint's partition count (the partition of the task
 * that holds it); the manifest names each stage's partitioner. States written by a user
 * serializer cannot be decoded here: each key's (or element's) bytes are written as `"bytes"`
 * (base64) instead of a value, and import takes them back unchanged. Timers, source positions and
 * sink committables are not exported.
 */
export async function exportSavepoint(
  savepoint: JobSavepoint,
  files: SavepointFiles,
): Promise<NdjsonManifest> {
  await checkExportTarget(files);
  const states: ManifestState[] = [];
  for (const stage of savepoint.stages) {
    const uids = [...new Set(stage.tasks.flatMap((t) => Object.keys(t.operators.operators)))];
    for (const { meta, parts } of keyedStates(stage)) {
      const { operator, state } = splitName(meta.meta.name, uids);
      const file = `${fileSegment(operator)}/${fileSegment(state)}.ndjson`;
      const shape = new ShapeInference();
      const rows = await writeRows(files, file, keyedRows(meta, parts, shape));
      states.push({
        file,
        stage: stage.stage,
        operator,
        state,
        type: 'keyed',
        kind: meta.meta.kind,
        ...(meta.meta.ttl ? { ttl: meta.meta.ttl } : {}),
        serializer: meta.meta.serializerId,
        serializerVersion: meta.meta.serializerVersion,
        rows,
        ...(shape.shape ? { valueType: shape.shape } : {}),
      });
    }
    for (const uid of uids.sort()) {
      const perTask = stage.tasks.map((t) => t.operators.operators[uid]?.operatorState?.states ?? []);
      const names = [...new Set(perTask.flat().map((s) => s.name))].sort();
      for (const name of names) {
        const entries = perTask.map((ss) => ss.find((s) => s.name === name));
        const first = entries.find((e) => e !== undefined)!;
        const file = `${fileSegment(uid)}/${fileSegment(name)}.ndjson`;
        const shape = new ShapeInference();
        const rows = await writeRows(files, file, operatorRows(uid, entries, shape));
        states.push({
          file,
          stage: stage.stage,
          operator: uid,
          state: name,
          type: 'operator',
          mode: first.mode,
          serializer: first.serializerId,
          serializerVersion: Math.max(...entries.map((e) => e?.serializerVersion ?? 0)),
          rows,
          ...(shape.shape ? { valueType: shape.shape } : {}),
        });
      }
    }
  }
  const manifest: NdjsonManifest = {
    format: NDJSON_FORMAT,
    version: NDJSON_VERSION,
    jobId: savepoint.jobId,
    savepoint: savepoint.name,
    stages: savepoint.stages.map((s) => ({
      stage: s.stage,
      partitions: s.partitions,
      partitioner: s.partitioner ?? 'murmur2',
    })),
    states,
  };
  await files.write('savepoint.json', [`${JSON.stringify(manifest, null, 2)}\n`]);
  return manifest;
}

/** CONFIG_INVALID unless `files` is empty: an export never mixes with other files. */
export async function checkExportTarget(files: SavepointFiles): Promise<void> {
  if (!(await files.isEmpty())) {
    throw new StreamError(
      'CONFIG_INVALID',
      `export target ${files.location} is not empty: export into a new or empty directory or object-store prefix`,
    );
  }
}

/** The operator uid a keyed state name `<uid>/<name>` belongs to: the longest known uid prefix. */
function splitName(full: string, uids: readonly string[]): { operator: string; state: string } {
  const uid = uids.filter((u) => full.startsWith(`${u}/`)).sort((a, b) => b.length - a.length)[0];
  if (uid !== undefined) return { operator: uid, state: full.slice(uid.length + 1) };
  const i = full.indexOf('/');
  return i > 0 ? { operator: full.slice(0, i), state: full.slice(i + 1) } : { operator: '_', state: full };
}

/** Each keyed state's parts, with the partition (= key group) of the task each part is from. */
function keyedStates(
  stage: StageSavepoint,
): { meta: KeyedStateSnapshotEntry; parts: (KeyedStateSnapshotEntry & { keyGroup: number })[] }[] {
  const byName = new Map<string, (KeyedStateSnapshotEntry & { keyGroup: number })[]>();
  stage.tasks.forEach((t, p) => {
    for (const s of t.keyed.states)
      byName.set(s.meta.name, [...(byName.get(s.meta.name) ?? []), { ...s, keyGroup: p }]);
  });
  return [...byName.values()].map((parts) => ({
    meta: parts.reduce((a, b) => (b.meta.serializerVersion > a.meta.serializerVersion ? b : a)),
    parts,
  }));
}

function* keyedRows(
  state: KeyedStateSnapshotEntry,
  parts: readonly (KeyedStateSnapshotEntry & { keyGroup: number })[],
  shape: ShapeInference,
): Generator<unknown> {
  const meta = state.meta;
  const serializer = builtinSerializer(meta.serializerId);
  const ttl = meta.ttl !== undefined;
  for (const part of parts) {
    const codec = serializer ? storedValueCodec(part.meta, serializer) : undefined;
    for (const [id, bytes] of part.entries) {
      const head = { key: toJsonValue(keyFromId(id)) };
      // The task's partition: every key of a task's state is in its key group (under the stage's
      // partitioner, whichever it is).
      const keyGroup = part.keyGroup;
      if (!codec) {
        yield { ...head, bytes: Buffer.from(bytes).toString('base64'), keyGroup };
        continue;
      }
      const stored = codec.decode(bytes, id);
      if (meta.kind === 'list') {
        const items = stored as unknown[];
        const value = items.map((e) => toJsonValue(ttl ? (e as TtlValue<unknown>).v : e));
        for (const v of value) shape.add(v);
        yield {
          ...head,
          value,
          keyGroup,
          ...(ttl ? { ttl: items.map((e) => toJsonValue((e as TtlValue<unknown>).ts)) } : {}),
        };
      } else if (meta.kind === 'timeIndexed') {
        const { t, v } = stored as { t: number[]; v: unknown[] };
        for (let i = 0; i < t.length; i++) {
          const value = toJsonValue(v[i]);
          shape.add(value);
          yield { ...head, time: toJsonValue(t[i]), value, keyGroup };
        }
      } else if (meta.kind === 'map') {
        for (const [mk, e] of stored as Map<unknown, unknown>) {
          const value = toJsonValue(ttl ? (e as TtlValue<unknown>).v : e);
          shape.add(value);
          yield {
            ...head,
            mapKey: toJsonValue(userKeyOf(mk)),
            value,
            keyGroup,
            ...(ttl ? { ttl: toJsonValue((e as TtlValue<unknown>).ts) } : {}),
          };
        }
      } else {
        const value = toJsonValue(ttl ? (stored as TtlValue<unknown>).v : stored);
        shape.add(value);
        yield {
          ...head,
          value,
          keyGroup,
          ...(ttl ? { ttl: toJsonValue((stored as TtlValue<unknown>).ts) } : {}),
        };
      }
    }
  }
}

function* operatorRows(
  uid: string,
  perTask: readonly (OperatorStateSnapshotEntry | undefined)[],
  shape: ShapeInference,
): Generator<unknown> {
  for (const [task, entry] of perTask.entries()) {
    if (!entry) continue;
    // Broadcast state: every task holds the same map; task 0's copy is the state.
    if (entry.mode === 'broadcast' && perTask.findIndex((e) => e !== undefined) !== task) continue;
    const serializer = builtinSerializer(entry.serializerId);
    for (const bytes of entry.elements) {
      if (!serializer) {
        yield entry.mode === 'broadcast'
          ? { bytes: Buffer.from(bytes).toString('base64') }
          : { task, bytes: Buffer.from(bytes).toString('base64') };
        continue;
      }
      let decoded: unknown;
      try {
        decoded = serializer.deserialize(bytes);
      } catch (e) {
        throw new StreamError(
          'CHECKPOINT_CORRUPT',
          `operator state '${entry.name}' of operator '${uid}': an element does not decode with '${entry.serializerId}'`,
          { cause: e },
        );
      }
      if (entry.mode === 'broadcast') {
        const [k, v] = decoded as [unknown, unknown];
        const value = toJsonValue(v);
        shape.add(value);
        yield { key: toJsonValue(k), value };
      } else {
        const value = toJsonValue(decoded);
        shape.add(value);
        yield { task, value };
      }
    }
  }
}

/** Write one JSON line per row, in chunks of 4096 rows; returns the number of rows. */
async function writeRows(files: SavepointFiles, file: string, rows: Iterable<unknown>): Promise<number> {
  let n = 0;
  function* chunks(): Generator<string> {
    let buf: string[] = [];
    for (const row of rows) {
      buf.push(JSON.stringify(row));
      n++;
      if (buf.length >= 4096) {
        yield `${buf.join('\n')}\n`;
        buf = [];
      }
    }
    if (buf.length > 0) yield `${buf.join('\n')}\n`;
  }
  await files.write(file, chunks());
  return n;
}
