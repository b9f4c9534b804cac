import { StreamError } from '../api/errors.ts';
import type { Key, Partitioner, PartitionerFunction, PartitionerName } from '../api/keys.ts';

/**
 * Partitioners: the function key bytes -> partition a topic's producers used, which is a keyed
 * stage's key -> key group function (docs/kafka.md "Partitioners"). The built-ins are bit-exact
 * copies of the clients' own (checked against kcat on a broker by connectors/kafka/test/source/partitioner.test.ts):
 *
 * | name | partition of key bytes `k` among `n` | clients |
 * | --- | --- | --- |
 * | `murmur2` | `toPositive(murmur2(k)) % n` | Java (`BuiltInPartitioner.partitionForKey`), kafkajs, librdkafka `murmur2[_random]` |
 * | `crc32` | `crc32(k) % n` (unsigned) | librdkafka `consistent[_random]`: kcat, confluent-kafka-python/-go/-dotnet, node-rdkafka |
 * | `fnv1a` | `abs(int32(fnv1a32(k))) % n` | librdkafka `fnv1a[_random]`, Sarama `NewHashPartitioner`, kafka-go `Hash` |
 *
 * Keyless records are spread by every client (the `_random` variants, Java's sticky partitioner), and
 * librdkafka's `consistent_random` spreads empty keys too: a keyed stage never hashes a missing key
 * (its key comes from the key selector), so this matters only when the selected key is the empty string.
 */

/** The built-in partitioners, in the order a diagnosis lists them. */
export const PARTITIONER_NAMES: readonly PartitionerName[] = ['murmur2', 'crc32', 'fnv1a'];

/** Who uses each built-in, for messages. */
const USED_BY: Readonly<Record<PartitionerName, string>> = {
  murmur2: "the Java client's and kafkajs's default",
  crc32: "librdkafka's default: kcat, confluent-kafka-python/-go/-dotnet, node-rdkafka",
  fnv1a: "librdkafka's fnv1a, Sarama's and kafka-go's hash partitioner",
};

/**
 * Kafka's `Utils.murmur2`: 32-bit MurmurHash2, seed 0x9747b28c, as a signed 32-bit integer (Java `int`).
 */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  const m = 0x5bd1e995;
  const r = 24;
  let h = (0x9747b28c ^ length) | 0;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k = data[i4]! | (data[i4 + 1]! << 8) | (data[i4 + 2]! << 16) | (data[i4 + 3]! << 24);
    k = Math.imul(k, m);
    k ^= k >>> r;
    k = Math.imul(k, m);
    h = Math.imul(h, m);
    h ^= k;
  }
  const tail = length & ~3;
  const rest = length & 3;
  if (rest > 0) {
    // Kafka's switch falls through: case 3, then case 2, then case 1.
    if (rest === 3) h ^= data[tail + 2]! << 16;
    if (rest >= 2) h ^= data[tail + 1]! << 8;
    h ^= data[tail]!;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

/** Kafka's `Utils.toPositive`: clears the sign bit (not `Math.abs`, which fails on MIN_VALUE). */
export function toPositive(n: number): number {
  return n & 0x7fffffff;
}

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

/**
 * CRC-32 (IEEE 802.3, reflected, as zlib's `crc32` and librdkafka's `rd_crc32`), unsigned.
 */
export function crc32(data: Uint8Array): number {
  let c = -1;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

/** 32-bit FNV-1a (offset basis 0x811c9dc5, prime 0x01000193), as a signed 32-bit integer (Go's `int32(Sum32())`). */
export function fnv1a(data: Uint8Array): number {
  let h = 0x811c9dc5 | 0;
  for (let i = 0; i < data.length; i++) h = Math.imul(h ^ data[i]!, 0x01000193);
  return h;
}

const BUILT_IN: Readonly<Record<PartitionerName, PartitionerFunction>> = {
  murmur2: (k, n) => toPositive(murmur2(k)) % n,
  crc32: (k, n) => crc32(k) % n,
  // librdkafka's rd_fnv1a negates a negative int32 (INT32_MIN stays 2^31 as uint32), then takes the
  // unsigned remainder; Sarama takes the signed remainder and negates it: the same partition.
  fnv1a: (k, n) => Math.abs(fnv1a(k)) % n,
};

/** Whether `p` names a built-in partitioner. */
export function isPartitionerName(p: unknown): p is PartitionerName {
  return typeof p === 'string' && Object.hasOwn(BUILT_IN, p);
}

/**
 * Check a partitioner given in options: a built-in name or a function. Throws CONFIG_INVALID naming
 * `where` and the allowed values.
 */
export function checkPartitioner(p: unknown, where: string): Partitioner {
  if (isPartitionerName(p) || typeof p === 'function') return p as Partitioner;
  throw new StreamError(
    'CONFIG_INVALID',
    `${where}: partitioner is ${JSON.stringify(p) ?? String(p)}; allowed: ${PARTITIONER_NAMES.map((n) => `'${n}'`).join(', ')} or a function (keyBytes, partitions) => partition (docs/kafka.md "Partitioners")`,
  );
}

/**
 * The partition function of `p`. A function of one's own is checked on every call: a result that is
 * not an integer in [0, partitions) throws CONFIG_INVALID.
 */
export function partitionerFunction(p: Partitioner): PartitionerFunction {
  if (typeof p === 'string') {
    const f = BUILT_IN[p];
    if (f === undefined) checkPartitioner(p, 'partitioner');
    return f;
  }
  return (k, n) => {
    const g = p(k, n);
    if (!Number.isInteger(g) || g < 0 || g >= n) {
      throw new StreamError(
        'CONFIG_INVALID',
        `partitioner ${partitionerName(p)} returned ${String(g)} for ${n} partitions: it must return an integer in [0, ${n})`,
      );
    }
    return g;
  };
}

/**
 * The name recorded for `p` in checkpoints and savepoints: a built-in's name, or `custom` (with the
 * function's name, `custom:<name>`, when it has one). Only built-in names can be resolved again
 * without the job (`partitionerFromName`).
 */
export function partitionerName(p: Partitioner): string {
  if (typeof p === 'string') return p;
  return p.name ? `custom:${p.name}` : 'custom';
}

/**
 * The partitioner a recorded name stands for: a built-in; `murmur2` when nothing was recorded
 * (snapshots from before partitioners were recorded hashed with murmur2); undefined for a custom one.
 */
export function partitionerFromName(name: string | undefined): PartitionerName | undefined {
  if (name === undefined) return 'murmur2';
  return isPartitionerName(name) ? name : undefined;
}

/** The partition every built-in partitioner gives `keyBytes` among `partitions`. */
export function builtInPartitions(keyBytes: Uint8Array, partitions: number): Record<PartitionerName, number> {
  return {
    murmur2: BUILT_IN.murmur2(keyBytes, partitions),
    crc32: BUILT_IN.crc32(keyBytes, partitions),
    fnv1a: BUILT_IN.fnv1a(keyBytes, partitions),
  };
}

/** What a keyed operator found: a key whose key group is not the partition its record came in. */
export interface WrongPartition {
  readonly operator: string;
  /** The source the record came from, when known. */
  readonly source: string | undefined;
  readonly key: Key;
  readonly keyBytes: Uint8Array;
  /** The partition the record came in (the task's). */
  readonly partition: number;
  readonly partitions: number;
  /** The stage's partitioner and the key group it gives the key. */
  readonly partitioner: Partitioner;
  readonly keyGroup: number;
}

/**
 * The KEY_GROUP_MISMATCH error for a record in the wrong partition, with a diagnosis: which
 * built-in partitioners would have put the key where it is (the producers' partitioner, most
 * likely: set it on the source), or, when none would, that the record was placed explicitly or by
 * another partitioner, or that the input is not keyed by this key (repartition it).
 */
export function wrongPartitionError(w: WrongPartition): StreamError {
  const source = w.source === undefined ? 'the source' : `source '${w.source}'`;
  const key = JSON.stringify(w.key);
  const shown = key.length > 100 ? `${key.slice(0, 100)}...` : key;
  const at = builtInPartitions(w.keyBytes, w.partitions);
  const here = PARTITIONER_NAMES.filter((n) => at[n] === w.partition);
  const diagnosis =
    here.length > 0
      ? `Partition ${w.partition} is where ${here.map((n) => `${n} (${USED_BY[n]})`).join(' and ')} puts it: if the producers key these records by this key, set partitioner: '${here[0]}' on ${source}.`
      : `No built-in partitioner puts it there (${PARTITIONER_NAMES.map((n) => `${n}: ${at[n]}`).join(', ')}): the record was written into an explicit partition or by another partitioner (give ${source} a partitioner function), or the input is not keyed by this key.`;
  return new StreamError(
    'KEY_GROUP_MISMATCH',
    `operator '${w.operator}': key ${shown} came in partition ${w.partition} of ${w.partitions} of ${source}, but the stage's partitioner (${partitionerName(w.partitioner)}) puts it in partition ${w.keyGroup}. ${diagnosis} If the input is not keyed by this key, repartition it: keyBy(selector, { repartition: true }). A record that really is in the wrong partition is a record error for the source's policy (Kafka sources: onWrongPartition 'skip' or 'dead-letter'); see docs/kafka.md "Partitioners".`,
  );
}
