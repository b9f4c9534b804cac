/**
 * Keys of keyed streams. A key is a string, a finite number, a boolean, or a JSON-shaped array or
 * object of those. Its identity in state is its *key id*: the string itself for string keys, and
 * `\u0000` + canonical JSON for the others, so `42` and `'42'` are different keys, the id is
 * reversible, and string keys hash like Kafka's default partitioner hashes string record keys.
 */
export type Key = string | number | boolean | null | readonly Key[] | { readonly [field: string]: Key };

/** The canonical, reversible id of a key. */
export type KeyId = string;

/**
 * A built-in partitioner, named as the producers' clients name it (docs/kafka.md "Partitioners"):
 * - `murmur2`: `toPositive(murmur2(key)) % partitions`: the Java client, kafkajs, librdkafka's
 *   `murmur2` / `murmur2_random`, kafka-go's `Murmur2Balancer`;
 * - `crc32`: `crc32(key) % partitions`: librdkafka's `consistent` / `consistent_random` (the default
 *   of kcat, confluent-kafka-python, -go and -dotnet, node-rdkafka), kafka-go's `CRC32Balancer`;
 * - `fnv1a`: `abs(int32(fnv1a32(key))) % partitions`: librdkafka's `fnv1a` / `fnv1a_random`, Sarama's
 *   `NewHashPartitioner` (its default) and kafka-go's `Hash`.
 */
export type PartitionerName = 'murmur2' | 'crc32' | 'fnv1a';

/**
 * A partitioner of one's own: the partition, an integer in [0, partitions), of a record whose key is
 * `keyBytes`. Must be a pure function of its arguments.
 */
export type PartitionerFunction = (keyBytes: Uint8Array, partitions: number) => number;

/**
 * The function key bytes -> partition that the producers of a topic used: a stage's key group of a
 * key is the partition this function gives it, so a keyed stream read without repartitioning finds
 * every key in the partition its producer put it in.
 */
export type Partitioner = PartitionerName | PartitionerFunction;
