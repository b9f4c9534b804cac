import { StreamError } from '../api/errors.ts';
import type { KeyId, Partitioner } from '../api/keys.ts';
import type { KeyedStateSnapshot, KeyedStateSnapshotEntry, StateMeta } from './backend.ts';
import { keyGroupOf } from './keys.ts';
import { checkKeyedSnapshotFormat, KEYED_SNAPSHOT_FORMAT_VERSION } from './state-meta.ts';

/**
 * Re-shards keyed snapshots for a new number of key groups (= partitions of the input), the offline
 * step of rescaling a job from a savepoint. Pure, and works on bytes (no serializer needed).
 *
 * Every entry of every input snapshot goes to output snapshot `keyGroupOf(keyId, newKeyGroups, partitioner)`
 * (the stage's partitioner: the one its input topics are produced with; default murmur2).
 * Each output snapshot lists every state (with the newest serializer version found), possibly with no
 * entries. Inputs disagreeing about a state's kind, serializer or TTL are refused, as is a key that
 * appears in two inputs (it cannot belong to two key groups).
 */
export function rehashKeyedSnapshots(
  snapshots: readonly KeyedStateSnapshot[],
  newKeyGroups: number,
  partitioner: Partitioner = 'murmur2',
): KeyedStateSnapshot[] {
  if (!Number.isSafeInteger(newKeyGroups) || newKeyGroups < 1) {
    throw new StreamError(
      'CONFIG_INVALID',
      `the new number of key groups must be a positive integer, got ${newKeyGroups}`,
    );
  }
  const metas = new Map<string, StateMeta>();
  snapshots.forEach((snapshot, i) => {
    checkKeyedSnapshotFormat(snapshot, `#${i}`);
    for (const { meta } of snapshot.states) {
      const seen = metas.get(meta.name);
      if (seen === undefined) {
        metas.set(meta.name, meta);
        continue;
      }
      if (seen.kind !== meta.kind || (seen.ttl === undefined) !== (meta.ttl === undefined)) {
        throw new StreamError(
          'STATE_DESCRIPTOR_CONFLICT',
          `state '${meta.name}' is a ${seen.kind} state${seen.ttl ? ' with TTL' : ''} in one snapshot and ` +
            `a ${meta.kind} state${meta.ttl ? ' with TTL' : ''} in snapshot #${i}`,
        );
      }
      if (seen.serializerId !== meta.serializerId) {
        throw new StreamError(
          'SERIALIZER_MISMATCH',
          `state '${meta.name}' was written with serializer '${seen.serializerId}' in one snapshot and ` +
            `'${meta.serializerId}' in snapshot #${i}`,
        );
      }
      if (meta.serializerVersion > seen.serializerVersion) metas.set(meta.name, meta);
    }
  });

  const groups: Map<string, [KeyId, Uint8Array][]>[] = Array.from({ length: newKeyGroups }, () => new Map());
  for (const name of metas.keys()) for (const g of groups) g.set(name, []);
  const seenKeys = new Map<string, Set<KeyId>>();
  for (const snapshot of snapshots) {
    for (const { meta, entries } of snapshot.states) {
      const keys = seenKeys.get(meta.name) ?? new Set<KeyId>();
      seenKeys.set(meta.name, keys);
      for (const [key, bytes] of entries) {
        if (keys.has(key)) {
          throw new StreamError(
            'KEY_GROUP_MISMATCH',
            `key ${JSON.stringify(key)} of state '${meta.name}' appears in two snapshots: ` +
              "the inputs are not one job's key groups, or one was restored twice",
          );
        }
        keys.add(key);
        groups[keyGroupOf(key, newKeyGroups, partitioner)]!.get(meta.name)!.push([key, bytes]);
      }
    }
  }
  return groups.map(
    (g): KeyedStateSnapshot => ({
      formatVersion: KEYED_SNAPSHOT_FORMAT_VERSION,
      states: [...metas.values()].map(
        (meta): KeyedStateSnapshotEntry => ({ meta, entries: g.get(meta.name)! }),
      ),
    }),
  );
}

/**
 * Sends every item to the key group of its key id among `newKeyGroups` under `partitioner` (for
 * per-key things kept outside keyed state, like timers `[timestamp, keyId]`). Pure; keeps the input
 * order within a group.
 */
export function splitByKeyGroup<T>(
  items: readonly T[],
  keyOf: (item: T) => KeyId,
  newKeyGroups: number,
  partitioner: Partitioner = 'murmur2',
): T[][] {
  if (!Number.isSafeInteger(newKeyGroups) || newKeyGroups < 1) {
    throw new StreamError(
      'CONFIG_INVALID',
      `the new number of key groups must be a positive integer, got ${newKeyGroups}`,
    );
  }
  const out: T[][] = Array.from({ length: newKeyGroups }, () => []);
  for (const item of items) out[keyGroupOf(keyOf(item), newKeyGroups, partitioner)]!.push(item);
  return out;
}
