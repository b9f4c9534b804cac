import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { StreamError } from '../../../api/errors.ts';
import { MemoryCheckpointStorage } from '../../../checkpoint/storage/memory.ts';
import type { FileRef, Scope } from '../../../checkpoint/storage/storage.ts';
import type { CheckpointFiles, KeyedStateBackend, KeyedStateHandle } from '../../../state/backend.ts';
import { jsonSerializer, msgpackSerializer } from '../../../state/serializers.ts';
import {
  type Descriptors,
  type Dump,
  descriptors,
  dump,
  dumpOfSnapshot,
  type Fixture,
  handles,
  type MakeKeyedStateBackend,
  throwsWith,
  withFixture,
} from './fixture.ts';

/**
 * The backend's own checkpoint format (`KeyedStateCapture.writeCheckpoint` and
 * `KeyedStateBackend.restoreHandle`), full and incremental. Skipped for backends without it.
 */
export function checkpointCases(make: MakeKeyedStateBackend): void {
  const d = descriptors();
  const ttl = descriptors({ ttlMs: 1_000_000, time: 'processing' }, '-ttl');

  test('a full checkpoint restores into a fresh backend; its handle is JSON-safe', (t) =>
    withFixture(make, async (f) => {
      if (!supported(t, f.backend)) return;
      const io = new Files();
      fill(f, d, 40);
      fill(f, ttl, 5);
      const expected = { ...dump(f, d), ...dump(f, ttl) };
      const h = await checkpoint(f, io, undefined);
      assert.equal(h.type, 'full');
      assert.equal(h.backend, f.backend.kind);
      assert.ok(h.files.length > 0);
      const json = JSON.parse(JSON.stringify(h)) as KeyedStateHandle;
      assert.deepEqual(json, h, 'the handle survives JSON unchanged');
      await withFixture(make, async (g) => {
        await g.backend.restoreHandle!(json, io.files());
        assert.deepEqual({ ...dump(g, d), ...dump(g, ttl) }, expected);
      });
    }));

  test('incremental checkpoints restore to the state of their capture, deletes included, over a bounded chain', (t) =>
    withFixture(make, async (f) => {
      if (!supported(t, f.backend)) return;
      const io = new Files();
      fill(f, d, 120);
      const h = handles(f, d);
      let previous: KeyedStateHandle | undefined;
      const types: string[] = [];
      const checked: Promise<void>[] = [];
      for (let round = 0; round < 26; round++) {
        for (let i = 0; i < 4; i++) {
          const k = (round * 7 + i * 31) % 130; // also keys that do not exist yet
          f.at(`key-${k}`);
          switch ((round + i) % 6) {
            case 0:
              h.value.update({ round, i });
              break;
            case 1:
              h.value.clear();
              h.list.clear();
              break;
            case 2:
              h.list.add(round);
              h.map.remove(`m${k % 3}`);
              break;
            case 3:
              h.map.clear();
              h.reducing.add(round);
              break;
            case 4:
              h.aggregating.add(round);
              h.map.put(`m${round % 3}`, round);
              break;
            default:
              h.reducing.clear();
              h.aggregating.clear();
          }
        }
        const expected = dump(f, d);
        const handle = await checkpoint(f, io, previous);
        if (handle.type === 'incremental') {
          const paths = new Set(handle.files.map((x) => x.path));
          for (const x of previous!.files) assert.ok(paths.has(x.path), `${x.path} is listed again`);
        }
        types.push(handle.type);
        previous = handle;
        if (round % 3 === 2 || round === 25) checked.push(expectRestores(make, handle, io, d, expected));
      }
      await Promise.all(checked);
      assert.equal(types[0], 'full');
      assert.ok(types.includes('incremental'), `types: ${types.join(' ')}`);
      const longest = Math.max(
        ...types
          .join('')
          .split('full')
          .map((run) => run.length / 'incremental'.length),
      );
      assert.ok(longest <= 20, `a chain of ${longest} deltas: ${types.join(' ')}`);
      assert.ok(types.slice(1).includes('full'), `no full checkpoint after the first: ${types.join(' ')}`);
    }));

  test('an incremental checkpoint writes bytes in proportion to the changed keys', (t) =>
    withFixture(make, async (f) => {
      if (!supported(t, f.backend)) return;
      const io = new Files();
      const value = f.store.getState(d.value);
      const pad = 'x'.repeat(100);
      for (let i = 0; i < 4000; i++) {
        f.at(`key-${i}`);
        value.update({ i, pad });
      }
      const base = await checkpoint(f, io, undefined);
      const fullBytes = sum(base.files);
      const deltaBytes = async (changed: number, previous: KeyedStateHandle): Promise<KeyedStateHandle> => {
        for (let i = 0; i < changed; i++) {
          f.at(`key-${(i * 13) % 4000}`);
          if (i % 10 === 0) value.clear();
          else value.update({ i: -i, pad });
        }
        return checkpoint(f, io, previous);
      };
      const d40 = await deltaBytes(40, base);
      const d400 = await deltaBytes(400, d40);
      assert.equal(d40.type, 'incremental');
      assert.equal(d400.type, 'incremental');
      const b40 = sum(d40.files) - sum(base.files);
      const b400 = sum(d400.files) - sum(d40.files);
      assert.ok(b40 < fullBytes / 50, `1% of the keys changed: ${b40} bytes vs ${fullBytes} for all`);
      const ratio = b400 / b40;
      assert.ok(ratio > 7 && ratio < 13, `10x the changed keys gave ${ratio.toFixed(2)}x the bytes`);
    }));

  test('a previous handle that is not the previous capture is not built upon', (t) =>
    withFixture(make, async (f) => {
      if (!supported(t, f.backend)) return;
      const io = new Files();
      const h = handles(f, d);
      fill(f, d, 20);
      const h1 = await checkpoint(f, io, undefined);
      f.at('key-1');
      h.value.update('second');
      await checkpoint(f, io, h1);
      f.at('key-2');
      h.value.update('third');
      h.list.clear();
      const expected = dump(f, d);
      const h3 = await checkpoint(f, io, h1); // not the handle of the capture before
      await expectRestores(make, h3, io, d, expected);
      // After restoreHandle, the restored checkpoint is the one to build on.
      await withFixture(make, async (g) => {
        await g.backend.restoreHandle!(h3, io.files());
        const gh = handles(g, d);
        g.at('key-3');
        gh.value.update('after restore');
        gh.map.clear();
        const again = dump(g, d);
        const h4 = await checkpoint(g, io, h3);
        await expectRestores(make, h4, io, d, again);
      });
    }));

  test('restored states nobody registered are carried into later checkpoints and into materialize()', (t) =>
    withFixture(make, async (f) => {
      if (!supported(t, f.backend)) return;
      const io = new Files();
      fill(f, d, 30);
      const expected = dump(f, d);
      const h1 = await checkpoint(f, io, undefined);
      await withFixture(make, async (g) => {
        await g.backend.restoreHandle!(h1, io.files());
        g.store.getState(d.value); // only one of the five registered
        const h2 = await checkpoint(g, io, h1);
        const h3 = await checkpoint(g, io, undefined);
        await expectRestores(make, h2, io, d, expected);
        await expectRestores(make, h3, io, d, expected);
        const capture = g.backend.capture(99);
        const snapshot = await capture.materialize();
        capture.release();
        assert.deepEqual(await dumpOfSnapshot(make, snapshot, d), expected);
      });
    }));

  test('writes made while writeCheckpoint() runs do not leak into the checkpoint', (t) =>
    withFixture(make, async (f) => {
      if (!supported(t, f.backend)) return;
      const io = new Files();
      const h = handles(f, d);
      for (let i = 0; i < 20_000; i++) {
        f.at(`key-${i}`);
        h.value.update(i);
        if (i % 10 === 0) h.list.add(i);
      }
      const h1 = await checkpoint(f, io, undefined);
      for (let i = 0; i < 20_000; i += 3) {
        f.at(`key-${i}`);
        h.value.update(`changed ${i}`);
      }
      for (const previous of [h1, undefined]) {
        const before = dump(f, d);
        const capture = f.backend.capture(io.nextId());
        const pending = capture.writeCheckpoint!(io.files(), previous);
        for (let round = 0; round < 5; round++) {
          for (let i = round; i < 20_000; i += 7) {
            f.at(`key-${i}`);
            h.value.update(-i - 1);
            h.list.add(-i - 1); // (not -0: serializers turn it into 0)
            if (i % 3 === 0) h.value.clear();
          }
          await yieldToEventLoop();
        }
        const handle = await pending;
        capture.release();
        assert.equal(handle.type, previous === undefined ? 'full' : 'incremental');
        await expectRestores(make, handle, io, d, before);
      }
    }));

  test('a failed file write fails that checkpoint only: the backend goes on, the next full one restores', (t) =>
    withFixture(make, async (f) => {
      if (!supported(t, f.backend)) return;
      const io = new Files();
      fill(f, d, 50);
      const h1 = await checkpoint(f, io, undefined);
      const h = handles(f, d);
      f.at('key-7');
      h.value.update('after the good checkpoint');
      const full: CheckpointFiles = {
        write: async (name) => {
          throw new StreamError(
            'CHECKPOINT_STORAGE_FAILED',
            `cannot write /chk/${name}: ENOSPC. The disk is full: free space`,
          );
        },
        read: (ref) => io.storage.readFile(ref),
      };
      const capture = f.backend.capture(io.nextId());
      await throwsWith(() => capture.writeCheckpoint!(full, h1), 'CHECKPOINT_STORAGE_FAILED', /ENOSPC/);
      capture.release();
      f.at('key-8');
      h.value.update('processing goes on');
      h.list.add(8);
      assert.equal(h.value.value(), 'processing goes on');
      const expected = dump(f, d);
      const h2 = await checkpoint(f, io, undefined); // the runtime breaks the chain after a failure
      assert.equal(h2.type, 'full');
      await expectRestores(make, h2, io, d, expected);
    }));

  test('restoreHandle refuses a corrupt or missing file naming it, and a handle of another backend', (t) =>
    withFixture(make, async (f) => {
      if (!supported(t, f.backend)) return;
      const io = new Files();
      fill(f, d, 30);
      const base = await checkpoint(f, io, undefined);
      f.at('key-1');
      handles(f, d).value.update('delta');
      const delta = await checkpoint(f, io, base);
      assert.equal(delta.type, 'incremental');
      const deltaFile = delta.files[delta.files.length - 1]!.path;
      const baseFile = base.files[0]!.path;
      const restoring = (h: KeyedStateHandle, files: CheckpointFiles) => () =>
        withFixture(make, (g) => g.backend.restoreHandle!(h, files));
      // Bytes that are not a run file, past the storage's checksum: our own decoder names the file.
      const garbage: CheckpointFiles = {
        write: () => Promise.reject(new Error('read only')),
        read: async (ref) =>
          ref.path === deltaFile ? new TextEncoder().encode('not a run file') : io.read(ref),
      };
      await throwsWith(restoring(delta, garbage), 'CHECKPOINT_CORRUPT', new RegExp(escapeRegExp(deltaFile)));
      const truncated: CheckpointFiles = {
        ...garbage,
        read: async (ref) => {
          const bytes = await io.read(ref);
          return ref.path === baseFile ? bytes.subarray(0, bytes.length - 3) : bytes;
        },
      };
      await throwsWith(restoring(delta, truncated), 'CHECKPOINT_CORRUPT', new RegExp(escapeRegExp(baseFile)));
      // The storage's checksums.
      io.storage.corrupt(deltaFile);
      await throwsWith(
        restoring(delta, io.files()),
        'CHECKPOINT_CORRUPT',
        new RegExp(escapeRegExp(deltaFile)),
      );
      const missing: KeyedStateHandle = {
        ...base,
        files: base.files.map((x) => ({ ...x, path: x.path.replace(/files\/(\d+)-/, 'files/999$1-') })),
        layout: JSON.parse(JSON.stringify(base.layout).replace(/files\/(\d+)-/g, 'files/999$1-')),
      };
      await throwsWith(restoring(missing, io.files()), 'CHECKPOINT_NOT_FOUND', /999/);
      await throwsWith(
        restoring({ ...base, backend: 'another' }, io.files()),
        'SNAPSHOT_FORMAT_UNSUPPORTED',
        /another/,
      );
      await throwsWith(
        restoring({ ...base, layout: { ...(base.layout as object), format: 99 } }, io.files()),
        'SNAPSHOT_FORMAT_UNSUPPORTED',
        /99/,
      );
    }));

  test('restoreHandle checks the states registered before it', (t) =>
    withFixture(make, async (f) => {
      if (!supported(t, f.backend)) return;
      const io = new Files();
      f.at('a');
      f.store.getState({ kind: 'value', name: 'orders', serializer: jsonSerializer() }).update(1);
      const h1 = await checkpoint(f, io, undefined);
      await withFixture(make, async (g) => {
        g.at('a');
        g.store.getState({ kind: 'value', name: 'orders', serializer: msgpackSerializer() }).update(2);
        await throwsWith(() => g.backend.restoreHandle!(h1, io.files()), 'SERIALIZER_MISMATCH', /'orders'/);
      });
      await withFixture(make, async (g) => {
        const orders = g.store.getState({ kind: 'value', name: 'orders', serializer: jsonSerializer() });
        g.at('b');
        orders.update('replaced by the restore');
        await g.backend.restoreHandle!(h1, io.files());
        assert.equal(orders.value(), undefined);
        g.at('a');
        assert.equal(orders.value(), 1);
      });
    }));
}

const SCOPE: Scope = { jobId: 'conformance', taskId: 's0-p0' };

/** Checkpoint files over a memory checkpoint storage (checksums included), one id per checkpoint. */
class Files {
  readonly storage = new MemoryCheckpointStorage();
  #id = 0;

  nextId(): number {
    return ++this.#id;
  }

  /** The files of a new checkpoint (its id is the next one). */
  files(): CheckpointFiles {
    const id = this.#id + 1;
    return {
      write: (name, bytes) => this.storage.writeFile(SCOPE, id, name, bytes),
      read: (ref) => this.storage.readFile(ref),
    };
  }

  read(ref: FileRef): Promise<Uint8Array> {
    return this.storage.readFile(ref);
  }
}

function supported(t: TestContext, backend: KeyedStateBackend): boolean {
  const capture = backend.capture(0);
  const ok = capture.writeCheckpoint !== undefined && backend.restoreHandle !== undefined;
  capture.release();
  if (!ok) t.skip(`the '${backend.kind}' backend has no own checkpoint format`);
  return ok;
}

/** capture() + writeCheckpoint() + release(). */
async function checkpoint(
  f: Fixture,
  io: Files,
  previous: KeyedStateHandle | undefined,
): Promise<KeyedStateHandle> {
  const files = io.files();
  const capture = f.backend.capture(io.nextId());
  try {
    return await capture.writeCheckpoint!(files, previous);
  } finally {
    capture.release();
  }
}

async function expectRestores(
  make: MakeKeyedStateBackend,
  handle: KeyedStateHandle,
  io: Files,
  d: Descriptors,
  expected: Dump,
): Promise<void> {
  await withFixture(make, async (g) => {
    await g.backend.restoreHandle!(handle, io.files());
    assert.deepEqual(dump(g, d), expected, `restore of a ${handle.type} checkpoint`);
  });
}

function fill(f: Fixture, d: Descriptors, n: number): void {
  const h = handles(f, d);
  for (let i = 0; i < n; i++) {
    f.at(`key-${i}`);
    h.value.update({ i });
    h.list.addAll([i, i + 1]);
    h.map.put(`m${i % 3}`, { i });
    h.reducing.add(i);
    h.aggregating.add(i);
  }
}

function sum(files: readonly FileRef[]): number {
  return files.reduce((s, x) => s + x.bytes, 0);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
