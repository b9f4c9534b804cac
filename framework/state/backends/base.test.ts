/**
 * What BaseKeyedStateBackend checks once for every keyed backend (base.ts), run on both: a restore
 * is refused before it reads a checkpoint file or changes a state, whatever state the refusal is
 * about; and after a failed restore the next checkpoint is full, never a delta on the capture
 * before it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isStreamError } from '../../api/errors.ts';
import { MemoryCheckpointStorage } from '../../checkpoint/storage/memory.ts';
import type { CheckpointFiles, KeyedStateBackend, StateMeta } from '../backend.ts';
import { HeapKeyedStateBackend } from './heap/heap.ts';
import { temporaryLevelBackend } from './level/testing.ts';
import { checkpointOnce } from './testing.ts';

const COUNTS: StateMeta = { name: 'counts', kind: 'value', serializerId: 'msgpack', serializerVersion: 1 };
const OTHER: StateMeta = { name: 'other', kind: 'value', serializerId: 'msgpack', serializerVersion: 1 };

/** Checkpoint files over a memory storage, counting reads; `missing` names a file to refuse. */
class Files {
  readonly storage = new MemoryCheckpointStorage({ retain: 100 });
  reads = 0;
  missing: string | undefined;
  #id = 0;

  files(): CheckpointFiles {
    const id = ++this.#id;
    return {
      write: (name, bytes) => this.storage.writeFile({ jobId: 'base', taskId: 't' }, id, name, bytes),
      read: (ref) => {
        this.reads++;
        return this.missing !== undefined && ref.path.includes(this.missing)
          ? this.storage.readFile({ ...ref, path: `${ref.path}.gone` })
          : this.storage.readFile(ref);
      },
    };
  }
}

function contents(b: KeyedStateBackend, state = 'counts'): [string, unknown][] {
  return b.entries(state).sort(([x], [y]) => (x < y ? -1 : 1));
}

const backends: [string, () => Promise<KeyedStateBackend>][] = [
  ['heap', async () => new HeapKeyedStateBackend()],
  ['level', () => temporaryLevelBackend({ cacheEntries: 8, writeBatchEntries: 4 })],
];

for (const [kind, make] of backends) {
  describe(`${kind} backend: register and restore are checked before anything changes`, () => {
    test('restoreHandle refuses a checkpoint an already registered state cannot read, reading no file', async () => {
      const io = new Files();
      const writer = await make();
      const reader = await make();
      try {
        writer.register(COUNTS);
        for (let i = 0; i < 20; i++) writer.put('counts', `k${i}`, i);
        const handle = await checkpointOnce(writer, io.files());
        reader.register({ ...COUNTS, kind: 'list' });
        reader.put('counts', 'mine', [1]);
        await assert.rejects(reader.restoreHandle!(handle, io.files()), (e: unknown) =>
          isStreamError(e, 'STATE_DESCRIPTOR_CONFLICT'),
        );
        assert.equal(io.reads, 0, 'no checkpoint file was read');
        assert.deepEqual(contents(reader), [['mine', [1]]], 'the state is unchanged');
      } finally {
        await writer.close();
        await reader.close();
      }
    });

    test('restore refuses a snapshot holding a key twice, also in a state nobody registered', async () => {
      const b = await make();
      try {
        b.register(COUNTS);
        b.put('counts', 'mine', 1);
        const bytes = new Uint8Array([0x01]);
        const snapshot = {
          formatVersion: 1 as const,
          states: [
            { meta: COUNTS, entries: [['a', bytes] as const] },
            {
              meta: OTHER,
              entries: [['x', bytes] as const, ['x', bytes] as const],
            },
          ],
        };
        await assert.rejects(
          b.restore(snapshot),
          (e: unknown) =>
            isStreamError(e, 'CHECKPOINT_CORRUPT') && /key "x" of state 'other' twice/.test(e.message),
        );
        assert.deepEqual(contents(b), [['mine', 1]], 'the state is unchanged');
        assert.deepEqual(
          (b.states?.() ?? []).map((m) => m.name),
          ['counts'],
        );
      } finally {
        await b.close();
      }
    });

    test('after a failed restore the next checkpoint is full and restores to what the backend holds', async () => {
      const io = new Files();
      const source = await make();
      const b = await make();
      try {
        source.register(COUNTS);
        for (let i = 0; i < 30; i++) source.put('counts', `s${i}`, i);
        const other = await checkpointOnce(source, io.files());
        b.register(COUNTS);
        for (let i = 0; i < 10; i++) b.put('counts', `k${i}`, i);
        const first = await checkpointOnce(b, io.files());
        io.missing = other.files[0]!.path;
        await assert.rejects(b.restoreHandle!(other, io.files()), (e: unknown) =>
          isStreamError(e, 'CHECKPOINT_NOT_FOUND'),
        );
        io.missing = undefined;
        // The backend holds what the failed restore left (level: nothing; heap: what it had).
        const held = contents(b);
        const next = await checkpointOnce(b, io.files(), first);
        assert.equal(next.type, 'full', 'no delta on the capture before the failed restore');
        const fresh = await make();
        try {
          fresh.register(COUNTS);
          await fresh.restoreHandle!(next, io.files());
          assert.deepEqual(contents(fresh), held);
        } finally {
          await fresh.close();
        }
      } finally {
        await source.close();
        await b.close();
      }
    });
  });
}
