/**
 * Parallel transfers of a checkpoint chain's run files (chain.ts): uploads overlap up to
 * `fileConcurrency` and restores read ahead as far, while the handle lists the files in the order
 * they were cut, restore applies them in chain order whatever order they arrive in, and a failed
 * transfer among parallel ones rejects the checkpoint (or restore) only once nothing of it is still
 * running. Transfers are held by the test and let go newest first, in rounds, so the order in which
 * they finish is the reverse of the order in which they started (a failing one first); no timing is
 * involved. The heap and the level backend take the same `fileConcurrency` option and pass the
 * same tests.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isStreamError, StreamError } from '../../../api/errors.ts';
import { MemoryCheckpointStorage } from '../../../checkpoint/storage/memory.ts';
import type { FileRef, Scope } from '../../../checkpoint/storage/storage.ts';
import { runJob } from '../../../runtime/job.ts';
import { finalKeyedState, sorted } from '../../../runtime/test/helpers.ts';
import { buildJob, makeInput } from '../../../runtime/test/jobs.ts';
import type { CheckpointFiles, KeyedStateBackend, KeyedStateHandle, StateMeta } from '../../backend.ts';
import { userSerializer } from '../../serializers.ts';
import type { KeyedBackendOptions } from '../base.ts';
import { HeapKeyedStateBackend } from '../heap/heap.ts';
import { LevelKeyedStateBackend, levelBackend } from '../level/level.ts';
import { temporaryDirectory } from '../level/testing.ts';
import { checkpointOnce as checkpoint } from '../testing.ts';
import { parseChainLayout, RunFilesWriter, readChain } from './chain.ts';

const META: StateMeta = { name: 'counts', kind: 'value', serializerId: 'msgpack', serializerVersion: 1 };
const SCOPE: Scope = { jobId: 'chain', taskId: 's0-p0' };
/** The smallest run files: a few dozen entries each, so that even small states make many files. */
const FILE_BYTES = 1024;
/** Held transfers that are never let go (a bound not reached) fail the test instead of hanging it. */
const HELD = { timeout: 60_000 };

interface Held {
  readonly what: string;
  readonly go: () => void;
  readonly fails: boolean;
}

/**
 * Checkpoint files over a memory storage whose transfers the test holds: each transfer does its I/O,
 * then waits. Once `expect()` transfers are held, all are let go: the failing ones at once, the
 * others on the next turn of the event loop, newest first (so they finish in the reverse of the
 * order they started in). Records the most transfers held at once, the order
 * they started and finished in, and can fail chosen ones.
 */
class HeldFiles {
  readonly storage: MemoryCheckpointStorage;
  readonly held: Held[] = [];
  started: string[] = [];
  finished: string[] = [];
  running = 0;
  maxRunning = 0;
  /** Transfers let go so far; `expect` sees how many are left. */
  released = 0;
  /** How many transfers to hold before letting them go (given the ones let go so far). */
  expect: (released: number) => number = () => 1;
  /** A name (or path) to fail instead of transferring, with the error to throw. */
  fail: ((what: string) => Error | undefined) | undefined;
  #id = 0;

  constructor(storage = new MemoryCheckpointStorage({ retain: 100 })) {
    this.storage = storage;
  }

  files(): CheckpointFiles {
    const id = ++this.#id;
    return {
      write: (name, bytes) =>
        this.#transfer(name, async () => this.storage.writeFile(SCOPE, id, name, bytes.slice())),
      read: (ref) => this.#transfer(ref.path, () => this.storage.readFile(ref)),
    };
  }

  /** Files that transfer at once, unheld. */
  plain(): CheckpointFiles {
    const id = ++this.#id;
    return {
      write: (name, bytes) => this.storage.writeFile(SCOPE, id, name, bytes),
      read: (ref) => this.storage.readFile(ref),
    };
  }

  async #transfer<T>(what: string, io: () => Promise<T>): Promise<T> {
    this.started.push(what);
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    try {
      const error = this.fail?.(what);
      const result = error === undefined ? await io() : undefined;
      await new Promise<void>((go) => {
        this.held.push({ what, go, fails: error !== undefined });
        this.#maybeRelease();
      });
      if (error !== undefined) throw error;
      return result as T;
    } finally {
      this.running--;
      this.finished.push(what);
    }
  }

  /** Failing transfers go at once; the others a turn of the event loop later, newest first. */
  #maybeRelease(): void {
    if (this.held.length < this.expect(this.released)) return;
    const round = this.held.splice(0).reverse();
    this.released += round.length;
    for (const h of round) if (h.fails) h.go();
    setImmediate(() => {
      for (const h of round) if (!h.fails) h.go();
    });
  }
}

type Kind = 'level' | 'heap';

async function openBackend(kind: Kind, options: KeyedBackendOptions = {}): Promise<KeyedStateBackend> {
  const backend =
    kind === 'level'
      ? await LevelKeyedStateBackend.open({
          directory: temporaryDirectory(),
          fileBytes: FILE_BYTES,
          ...options,
        })
      : new HeapKeyedStateBackend({ fileBytes: FILE_BYTES, ...options });
  backend.register(META);
  return backend;
}

function contents(backend: KeyedStateBackend): [string, unknown][] {
  return backend.entries('counts').sort(([a], [b]) => (a < b ? -1 : 1));
}

function fill(backend: KeyedStateBackend, from: number, to: number, tag: string): void {
  for (let i = from; i < to; i++) backend.put('counts', `key-${i}`, `${tag} ${i}`);
}

/** The paths a handle's chain reads, in chain order. */
function chainPaths(handle: KeyedStateHandle): string[] {
  const layout = parseChainLayout(handle, handle.backend);
  return [layout.base, ...layout.deltas].flatMap((p) => [...p.files]);
}

for (const kind of ['level', 'heap'] as const) {
  const open = (options?: KeyedBackendOptions) => openBackend(kind, options);

  describe(`${kind} checkpoint chain: parallel run file transfers`, () => {
    test(
      'uploads overlap up to fileConcurrency; the handle lists the files in the order they were cut',
      HELD,
      async () => {
        const backend = await open({ fileConcurrency: 3 });
        try {
          fill(backend, 0, 600, 'v1');
          const io = new HeldFiles();
          // The same state, unheld first: how many files a full checkpoint of it makes.
          const count = (await checkpoint(backend, io.plain())).files.length;
          assert.ok(count >= 8, `${count} run files`);
          io.expect = (released) => Math.min(3, count - released);
          const handle = await checkpoint(backend, io.files());
          assert.equal(io.maxRunning, 3, 'three uploads at once, never more');
          assert.notDeepEqual(
            io.finished,
            io.started,
            'the uploads finished in another order than they started',
          );
          const names = handle.files.map((f) => f.path.replace(/^.*\/\d+-/, ''));
          assert.deepEqual(
            names,
            names.map((_, i) => `keyed-full-${i}`),
          );
          const expected = contents(backend);
          const fresh = await open();
          try {
            await fresh.restoreHandle!(handle, io.plain());
            assert.deepEqual(contents(fresh), expected);
          } finally {
            await fresh.close();
          }
        } finally {
          await backend.close();
        }
      },
    );

    test(
      'a restore reads ahead up to fileConcurrency and applies base and deltas in chain order',
      HELD,
      async () => {
        const backend = await open();
        const io = new HeldFiles();
        let handle: KeyedStateHandle;
        let expected: [string, unknown][];
        try {
          // Order matters: each delta overwrites and deletes keys of the base and of the delta before.
          fill(backend, 0, 300, 'base');
          const base = await checkpoint(backend, io.plain());
          fill(backend, 0, 150, 'delta one');
          for (let i = 150; i < 200; i++) backend.delete('counts', `key-${i}`);
          const one = await checkpoint(backend, io.plain(), base);
          fill(backend, 0, 50, 'delta two');
          fill(backend, 160, 170, 'back in delta two');
          backend.delete('counts', 'key-299');
          handle = await checkpoint(backend, io.plain(), one);
          assert.equal(parseChainLayout(handle, kind).deltas.length, 2);
          expected = contents(backend);
        } finally {
          await backend.close();
        }
        const paths = chainPaths(handle);
        assert.ok(paths.length >= 10, `${paths.length} run files`);

        // Through the backend: reads held and let go newest first.
        io.expect = (released) => Math.min(3, paths.length - released);
        const fresh = await open({ fileConcurrency: 3 });
        try {
          await fresh.restoreHandle!(handle, io.files());
          if (fresh instanceof LevelKeyedStateBackend) assert.equal(fresh.lastRestore?.from, 'storage');
          assert.equal(io.maxRunning, 3, 'three reads at once, never more');
          assert.notDeepEqual(
            io.finished,
            io.started,
            'the reads finished in another order than they started',
          );
          assert.deepEqual(contents(fresh), expected);
        } finally {
          await fresh.close();
        }

        // readChain itself: the callback sees the files in chain order.
        const again = new HeldFiles(io.storage);
        again.expect = (released) => Math.min(4, paths.length - released);
        const applied: string[] = [];
        await readChain(handle, parseChainLayout(handle, kind), again.files(), (r) => {
          applied.push(r.fileName);
        });
        assert.equal(again.maxRunning, 4, 'the default: four reads at once');
        assert.deepEqual(applied, paths);
      },
    );

    test('fileConcurrency 1 transfers one file after the other', HELD, async () => {
      const backend = await open({ fileConcurrency: 1 });
      try {
        fill(backend, 0, 200, 'v1');
        const io = new HeldFiles();
        const handle = await checkpoint(backend, io.files());
        assert.ok(handle.files.length >= 4);
        assert.equal(io.maxRunning, 1);
        const fresh = await open({ fileConcurrency: 1 });
        const reads = new HeldFiles(io.storage);
        try {
          await fresh.restoreHandle!(handle, reads.files());
          assert.equal(reads.maxRunning, 1);
          assert.deepEqual(reads.started, chainPaths(handle));
        } finally {
          await fresh.close();
        }
      } finally {
        await backend.close();
      }
    });

    test(
      'a failed upload among parallel ones rejects the checkpoint once the others have settled; no upload starts after it',
      HELD,
      async () => {
        const backend = await open({ fileConcurrency: 4 });
        try {
          fill(backend, 0, 400, 'v1');
          const io = new HeldFiles();
          io.expect = () => 4;
          io.fail = (name) =>
            name === 'keyed-full-1'
              ? new StreamError('CHECKPOINT_STORAGE_FAILED', `cannot write ${name}: 503 SlowDown (test)`)
              : undefined;
          const capture = backend.capture(1);
          let runningAtRejection = -1;
          await assert.rejects(
            capture.writeCheckpoint!(io.files(), undefined).finally(() => {
              runningAtRejection = io.running;
            }),
            (e: unknown) => isStreamError(e, 'CHECKPOINT_STORAGE_FAILED') && /keyed-full-1/.test(e.message),
          );
          capture.release();
          assert.equal(runningAtRejection, 0, 'no upload was still running when the checkpoint rejected');
          assert.deepEqual(io.started, ['keyed-full-0', 'keyed-full-1', 'keyed-full-2', 'keyed-full-3']);
          // The backend goes on: the next checkpoint is whole and restores.
          fill(backend, 0, 10, 'v2');
          const expected = contents(backend);
          const handle = await checkpoint(backend, io.plain());
          const fresh = await open();
          try {
            await fresh.restoreHandle!(handle, io.plain());
            assert.deepEqual(contents(fresh), expected);
          } finally {
            await fresh.close();
          }
        } finally {
          await backend.close();
        }
      },
    );

    test(
      'a failed read rejects the restore at its turn: the files before it applied, none after it',
      HELD,
      async () => {
        const backend = await open();
        let handle: KeyedStateHandle;
        const io = new HeldFiles();
        try {
          fill(backend, 0, 300, 'v1');
          handle = await checkpoint(backend, io.plain());
        } finally {
          await backend.close();
        }
        const paths = chainPaths(handle);
        const bad = paths[2]!;
        io.expect = (released) => Math.min(4, paths.length - released);
        io.fail = (path) =>
          path === bad
            ? new StreamError('CHECKPOINT_NOT_FOUND', `checkpoint file ${path} does not exist`)
            : undefined;
        const applied: string[] = [];
        await assert.rejects(
          readChain(
            handle,
            parseChainLayout(handle, kind),
            io.files(),
            (r) => {
              applied.push(r.fileName);
            },
            4,
          ),
          (e: unknown) => isStreamError(e, 'CHECKPOINT_NOT_FOUND') && e.message.includes(bad),
        );
        assert.deepEqual(applied, paths.slice(0, 2));
        // Through the backend: the restore fails naming the file and leaves an empty backend.
        const fresh = await open();
        try {
          await assert.rejects(fresh.restoreHandle!(handle, io.files()), (e: unknown) =>
            isStreamError(e, 'CHECKPOINT_NOT_FOUND'),
          );
          assert.deepEqual(contents(fresh), []);
        } finally {
          await fresh.close();
        }
      },
    );

    test('fileConcurrency must be an integer from 1 to 64', async () => {
      for (const bad of [0, 65, 1.5]) {
        await assert.rejects(
          open({ fileConcurrency: bad }),
          (e: unknown) =>
            isStreamError(e, 'CONFIG_INVALID') &&
            e.message.includes(`${kind} backend.fileConcurrency must be`),
        );
      }
      const files = new HeldFiles().plain();
      assert.throws(() => new RunFilesWriter(files, 'x', FILE_BYTES, 0), /fileConcurrency/);
    });
  });
}

describe('heap checkpoint chain: a value that fails to serialize mid-checkpoint', () => {
  test(
    'the checkpoint rejects only once no upload of it runs, and starts none after the failure',
    HELD,
    async () => {
      const text = new TextEncoder();
      const serializer = userSerializer<string>(
        'user:picky',
        1,
        (v) => {
          if (v === 'bad') throw new Error('cannot encode bad');
          return text.encode(v);
        },
        (b) => new TextDecoder().decode(b),
      );
      const backend = new HeapKeyedStateBackend({ fileBytes: FILE_BYTES, fileConcurrency: 4 });
      try {
        backend.register({ ...META, serializerId: 'user:picky' }, serializer);
        fill(backend, 0, 600, 'v1');
        backend.put('counts', 'last', 'bad'); // written last, so read last: files are uploading by then
        const io = new HeldFiles();
        const capture = backend.capture(1);
        let runningAtRejection = -1;
        await assert.rejects(
          capture.writeCheckpoint!(io.files(), undefined).finally(() => {
            runningAtRejection = io.running;
          }),
          (e: unknown) => isStreamError(e, 'CHECKPOINT_DECLINED') && /'counts' key "last"/.test(e.message),
        );
        capture.release();
        assert.ok(io.started.length >= 1, 'uploads had started');
        assert.equal(runningAtRejection, 0, 'no upload was still running when the checkpoint rejected');
        const started = io.started.length;
        await new Promise((r) => setImmediate(r));
        assert.equal(io.started.length, started, 'no upload started after the rejection');
      } finally {
        await backend.close();
      }
    },
  );
});

describe('level checkpoint chain: a failed upload in a running job', () => {
  /** Memory storage that fails the upload of the second run file of one checkpoint of each task. */
  class FailingStorage extends MemoryCheckpointStorage {
    /** Task id -> the checkpoint whose upload failed. */
    readonly failed = new Map<string, number>();
    /** No more failures once set. */
    stop = false;
    /** Failed checkpoints the task has reported (`<taskId>/<id>`). */
    readonly reported = new Set<string>();
    /** Uploads of a failed checkpoint that settled after the task reported the failure. */
    readonly late: string[] = [];
    constructor() {
      super({ retain: 100 });
    }
    override async writeFile(scope: Scope, id: number, name: string, bytes: Uint8Array): Promise<FileRef> {
      const fails = !this.stop && !this.failed.has(scope.taskId) && /^keyed-(full|delta)-1-/.test(name);
      if (fails) this.failed.set(scope.taskId, id);
      try {
        // Every upload takes turns of the event loop, so the others are in flight meanwhile.
        for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
        if (fails) {
          throw new StreamError(
            'CHECKPOINT_STORAGE_FAILED',
            `cannot write ${name}: 500 InternalError (test)`,
          );
        }
        for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
        return await super.writeFile(scope, id, name, bytes);
      } finally {
        if (this.reported.has(`${scope.taskId}/${id}`)) this.late.push(`${scope.taskId}/${id}/${name}`);
      }
    }
  }

  test('the checkpoint fails with the error, leaves no metadata and no file, and the job ends as without failures', async () => {
    const input = makeInput(3000, 20);
    const ref = buildJob('parallel-fail', input, 2);
    const refStorage = new MemoryCheckpointStorage();
    const refJob = runJob(ref.graph, { storage: refStorage, checkpoints: { intervalMs: 0 } });
    await refJob.done;

    const storage = new FailingStorage();
    const j = buildJob('parallel-fail', input, 2);
    // The sources wait until the failed checkpoints are reported, so the job cannot end before.
    let release!: () => void;
    const released = new Promise<void>((r) => {
      release = r;
    });
    j.orders.beforePoll = async (_p, position) => {
      if (position >= 700) await released;
    };
    j.payments.beforePoll = async (_p, position) => {
      if (position >= 500) await released;
    };
    const failures: { taskId: string; checkpointId: number; error: unknown }[] = [];
    const job = runJob(j.graph, {
      storage,
      backend: levelBackend(temporaryDirectory(), { fileBytes: FILE_BYTES, fileConcurrency: 4 }),
      // Full checkpoints: several run files each once a few hundred records are in.
      checkpoints: { intervalMs: 1, tolerableFailures: 10, whenIdle: 'checkpoint' },
      restart: { kind: 'none' },
      listener: {
        checkpointFailed: (f) => {
          storage.reported.add(`${f.taskId}/${f.checkpointId}`);
          failures.push(f);
          if (failures.length === storage.failed.size) {
            storage.stop = true;
            release();
          }
        },
      },
    });
    await job.done;
    assert.ok(storage.failed.size >= 1);
    assert.equal(failures.length, storage.failed.size);
    for (const f of failures) {
      assert.equal(f.checkpointId, storage.failed.get(f.taskId));
      assert.match(String((f.error as Error).message), /keyed-(full|delta)-1-.*500 InternalError/);
    }
    assert.deepEqual(storage.late, [], 'no upload of a failed checkpoint settled after its failure');
    for (const [taskId, failedId] of storage.failed) {
      const scope = { jobId: 'parallel-fail', taskId };
      const ids = (await storage.list(scope)).map((m) => m.checkpointId);
      assert.ok(
        !ids.includes(failedId),
        `${taskId}: no metadata of checkpoint ${failedId} (${ids.join(', ')})`,
      );
      assert.ok(
        ids.some((id) => id > failedId),
        `${taskId}: later checkpoints completed`,
      );
      assert.deepEqual(
        storage.paths().filter((p) => p.startsWith(`parallel-fail/${taskId}/files/${failedId}-`)),
        [],
        `${taskId}: no file of checkpoint ${failedId} is left`,
      );
    }
    assert.deepEqual(sorted(j.sink.output.committed), sorted(ref.sink.output.committed));
    assert.deepEqual(
      await finalKeyedState(storage, 'parallel-fail', job.plan),
      await finalKeyedState(refStorage, 'parallel-fail', refJob.plan),
    );
  });
});
