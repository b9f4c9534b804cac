/**
 * kafkajs 2.2.4's producer picks a keyed record's partition with
 * `src/producer/partitioners/default/murmur2.js`: Java's murmur2 computed with kafkajs's BigInt-backed
 * `Long`, an object per multiply and per xor, about 8 of them per 4 bytes of key. In the exactly-once
 * job's CPU profile (issue 15) that hash and its `Long`s took about 7 % of the main thread. The
 * project's murmur2 (`framework` `murmur2`, 32-bit integer arithmetic, the key groups' own hash) gives
 * the same value for every key, so it takes the upstream function's place in the require cache; the
 * partitioners (`default/index.js`, the one `createPartitioner` defaults to and the one Java's client
 * agrees with) take it with `require` when they load, so this module runs before kafkajs: ./kafkajs.ts
 * imports it first. kafkajs's legacy partitioner (`legacy/murmur2.js`, a different hash) is left alone.
 * Import it for its effect.
 */
import { createRequire } from 'node:module';
import { murmur2 } from '../../../framework/core.ts';

const require = createRequire(import.meta.url);
const murmur2Path = require.resolve('kafkajs/src/producer/partitioners/default/murmur2.js');

/** kafkajs's call: `murmur2(key)`, key a Buffer or anything else as the UTF-8 of `String(key)`. */
export function kafkajsMurmur2(key: unknown): number {
  return murmur2(Buffer.isBuffer(key) ? key : Buffer.from(String(key)));
}

/** kafkajs's partitioners loaded before this module took the upstream hash. */
const preloaded = (require.cache as Record<string, unknown>)[murmur2Path] !== undefined;

/** Whether kafkajs's default partitioner hashes with `kafkajsMurmur2`. */
export function murmur2Installed(): boolean {
  const cache = require.cache as Record<string, { exports: unknown } | undefined>;
  return !preloaded && cache[murmur2Path]?.exports === kafkajsMurmur2;
}

if (!preloaded) {
  require(murmur2Path);
  const entry = (require.cache as Record<string, { exports: unknown } | undefined>)[murmur2Path];
  if (entry !== undefined) entry.exports = kafkajsMurmur2;
}
