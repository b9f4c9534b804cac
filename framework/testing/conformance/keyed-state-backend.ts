import { describe } from 'node:test';
import { checkpointCases } from './keyed/checkpoints.ts';
import type { KeyedStateBackendCapabilities, MakeKeyedStateBackend } from './keyed/fixture.ts';
import { modelCases } from './keyed/model.ts';
import { handleCases, primitiveCases } from './keyed/primitives.ts';
import { copyOnWriteCases, restoreCases } from './keyed/snapshots.ts';
import { timeIndexedCases } from './keyed/time-indexed.ts';
import { ttlCases } from './keyed/ttl.ts';

export type { KeyedStateBackendCapabilities, MakeKeyedStateBackend } from './keyed/fixture.ts';

/**
 * The conformance suite every KeyedStateBackend passes (as abstract-level's test suite, or Flink's
 * StateBackendTestBase). Call it from a `*.test.ts` file; it registers node:test tests:
 *
 *     keyedStateBackendConformance('heap', () => new HeapKeyedStateBackend());
 *
 * `makeBackend` returns a fresh, empty backend each time; the suite closes it. The suite uses only
 * the backend contract (`framework/state/backend.ts`), the handles over it and the snapshot codec:
 * - the primitives: register, get, put, delete, entries, size, getForUpdate;
 * - every handle kind (value, list, map, reducing, aggregating), key isolation, empty list and map;
 * - TTL in processing and event time, both update types and both visibilities, cleanupExpired;
 * - copy-on-write: captures keep their state while every handle kind changes it, also while
 *   materialize() is in flight, with several captures alive and any release order;
 * - snapshot -> new backend -> restore, through the snapshot file codec too; restore refusing another
 *   serializer, a newer serializer version, a kind or TTL change, an unknown format version, bad bytes;
 * - a random-operations model test (fast-check) with captures and restores in between;
 * - for backends with their own checkpoint format (`writeCheckpoint`/`restoreHandle`; skipped for
 *   others): full and incremental checkpoints restore to their capture's state, deletes included,
 *   over a bounded chain; incremental bytes follow the changed keys; only the previous capture's
 *   checkpoint is built upon; unregistered restored states carry on; a failed file write fails one
 *   checkpoint only; corrupt, missing and foreign files and handles are refused, naming the file;
 * - time-indexed state (put, asOf, range, latest, retention) against a brute-force model, across
 *   captures, snapshot restores and own-format checkpoints.
 */
export function keyedStateBackendConformance(
  name: string,
  makeBackend: MakeKeyedStateBackend,
  capabilities: KeyedStateBackendCapabilities = {},
): void {
  describe(`KeyedStateBackend conformance: ${name}`, () => {
    describe('backend primitives', () => primitiveCases(makeBackend));
    describe('state handles', () => handleCases(makeBackend));
    describe('time-to-live', () => ttlCases(makeBackend));
    describe('copy-on-write snapshots', () => copyOnWriteCases(makeBackend, capabilities));
    describe('snapshot and restore', () => restoreCases(makeBackend));
    describe('model', () => modelCases(makeBackend, capabilities));
    describe('own checkpoint format', () => checkpointCases(makeBackend));
    describe('time-indexed state', () => timeIndexedCases(makeBackend, capabilities.timeIndexedRuns));
  });
}
