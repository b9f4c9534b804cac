import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { runInThisContext } from 'node:vm';
import './kafkajs.ts';
import { kafkajsMurmur2, murmur2Installed } from './producer-murmur2.ts';

const require = createRequire(import.meta.url);
const path = require.resolve('kafkajs/src/producer/partitioners/default/murmur2.js');
/** kafkajs 2.2.4's default murmur2 as it is (its file, evaluated apart from the require cache). */
const upstream = (() => {
  const module = { exports: undefined as unknown };
  const wrapper = runInThisContext(`(function (module, exports, require) {${readFileSync(path, 'utf8')}\n})`);
  wrapper(module, module.exports, createRequire(path));
  return module.exports as (key: unknown) => number;
})();

test("the partition hash is kafkajs's (Java's murmur2) for string and Buffer keys of every length", () => {
  let seed = 5;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const keys: unknown[] = ['', 'a', 'ab', 'abc', 'abcd', 'k17', 'user-1234', 'ключ', '鍵🔑', 12345];
  for (let i = 0; i < 3000; i++) {
    const bytes = Buffer.from(
      Array.from({ length: Math.floor(random() * 40) }, () => Math.floor(random() * 256)),
    );
    keys.push(bytes, `k${Math.floor(random() * 1e6)}`);
  }
  for (const k of keys) assert.equal(kafkajsMurmur2(k), upstream(k), `key ${String(k)}`);
});

test("kafkajs's default partitioner hashes with it (installed before kafkajs loaded)", () => {
  assert.equal(murmur2Installed(), true);
  const partitioner = require('kafkajs/src/producer/partitioners/default/index.js')();
  const partitionMetadata = Array.from({ length: 7 }, (_, i) => ({ partitionId: i, leader: 0 }));
  for (const key of ['k1', 'k2', 'user-99']) {
    assert.equal(
      partitioner({ topic: 't', partitionMetadata, message: { key } }),
      (upstream(key) & 0x7fffffff) % 7,
    );
  }
});
