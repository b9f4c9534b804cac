/**
 * The conformance suite every CheckpointStorage passes: call `storageConformance(name, make)` from a
 * `*.test.ts` file and it registers node:test tests. `make` returns a fresh, empty storage with the
 * given retention, and two hooks that damage a stored file as a disk or a person would.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { type ErrorCode, isStreamError } from '../../api/errors.ts';
import type { CheckpointMetadata, CheckpointStorage, FileRef, Scope } from './storage.ts';

export interface StorageUnderTest {
  readonly storage: CheckpointStorage;
  /** Alters the content of the stored file at `path` (a FileRef path), keeping its size. */
  corrupt(path: string): Promise<void>;
  /** Cuts the stored file at `path` to its first `length` bytes. */
  truncate(path: string, length: number): Promise<void>;
  /** Releases what `make` took (a temporary directory ...). */
  close?(): Promise<void>;
}

export type MakeStorage = (options: { readonly retain: number }) => Promise<StorageUnderTest>;

const SCOPE: Scope = { jobId: 'orders-job', taskId: 's0-p3' };
const OTHER: Scope = { jobId: 'orders-job', taskId: 's0-p4' };

/** Metadata of checkpoint `id` of `scope` listing `files`. */
export function checkpointMeta(
  scope: Scope,
  id: number,
  files: readonly FileRef[],
  extra: Partial<CheckpointMetadata> = {},
): CheckpointMetadata {
  return {
    formatVersion: 1,
    jobId: scope.jobId,
    taskId: scope.taskId,
    checkpointId: id,
    timestamp: 1_700_000_000_000 + id,
    files,
    type: 'full',
    payload: { sources: [{ topic: 'orders', partition: 3, offset: id * 100 }], note: `checkpoint ${id}` },
    ...extra,
  };
}

export function bytesOf(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/** Asserts that `p` rejects with a StreamError of `code` whose message matches every pattern. */
export async function rejectsWith(
  p: Promise<unknown>,
  code: ErrorCode,
  ...patterns: RegExp[]
): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isStreamError(e), `expected a StreamError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`);
    for (const re of patterns) assert.match(e.message, re);
    return true;
  });
}

function literal(s: string): RegExp {
  return new RegExp(s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
}

export function storageConformance(name: string, make: MakeStorage): void {
  describe(`checkpoint storage conformance: ${name}`, () => {
    /** A fresh storage, closed after the test. */
    async function open(t: { after(fn: () => Promise<void>): void }, retain = 3): Promise<StorageUnderTest> {
      const sut = await make({ retain });
      t.after(async () => {
        await sut.close?.();
      });
      return sut;
    }

    test('writeFile and readFile round-trip the bytes; the ref carries size and sha256', async (t) => {
      const { storage } = await open(t);
      const all = Uint8Array.from({ length: 256 }, (_, i) => i);
      const ref = await storage.writeFile(SCOPE, 1, 'keyed-state', all);
      assert.equal(ref.bytes, 256);
      assert.equal(ref.sha256, createHash('sha256').update(all).digest('hex'));
      assert.ok(!ref.path.startsWith('/') && ref.path.includes('orders-job') && ref.path.includes('s0-p3'));
      const back = await storage.readFile(ref);
      assert.deepEqual([...back], [...all]);
      back[0] = 99; // the caller's copy: storage is unaffected
      assert.equal((await storage.readFile(ref))[0], 0);

      assert.equal(Object.getPrototypeOf(back), Uint8Array.prototype, 'readFile returns a plain Uint8Array');

      const source = Buffer.from('written from a Buffer');
      const fromBuffer = await storage.writeFile(SCOPE, 1, 'from-buffer', source);
      source.fill(0); // the caller reuses its buffer once the write has settled
      assert.equal(new TextDecoder().decode(await storage.readFile(fromBuffer)), 'written from a Buffer');

      const empty = await storage.writeFile(SCOPE, 1, 'empty', new Uint8Array(0));
      assert.equal(empty.bytes, 0);
      assert.equal((await storage.readFile(empty)).byteLength, 0);
    });

    test('a file name is written once per checkpoint; another checkpoint may reuse the name', async (t) => {
      const { storage } = await open(t);
      const first = await storage.writeFile(SCOPE, 1, 'state', bytesOf('first'));
      await rejectsWith(
        storage.writeFile(SCOPE, 1, 'state', bytesOf('second')),
        'CHECKPOINT_STORAGE_FAILED',
        /state/,
      );
      assert.equal(new TextDecoder().decode(await storage.readFile(first)), 'first');
      const other = await storage.writeFile(SCOPE, 2, 'state', bytesOf('two'));
      assert.notEqual(other.path, first.path);
    });

    test('a file that committed metadata lists is never overwritten', async (t) => {
      const { storage } = await open(t);
      const ref = await storage.writeFile(SCOPE, 1, 'state', bytesOf('committed'));
      await storage.commit(checkpointMeta(SCOPE, 1, [ref]));
      await rejectsWith(
        storage.writeFile(SCOPE, 1, 'state', bytesOf('again')),
        'CHECKPOINT_STORAGE_FAILED',
        /never overwritten/,
      );
      assert.equal(new TextDecoder().decode(await storage.readFile(ref)), 'committed');
    });

    test('ids and names that are not plain path segments are refused', async (t) => {
      const { storage } = await open(t);
      const b = bytesOf('x');
      for (const bad of ['../escape', 'a/b', '.hidden', '', 'a\\b', 'nul\u0000']) {
        await rejectsWith(storage.writeFile(SCOPE, 1, bad, b), 'CONFIG_INVALID');
      }
      await rejectsWith(
        storage.writeFile({ jobId: '..', taskId: 't' }, 1, 'f', b),
        'CONFIG_INVALID',
        /jobId/,
      );
      await rejectsWith(
        storage.writeFile({ jobId: 'j', taskId: 'a/b' }, 1, 'f', b),
        'CONFIG_INVALID',
        /taskId/,
      );
      for (const id of [-1, 1.5, Number.NaN]) {
        await rejectsWith(storage.writeFile(SCOPE, id, 'f', b), 'CONFIG_INVALID', /checkpoint id/);
      }
      await rejectsWith(storage.loadSavepoint('../x', SCOPE), 'CONFIG_INVALID');
    });

    test('commit, then latest, list and load return the committed metadata', async (t) => {
      const { storage } = await open(t);
      assert.equal(await storage.latest(SCOPE), undefined);
      assert.deepEqual(await storage.list(SCOPE), []);
      const r1 = await storage.writeFile(SCOPE, 1, 'state', bytesOf('one'));
      const m1 = checkpointMeta(SCOPE, 1, [r1]);
      await storage.commit(m1);
      const r2 = await storage.writeFile(SCOPE, 2, 'delta', bytesOf('two'));
      const m2 = checkpointMeta(SCOPE, 2, [r1, r2], { type: 'incremental' });
      await storage.commit(m2);
      assert.deepEqual(await storage.latest(SCOPE), m2);
      assert.deepEqual(await storage.list(SCOPE), [m1, m2]);
      assert.deepEqual(await storage.load(SCOPE, 1), m1);
      // Scopes are independent.
      assert.equal(await storage.latest(OTHER), undefined);
      assert.deepEqual(await storage.list(OTHER), []);
    });

    test('committed metadata is a copy: later changes to the object do not reach storage', async (t) => {
      const { storage } = await open(t);
      const meta = checkpointMeta(SCOPE, 1, [], { payload: { offsets: [1, 2, 3] } });
      await storage.commit(meta);
      (meta.payload as { offsets: number[] }).offsets.push(4);
      const loaded = await storage.load(SCOPE, 1);
      assert.deepEqual(loaded.payload, { offsets: [1, 2, 3] });
      (loaded.payload as { offsets: number[] }).offsets.push(5);
      assert.deepEqual((await storage.load(SCOPE, 1)).payload, { offsets: [1, 2, 3] });
    });

    test('checkpoint ids are ordered numerically (10 after 9)', async (t) => {
      const { storage } = await open(t, 10);
      for (const id of [9, 10, 2]) await storage.commit(checkpointMeta(SCOPE, id, []));
      assert.deepEqual(
        (await storage.list(SCOPE)).map((m) => m.checkpointId),
        [2, 9, 10],
      );
      assert.equal((await storage.latest(SCOPE))?.checkpointId, 10);
    });

    test('retention keeps the last N; a shared file lives while any retained checkpoint lists it', async (t) => {
      const { storage } = await open(t, 2);
      const base = await storage.writeFile(SCOPE, 1, 'base', bytesOf('base state'));
      const only1 = await storage.writeFile(SCOPE, 1, 'only-1', bytesOf('only in 1'));
      await storage.commit(checkpointMeta(SCOPE, 1, [base, only1]));
      const f4 = await storage.writeFile(SCOPE, 4, 'delta', bytesOf('delta 4'));
      await storage.commit(checkpointMeta(SCOPE, 4, [base, f4], { type: 'incremental' }));
      const f5 = await storage.writeFile(SCOPE, 5, 'full', bytesOf('full 5'));
      await storage.commit(checkpointMeta(SCOPE, 5, [f5]));

      // 1 is pruned; `base` survives because 4 (retained) lists it; `only-1` is gone.
      assert.deepEqual(
        (await storage.list(SCOPE)).map((m) => m.checkpointId),
        [4, 5],
      );
      await rejectsWith(storage.load(SCOPE, 1), 'CHECKPOINT_NOT_FOUND', /checkpoint 1\b/, /4, 5/);
      assert.equal(new TextDecoder().decode(await storage.readFile(base)), 'base state');
      await rejectsWith(storage.readFile(only1), 'CHECKPOINT_NOT_FOUND', literal('only-1'));

      const f6 = await storage.writeFile(SCOPE, 6, 'full', bytesOf('full 6'));
      await storage.commit(checkpointMeta(SCOPE, 6, [f6]));
      // 4 is pruned: nothing retained lists `base` any more.
      await rejectsWith(storage.readFile(base), 'CHECKPOINT_NOT_FOUND', literal('1-base'));
      await rejectsWith(storage.readFile(f4), 'CHECKPOINT_NOT_FOUND');
      assert.equal(new TextDecoder().decode(await storage.readFile(f5)), 'full 5');
      assert.equal(new TextDecoder().decode(await storage.readFile(f6)), 'full 6');
    });

    test('files of a checkpoint still being written survive the commit of another one', async (t) => {
      const { storage } = await open(t, 1);
      const inFlight = await storage.writeFile(SCOPE, 3, 'state', bytesOf('in flight'));
      await storage.commit(checkpointMeta(SCOPE, 2, []));
      assert.equal(new TextDecoder().decode(await storage.readFile(inFlight)), 'in flight');
      await storage.commit(checkpointMeta(SCOPE, 3, [inFlight]));
      assert.equal((await storage.latest(SCOPE))?.checkpointId, 3);
    });

    test('discard deletes the files of an uncommitted checkpoint, never files committed metadata lists', async (t) => {
      const { storage } = await open(t);
      const a = await storage.writeFile(SCOPE, 1, 'a', bytesOf('a'));
      await storage.commit(checkpointMeta(SCOPE, 1, [a]));
      const b = await storage.writeFile(SCOPE, 2, 'b', bytesOf('b'));
      const c = await storage.writeFile(SCOPE, 2, 'c', bytesOf('c'));
      const other = await storage.writeFile(OTHER, 2, 'b', bytesOf('other task'));
      await storage.discard(SCOPE, 2);
      await rejectsWith(storage.readFile(b), 'CHECKPOINT_NOT_FOUND');
      await rejectsWith(storage.readFile(c), 'CHECKPOINT_NOT_FOUND');
      assert.equal(new TextDecoder().decode(await storage.readFile(a)), 'a');
      assert.equal(new TextDecoder().decode(await storage.readFile(other)), 'other task');
      await storage.discard(SCOPE, 1); // committed: nothing of it is deleted
      await storage.discard(SCOPE, 77); // unknown: nothing to do
      assert.equal(new TextDecoder().decode(await storage.readFile(a)), 'a');
      assert.equal((await storage.load(SCOPE, 1)).checkpointId, 1);
      // A discarded id can be written again.
      const again = await storage.writeFile(SCOPE, 2, 'b', bytesOf('retry'));
      assert.equal(new TextDecoder().decode(await storage.readFile(again)), 'retry');
    });

    test('savepoints are loaded by name, excluded from latest/list, and never pruned', async (t) => {
      const { storage } = await open(t, 1);
      const shared = await storage.writeFile(SCOPE, 2, 'state', bytesOf('savepoint state'));
      const sp = checkpointMeta(SCOPE, 2, [shared], { savepoint: 'before-upgrade' });
      await storage.commit(sp);
      assert.equal(await storage.latest(SCOPE), undefined);
      for (const id of [3, 4, 5]) {
        const f = await storage.writeFile(SCOPE, id, 'delta', bytesOf(`delta ${id}`));
        await storage.commit(checkpointMeta(SCOPE, id, id === 3 ? [shared, f] : [f]));
      }
      assert.deepEqual(
        (await storage.list(SCOPE)).map((m) => m.checkpointId),
        [5],
      );
      assert.deepEqual(await storage.loadSavepoint('before-upgrade', SCOPE), sp);
      assert.equal(new TextDecoder().decode(await storage.readFile(shared)), 'savepoint state');
      await rejectsWith(
        storage.loadSavepoint('nope', SCOPE),
        'CHECKPOINT_NOT_FOUND',
        /"nope"/,
        /before-upgrade/,
      );
      await rejectsWith(storage.loadSavepoint('before-upgrade', OTHER), 'CHECKPOINT_NOT_FOUND');
      // A savepoint name is taken once.
      await rejectsWith(
        storage.commit(checkpointMeta(SCOPE, 6, [], { savepoint: 'before-upgrade' })),
        'CHECKPOINT_STORAGE_FAILED',
        /already exists/,
      );
    });

    test('an altered file is refused: CHECKPOINT_CORRUPT naming it, checksum mismatch', async (t) => {
      const sut = await open(t);
      const ref = await sut.storage.writeFile(SCOPE, 1, 'state', bytesOf('0123456789'));
      await sut.storage.commit(checkpointMeta(SCOPE, 1, [ref]));
      await sut.corrupt(ref.path);
      await rejectsWith(sut.storage.readFile(ref), 'CHECKPOINT_CORRUPT', literal('1-state'), /checksum/);
    });

    test('a truncated file is refused: "truncated: N bytes, expected M"', async (t) => {
      const sut = await open(t);
      const ref = await sut.storage.writeFile(SCOPE, 1, 'state', bytesOf('0123456789'));
      await sut.storage.commit(checkpointMeta(SCOPE, 1, [ref]));
      await sut.truncate(ref.path, 3);
      await rejectsWith(
        sut.storage.readFile(ref),
        'CHECKPOINT_CORRUPT',
        literal('1-state'),
        /is truncated: 3 bytes, expected 10/,
      );
    });

    test('a malformed file reference is refused, not followed', async (t) => {
      const { storage } = await open(t);
      for (const path of ['../../etc/passwd', '/etc/passwd', 'orders-job/s0-p3/chk-1.json']) {
        await rejectsWith(
          storage.readFile({ path, bytes: 1, sha256: '0'.repeat(64) }),
          'CHECKPOINT_CORRUPT',
          /malformed/,
        );
      }
    });

    test('loading a checkpoint that does not exist is CHECKPOINT_NOT_FOUND naming it', async (t) => {
      const { storage } = await open(t);
      await rejectsWith(
        storage.load(SCOPE, 7),
        'CHECKPOINT_NOT_FOUND',
        /checkpoint 7/,
        /orders-job/,
        /s0-p3/,
      );
      await storage.commit(checkpointMeta(SCOPE, 1, []));
      await rejectsWith(
        storage.load(SCOPE, 7),
        'CHECKPOINT_NOT_FOUND',
        /committed checkpoints of this task: 1/,
      );
    });

    test('commit refuses metadata listing a missing file or a file of another task', async (t) => {
      const { storage } = await open(t);
      const ghost: FileRef = { path: 'orders-job/s0-p3/files/1-ghost', bytes: 1, sha256: 'a'.repeat(64) };
      await rejectsWith(storage.commit(checkpointMeta(SCOPE, 1, [ghost])), 'CHECKPOINT_NOT_FOUND', /1-ghost/);
      const foreign = await storage.writeFile(OTHER, 1, 'state', bytesOf('x'));
      await rejectsWith(
        storage.commit(checkpointMeta(SCOPE, 1, [foreign])),
        'CONFIG_INVALID',
        /another task/,
      );
      const r = await storage.writeFile(SCOPE, 1, 'state', bytesOf('abc'));
      await rejectsWith(
        storage.commit(checkpointMeta(SCOPE, 1, [{ ...r, bytes: 4 }])),
        'CHECKPOINT_CORRUPT',
        /3 bytes/,
      );
      assert.equal(await storage.latest(SCOPE), undefined);
    });

    test('commit refuses a payload that JSON cannot hold, rather than store something else', async (t) => {
      const { storage } = await open(t);
      for (const payload of [{ seen: new Map([[1, 2]]) }, { lag: Number.NaN }, { raw: new Uint8Array(2) }]) {
        await rejectsWith(
          storage.commit(checkpointMeta(SCOPE, 1, [], { payload })),
          'CONFIG_INVALID',
          /payload/,
        );
      }
      await rejectsWith(
        storage.commit({ ...checkpointMeta(SCOPE, 1, []), type: 'partial' } as unknown as CheckpointMetadata),
        'CONFIG_INVALID',
        /type/,
      );
      assert.equal(await storage.latest(SCOPE), undefined);
    });

    test('committing the same metadata twice is harmless; other metadata for a committed id is refused', async (t) => {
      const { storage } = await open(t);
      const meta = checkpointMeta(SCOPE, 1, []);
      await storage.commit(meta);
      await storage.commit(checkpointMeta(SCOPE, 1, []));
      assert.deepEqual(await storage.list(SCOPE), [meta]);
      await rejectsWith(
        storage.commit(checkpointMeta(SCOPE, 1, [], { timestamp: 5 })),
        'CHECKPOINT_STORAGE_FAILED',
        /already exists/,
      );
      assert.deepEqual(await storage.load(SCOPE, 1), meta);
    });

    test('tasks lists the task ids of a job that have checkpoints or savepoints', async (t) => {
      const { storage } = await open(t, 2);
      assert.deepEqual(await storage.tasks(SCOPE.jobId), []);
      await storage.commit(checkpointMeta(OTHER, 1, []));
      const ref = await storage.writeFile(SCOPE, 1, 'state', bytesOf('s'));
      await storage.commit(checkpointMeta(SCOPE, 1, [ref], { savepoint: 'sp' }));
      await storage.commit(checkpointMeta({ jobId: 'other-job', taskId: 's1-p0' }, 1, []));
      assert.deepEqual(await storage.tasks(SCOPE.jobId), [SCOPE.taskId, OTHER.taskId].sort());
      assert.deepEqual(await storage.tasks('other-job'), ['s1-p0']);
      assert.deepEqual(await storage.tasks('no-such-job'), []);
    });

    test('concurrent commits of one scope are applied one at a time', async (t) => {
      const { storage } = await open(t, 2);
      const refs = await Promise.all(
        [1, 2, 3, 4, 5].map((id) => storage.writeFile(SCOPE, id, 'state', bytesOf(`s${id}`))),
      );
      await Promise.all(refs.map((r, i) => storage.commit(checkpointMeta(SCOPE, i + 1, [r]))));
      assert.deepEqual(
        (await storage.list(SCOPE)).map((m) => m.checkpointId),
        [4, 5],
      );
      await rejectsWith(storage.readFile(refs[2]!), 'CHECKPOINT_NOT_FOUND');
      assert.equal(new TextDecoder().decode(await storage.readFile(refs[4]!)), 's5');
    });
  });
}
