import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import { type ErrorCode, isStreamError } from '../api/errors.ts';
import type { KeyedStateSnapshot } from './backend.ts';
import type { OperatorStateSnapshot } from './operator-state.ts';
import {
  decodeKeyedSnapshot,
  decodeOperatorSnapshot,
  encodeKeyedSnapshot,
  encodeOperatorSnapshot,
} from './snapshot-codec.ts';

const keyed: KeyedStateSnapshot = {
  formatVersion: 1,
  states: [
    {
      meta: {
        name: 'sessions',
        kind: 'map',
        serializerId: 'user:session',
        serializerVersion: 4,
        ttl: { ttlMs: 60_000, time: 'event', update: 'onReadAndWrite', visibility: 'neverReturnExpired' },
      },
      entries: [
        ['user-1', Uint8Array.of(1, 2, 3)],
        ['\u000042', Uint8Array.of()],
      ],
    },
    { meta: { name: 'count', kind: 'value', serializerId: 'msgpack', serializerVersion: 1 }, entries: [] },
  ],
};

const operator: OperatorStateSnapshot = {
  formatVersion: 1,
  states: [
    {
      name: 'offsets',
      mode: 'split',
      serializerId: 'msgpack',
      serializerVersion: 1,
      elements: [Uint8Array.of(7)],
    },
  ],
};

function isCode(code: ErrorCode, ...patterns: RegExp[]) {
  return (e: unknown) => isStreamError(e, code) && patterns.every((p) => p.test(e.message));
}

/** A well-framed file (right magic, version, length and CRC) around an arbitrary body. */
function framed(magic: string, body: unknown): Uint8Array {
  const encoded = encodeKeyedSnapshot({ formatVersion: 1, states: [] });
  const payload = new Packr({ useRecords: false }).pack(body);
  const out = Buffer.alloc(16 + payload.length);
  Buffer.from(encoded).copy(out, 0, 0, 8);
  out.write(magic, 0, 'latin1');
  out.writeUInt32BE(payload.length, 8);
  out.writeUInt32BE(crc32(payload), 12);
  out.set(payload, 16);
  return out;
}

describe('snapshot codec', () => {
  test('keyed and operator snapshots round-trip', () => {
    assert.deepEqual(decodeKeyedSnapshot(encodeKeyedSnapshot(keyed), 'f'), keyed);
    assert.deepEqual(decodeOperatorSnapshot(encodeOperatorSnapshot(operator), 'f'), operator);
  });

  test('the header carries a magic, the format version, the body length and its CRC-32', () => {
    const bytes = Buffer.from(encodeKeyedSnapshot(keyed));
    assert.equal(bytes.toString('latin1', 0, 4), 'KSK1');
    assert.equal(bytes.readUInt16BE(4), 1);
    assert.equal(bytes.readUInt32BE(8), bytes.length - 16);
    assert.equal(Buffer.from(encodeOperatorSnapshot(operator)).toString('latin1', 0, 4), 'KSO1');
  });

  test('refuses files that are not ours, truncated, too long, damaged or of the wrong shape', () => {
    const bytes = encodeKeyedSnapshot(keyed);
    const longer = new Uint8Array(bytes.length + 3);
    longer.set(bytes);
    const cases: [Uint8Array, RegExp][] = [
      [new Uint8Array(0), /shorter than the 16-byte header/],
      [bytes.subarray(0, 20), /truncated/],
      [longer, /3 bytes past its end/],
      [encodeOperatorSnapshot(operator), /does not start with 'KSK1'/],
      [
        framed('KSK1', { formatVersion: 1, states: [{ meta: { name: 'x' }, entries: [] }] }),
        /malformed: state #0 has an invalid meta/,
      ],
      [
        framed('KSK1', { formatVersion: 1, states: [{ meta: keyed.states[1]!.meta, entries: [[1, 2]] }] }),
        /'count' has an entry that is not/,
      ],
      [framed('KSK1', [1, 2]), /malformed: no states/],
    ];
    for (const [file, why] of cases) {
      assert.throws(
        () => decodeKeyedSnapshot(file, 'chk-9/op-2.keyed'),
        isCode('CHECKPOINT_CORRUPT', /chk-9\/op-2\.keyed/, why),
        String(why),
      );
    }
    assert.throws(
      () =>
        decodeOperatorSnapshot(
          framed('KSO1', { formatVersion: 1, states: [{ name: 'x', mode: 'sideways' }] }),
          'o.bin',
        ),
      isCode('CHECKPOINT_CORRUPT', /o\.bin/, /state #0/),
    );
  });

  test('refuses a format version it does not read with SNAPSHOT_FORMAT_UNSUPPORTED naming the file', () => {
    const future = Buffer.from(encodeKeyedSnapshot(keyed));
    future.writeUInt16BE(2, 4);
    assert.throws(
      () => decodeKeyedSnapshot(future, 'k.bin'),
      isCode('SNAPSHOT_FORMAT_UNSUPPORTED', /k\.bin/, /version 2/),
    );
  });
});
