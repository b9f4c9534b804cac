import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, test } from 'node:test';
import { ClassicLevel } from 'classic-level';
import { isStreamError } from '../../../api/errors.ts';
import { MemoryCheckpointStorage } from '../../../checkpoint/storage/memory.ts';
import type { CheckpointFiles, KeyedStateHandle, StateMeta } from '../../backend.ts';
import type { ChainLayout } from '../checkpoint/chain.ts';
import { type LevelBackendOptions, LevelKeyedStateBackend } from './level.ts';
import { temporaryDirectory } from './testing.ts';

const META: StateMeta = { name: 'counts', kind: 'value', serializerId: 'msgpack', serializerVersion: 1 };
const SCOPE = { jobId: 'local-recovery', taskId: 's0-p0' };

/** Checkpoint files over a memory storage, counting reads. */
class Files {
  readonly storage = new MemoryCheckpointStorage();
  reads = 0;
  #id = 0;

  files(): CheckpointFiles {
    const id = ++this.#id;
    return {
      write: (name, bytes) => this.storage.writeFile(SCOPE, id, name, bytes),
      read: (ref) => {
        this.reads++;
        return this.storage.readFile(ref);
      },
    };
  }
}

async function open(directory: string, options: Partial<LevelBackendOptions> = {}) {
  const warnings: string[] = [];
  const backend = await LevelKeyedStateBackend.open({
    directory,
    onWarning: (m) => warnings.push(m),
    ...options,
  });
  backend.register(META);
  return { backend, warnings };
}

async function checkpoint(
  backend: LevelKeyedStateBackend,
  io: Files,
  previous?: KeyedStateHandle,
): Promise<KeyedStateHandle> {
  const files = io.files();
  const capture = backend.capture(1);
  try {
    return await capture.writeCheckpoint!(files, previous);
  } finally {
    capture.release();
  }
}

function contents(backend: LevelKeyedStateBackend): Record<string, unknown> {
  return Object.fromEntries(backend.entries('counts').sort(([a], [b]) => (a < b ? -1 : 1)));
}

function fill(backend: LevelKeyedStateBackend, from: number, to: number, tag: string): void {
  for (let i = from; i < to; i++) backend.put('counts', `key-${i}`, `${tag} ${i}`);
}

/** Restores `handle` into a backend on `directory` (closing it after) and says how. */
async function restoreOn(directory: string, handle: KeyedStateHandle, io: Files) {
  const { backend, warnings } = await open(directory);
  const readsBefore = io.reads;
  try {
    await backend.restoreHandle(handle, io.files());
    return {
      from: backend.lastRestore?.from,
      reason: backend.lastRestore?.reason ?? '',
      reads: io.reads - readsBefore,
      state: contents(backend),
      warnings,
    };
  } finally {
    await backend.close();
  }
}

/** A checkpoint, then two batches written after it (the database holds no marker any more), closed. */
async function writtenAfterCapture(directory: string, io: Files) {
  const { backend } = await open(directory, { writeBatchEntries: 50 });
  fill(backend, 0, 200, 'v1');
  const handle = await checkpoint(backend, io);
  const expected = contents(backend);
  fill(backend, 0, 120, 'after the checkpoint'); // two batches of 50 reach the database
  await backend.flushed();
  await backend.close();
  return { handle, expected };
}

/** After a rebuild the database holds that checkpoint: the next restart reuses it. */
async function reusedNext(directory: string, handle: KeyedStateHandle, io: Files, expected: unknown) {
  const again = await restoreOn(directory, handle, io);
  assert.equal(again.from, 'local');
  assert.deepEqual(again.state, expected);
}

describe('level backend: local recovery', () => {
  test('a restart reuses the local database when it holds the checkpoint restored, reading no file', async () => {
    const directory = temporaryDirectory();
    const io = new Files();
    const { backend } = await open(directory);
    fill(backend, 0, 500, 'v1');
    const handle = await checkpoint(backend, io);
    const expected = contents(backend);
    fill(backend, 0, 100, 'after the checkpoint'); // in the write cache only: never written
    await backend.close();

    const r = await restoreOn(directory, handle, io);
    assert.equal(r.from, 'local');
    assert.equal(r.reads, 0, 'no checkpoint file was read');
    assert.deepEqual(r.state, expected);

    // The reused database goes on: a delta on the restored checkpoint restores elsewhere.
    const { backend: again } = await open(directory);
    await again.restoreHandle(handle, io.files());
    again.put('counts', 'key-1', 'changed');
    again.delete('counts', 'key-2');
    const delta = await checkpoint(again, io, handle);
    assert.equal(delta.type, 'incremental');
    const changed = contents(again);
    await again.close();
    const elsewhere = await restoreOn(temporaryDirectory(), delta, io);
    assert.equal(elsewhere.from, 'storage');
    assert.equal(elsewhere.reason, 'no local database');
    assert.deepEqual(elsewhere.state, changed);
  });

  test('it rebuilds from checkpoint storage when a batch was written after the capture', async () => {
    const directory = temporaryDirectory();
    const io = new Files();
    const { handle, expected } = await writtenAfterCapture(directory, io);

    const r = await restoreOn(directory, handle, io);
    assert.equal(r.from, 'storage');
    assert.match(r.reason, /written after its last capture/);
    assert.ok(r.reads > 0);
    assert.deepEqual(r.state, expected);
    await reusedNext(directory, handle, io, expected);
  });

  test('MARKER beside the database follows its marker: written with a capture, removed by the next batch', async () => {
    const directory = temporaryDirectory();
    const io = new Files();
    const marker = () =>
      readdirSync(directory).includes('MARKER') ? readFileSync(join(directory, 'MARKER'), 'utf8') : undefined;
    const { backend } = await open(directory, { writeBatchEntries: 50 });
    fill(backend, 0, 100, 'v1');
    assert.equal(marker(), undefined, 'no capture yet');
    const handle = await checkpoint(backend, io);
    await backend.flushed();
    assert.equal(marker(), `${(handle.layout as ChainLayout).token}\n`);
    fill(backend, 0, 120, 'v2'); // batches after the capture: the database holds no marker any more
    await backend.flushed();
    assert.equal(marker(), undefined);
    await backend.close();
  });

  test('a database without a marker is dropped at open unread: damage in its files is not even looked at, and the restore rebuilds', async () => {
    const directory = temporaryDirectory();
    const io = new Files();
    const { handle, expected } = await writtenAfterCapture(directory, io);
    // Garbage where LevelDB and the check both look first: a checked database would be reported damaged.
    writeFileSync(join(directory, 'db', 'CURRENT'), 'garbage');

    const r = await restoreOn(directory, handle, io);
    assert.equal(r.from, 'storage');
    assert.match(r.reason, /written after its last capture \(no MARKER file: dropped at open, unread\)/);
    assert.deepEqual(r.warnings, [], 'not checked, so nothing to warn about');
    assert.deepEqual(r.state, expected);
    await reusedNext(directory, handle, io, expected); // the rebuild wrote its MARKER too
  });

  test('a database that holds a marker but lost its MARKER file (a crash before it was written) is rebuilt, not reused: slower, never wrong', async () => {
    const directory = temporaryDirectory();
    const io = new Files();
    const { backend } = await open(directory);
    fill(backend, 0, 100, 'v1');
    const handle = await checkpoint(backend, io);
    const expected = contents(backend);
    await backend.close();
    rmSync(join(directory, 'MARKER'));

    const r = await restoreOn(directory, handle, io);
    assert.equal(r.from, 'storage');
    assert.match(r.reason, /no MARKER file/);
    assert.deepEqual(r.state, expected);
  });

  test('it rebuilds when the database holds a later capture than the checkpoint restored', async () => {
    const directory = temporaryDirectory();
    const io = new Files();
    const { backend } = await open(directory);
    fill(backend, 0, 100, 'v1');
    const first = await checkpoint(backend, io);
    const expected = contents(backend);
    fill(backend, 50, 150, 'v2');
    await checkpoint(backend, io, first); // say this one never completed
    await backend.close();

    const r = await restoreOn(directory, first, io);
    assert.equal(r.from, 'storage');
    assert.match(r.reason, /holds capture .* the checkpoint capture/);
    assert.deepEqual(r.state, expected);
  });

  test('a corrupt, missing or poisoned local database is replaced, with a warning, and rebuilt', async () => {
    const io = new Files();
    const directory = temporaryDirectory();
    const { backend } = await open(directory);
    fill(backend, 0, 300, 'v1');
    const handle = await checkpoint(backend, io);
    const expected = contents(backend);
    await backend.close();

    // CURRENT names the manifest; garbage there makes LevelDB refuse to open the database.
    writeFileSync(join(directory, 'db', 'CURRENT'), 'garbage');
    const corrupt = await restoreOn(directory, handle, io);
    assert.equal(corrupt.from, 'storage');
    assert.deepEqual(corrupt.state, expected);
    assert.ok(
      corrupt.warnings.length === 1 &&
        /damaged \(CURRENT/.test(corrupt.warnings[0]!) &&
        corrupt.warnings[0]!.includes(directory),
      corrupt.warnings.join('\n'),
    );

    rmSync(join(directory, 'db'), { recursive: true });
    const missing = await restoreOn(directory, handle, io);
    assert.equal(missing.from, 'storage');
    assert.deepEqual(missing.state, expected);

    // What a read that found damaged data leaves behind.
    writeFileSync(join(directory, 'POISONED'), 'state counts key key-1 is missing');
    const poisoned = await restoreOn(directory, handle, io);
    assert.equal(poisoned.from, 'storage');
    assert.deepEqual(poisoned.state, expected);
    assert.equal(poisoned.warnings.length, 1);
    assert.match(poisoned.warnings[0]!, /marked damaged: state counts key key-1 is missing/);
    assert.equal(readdirSync(directory).includes('POISONED'), false);
  });

  test('a task with no keyed state reuses its local database too, without a warning', async () => {
    // Its captures write a marker and no registry of states (issue 12: the reuse read the absent
    // registry, failed with a TypeError and rebuilt with a warning).
    const directory = temporaryDirectory();
    const io = new Files();
    const backend = await LevelKeyedStateBackend.open({ directory });
    const handle = await checkpoint(backend, io);
    await backend.close();

    const warnings: string[] = [];
    const again = await LevelKeyedStateBackend.open({ directory, onWarning: (m) => warnings.push(m) });
    const readsBefore = io.reads;
    try {
      await again.restoreHandle(handle, io.files());
      assert.deepEqual(again.lastRestore, { from: 'local', reason: '', filesRead: 0, bytesRead: 0 });
      assert.equal(io.reads, readsBefore, 'no checkpoint file was read');
      assert.deepEqual(warnings, []);
      // A state registered after the restore starts empty and checkpoints on the reused database.
      again.register(META);
      again.put('counts', 'key-1', 'v1');
      const next = await checkpoint(again, io, handle);
      await again.close();
      const r = await restoreOn(directory, next, io);
      assert.equal(r.from, 'local');
      assert.deepEqual(r.state, { 'key-1': 'v1' });
    } finally {
      await again.close();
    }
  });

  test('a database that lost entries behind the marker is rebuilt, not reused', async () => {
    const io = new Files();
    const directory = temporaryDirectory();
    const { backend } = await open(directory);
    fill(backend, 0, 100, 'v1');
    const handle = await checkpoint(backend, io);
    const expected = contents(backend);
    await backend.close();
    const db = new ClassicLevel<string, string>(join(directory, 'db'));
    const keys = await db.keys({ gte: 's', lt: 't', limit: 3 }).all();
    await db.batch(keys.map((key) => ({ type: 'del' as const, key })));
    await db.close();

    const r = await restoreOn(directory, handle, io);
    assert.equal(r.from, 'storage');
    assert.match(r.reason, /unusable.*97 entries in the local database, the checkpoint 100/);
    assert.deepEqual(r.state, expected);
    assert.ok(r.warnings.some((w) => /cannot be reused/.test(w)));
  });
});

describe('level backend: a locked directory', () => {
  const children: ChildProcess[] = [];
  after(() => {
    for (const c of children) if (c.exitCode === null) c.kill();
  });

  test('a database another process holds is CONFIG_INVALID naming the path', async () => {
    const directory = temporaryDirectory();
    const location = join(directory, 'db');
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { ClassicLevel } from 'classic-level';
         const db = new ClassicLevel(${JSON.stringify(location)});
         await db.open();
         console.log('ready');
         process.stdin.on('end', () => db.close());
         process.stdin.resume();`,
      ],
      { cwd: process.cwd(), stdio: ['pipe', 'pipe', 'inherit'] },
    );
    children.push(child);
    const lines = createInterface({ input: child.stdout! });
    const [line] = (await once(lines, 'line')) as [string];
    assert.equal(line, 'ready');

    await assert.rejects(LevelKeyedStateBackend.open({ directory }), (e: unknown) => {
      assert.ok(isStreamError(e, 'CONFIG_INVALID'), String(e));
      assert.match(e.message, /locked by another process/);
      assert.ok(e.message.includes(location), e.message);
      return true;
    });
    child.stdin!.end();
    await once(child, 'exit');
    // Released: the directory opens now.
    const backend = await LevelKeyedStateBackend.open({ directory });
    await backend.close();
  });

  test('two backends on one directory in one process: the second is refused the same way', async () => {
    const directory = temporaryDirectory();
    const first = await LevelKeyedStateBackend.open({ directory });
    try {
      await assert.rejects(
        LevelKeyedStateBackend.open({ directory }),
        (e: unknown) => isStreamError(e, 'CONFIG_INVALID') && /locked by another process/.test(e.message),
      );
    } finally {
      await first.close();
    }
  });
});
