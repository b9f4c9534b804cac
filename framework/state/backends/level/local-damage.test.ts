import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  closeSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { describe, test } from 'node:test';
import { isStreamError } from '../../../api/errors.ts';
import { MemoryCheckpointStorage } from '../../../checkpoint/storage/memory.ts';
import type { CheckpointFiles, KeyedStateHandle, StateMeta } from '../../backend.ts';
import { type LevelBackendOptions, LevelKeyedStateBackend } from './level.ts';
import { logRecords, replayEdits } from './local-check.ts';
import { temporaryDirectory } from './testing.ts';

/**
 * Damage of the local copy (the task's working LevelDB) that checkpoint storage can rebuild is
 * rebuilt: the restore that follows a damaged open drops the local copy, rebuilds it from the
 * checkpoint's files, and warns once naming the database and the cause. Every test damages one
 * kind of file of a database large enough to have table files (`.ldb`, written by memtable flushes
 * and compactions) as well as a log, restores the checkpoint, and compares every key's value with
 * what was checkpointed. Damage of checkpoint storage itself stays an error.
 */

const META: StateMeta = { name: 'counts', kind: 'value', serializerId: 'msgpack', serializerVersion: 1 };
const SCOPE = { jobId: 'local-damage', taskId: 's0-p0' };
/** Small memtables (LevelDB's table files are 1 MiB at least), so that 7 MB of state make many `.ldb` files. */
const OPTIONS: Partial<LevelBackendOptions> = {
  writeBatchEntries: 256,
  cacheEntries: 1000,
  leveldb: { writeBufferSize: 256 << 10 },
};
const KEYS = 20_000;

class Files {
  readonly storage = new MemoryCheckpointStorage();
  #id = 0;

  files(): CheckpointFiles {
    const id = ++this.#id;
    return {
      write: (name, bytes) => this.storage.writeFile(SCOPE, id, name, bytes),
      read: (ref) => this.storage.readFile(ref),
    };
  }
}

/** A value that snappy cannot shrink much (hex of a hash): a damaged byte stays a damaged byte. */
function value(tag: string, i: number): string {
  const hex = (s: string) => createHash('sha512').update(s).digest('hex');
  return `${tag} ${i} ${hex(`${tag}/${i}`)}${hex(`${i}/${tag}`)}`;
}

async function open(directory: string) {
  const warnings: string[] = [];
  const backend = await LevelKeyedStateBackend.open({
    directory,
    onWarning: (m) => warnings.push(m),
    ...OPTIONS,
  });
  backend.register(META);
  return { backend, warnings };
}

function contents(backend: LevelKeyedStateBackend): Map<string, unknown> {
  return new Map(backend.entries('counts').sort(([a], [b]) => (a < b ? -1 : 1)) as [string, unknown][]);
}

/**
 * A checkpointed state in `directory`: 20 000 keys, then overwrites, deletes and new keys (the last
 * of them, with the capture's marker, still in the log), closed after the checkpoint.
 */
async function checkpointed(): Promise<{
  directory: string;
  io: Files;
  handle: KeyedStateHandle;
  expected: Map<string, unknown>;
}> {
  const directory = temporaryDirectory();
  const io = new Files();
  const { backend } = await open(directory);
  // In steps that each land before the next (one batch each, not one coalesced batch): many
  // memtables, so many table files.
  const step = async (from: number, to: number, by: number, write: (i: number) => void) => {
    for (let i = from; i < to; i += by) {
      write(i);
      if (i % 1000 < by) await backend.flushed();
    }
    await backend.flushed();
  };
  await step(0, KEYS, 1, (i) => backend.put('counts', `key-${i}`, value('v1', i)));
  await step(KEYS, KEYS + 500, 1, (i) => backend.put('counts', `key-${i}`, value('new', i)));
  await step(0, KEYS, 7, (i) => backend.delete('counts', `key-${i}`));
  // Last, overwrites of keys that exist: the log holds only those, so a record of it lost leaves
  // stale values, not missing keys.
  await step(1, KEYS, 2, (i) => i % 7 === 0 || backend.put('counts', `key-${i}`, value('v2', i)));
  const capture = backend.capture(1);
  let handle: KeyedStateHandle;
  try {
    handle = await capture.writeCheckpoint!(io.files(), undefined);
  } finally {
    capture.release();
  }
  const expected = contents(backend);
  await backend.close();
  assert.equal(expected.size, KEYS - Math.ceil(KEYS / 7) + 500);
  return { directory, io, handle, expected };
}

/**
 * The database's files, checked to be what the tests damage: several live tables (the manifest's:
 * a compaction cut short by the close may leave others behind, which LevelDB never reads), one log,
 * a manifest.
 */
function layout(directory: string) {
  const db = join(directory, 'db');
  const names = readdirSync(db);
  const current = readFileSync(join(db, 'CURRENT'), 'utf8');
  const manifest = join(db, current.trim());
  const live = replayEdits('manifest', logRecords('manifest', readFileSync(manifest), false)).tables;
  const sized = (re: RegExp) =>
    names
      .filter((n) => re.test(n))
      .map((n) => ({ path: join(db, n), size: statSync(join(db, n)).size }))
      .sort((a, b) => b.size - a.size);
  const tables = sized(/^\d+\.(ldb|sst)$/).filter((t) => live.has(Number.parseInt(basename(t.path), 10)));
  const logs = sized(/^\d+\.log$/);
  assert.ok(
    tables.length >= 3 && tables.length === live.size,
    `live tables ${[...live.keys()]}: ${names.join(' ')}`,
  );
  assert.equal(logs.length, 1, names.join(' '));
  // More than two 32 KiB log blocks: damage in the first leaves later records (the marker's) intact.
  assert.ok(logs[0]!.size > 3 * 32768, `log of ${logs[0]!.size} bytes`);
  assert.ok(statSync(manifest).size > 0);
  return { db, tables, log: logs[0]!, manifest };
}

/**
 * Damages the bytes of a value that is the key's latest (a v1 value of an even key that is not a
 * multiple of 7) in one of `tables`: a run of its hex digits, which are stored as they are (snappy
 * finds nothing to shrink in them), so that LevelDB reads another value, not an error. Returns the
 * table damaged.
 */
function scrambleValue(tables: readonly { path: string }[]): string {
  for (const { path } of tables) {
    for (const m of readFileSync(path)
      .toString('latin1')
      .matchAll(/v1 (\d+) [0-9a-f]{64}/g)) {
      const i = Number(m[1]);
      if (i % 2 === 1 || i % 7 === 0) continue;
      scramble(path, m.index + m[0].length - 32, 8);
      return path;
    }
  }
  assert.fail('no live v1 value found in the tables');
}

/** Replaces `length` bytes at `offset` of `path` with different bytes. */
function scramble(path: string, offset: number, length: number): void {
  // In place (no truncation): LevelDB may have the file mapped.
  const fd = openSync(path, 'r+');
  try {
    const bytes = Buffer.alloc(length);
    assert.equal(
      readSync(fd, bytes, 0, length, offset),
      length,
      `${path} is shorter than ${offset + length}`,
    );
    for (let i = 0; i < length; i++) bytes[i] = bytes[i]! ^ 0x5a;
    writeSync(fd, bytes, 0, length, offset);
  } finally {
    closeSync(fd);
  }
}

/** Restores `handle` on `directory` and checks the outcome: every value, and one warning. */
async function restoresAll(
  directory: string,
  io: Files,
  handle: KeyedStateHandle,
  expected: Map<string, unknown>,
  cause: RegExp,
): Promise<void> {
  const { backend, warnings } = await open(directory);
  try {
    await backend.restoreHandle(handle, io.files());
    const state = contents(backend);
    const wrong = [...expected].filter(([k, v]) => state.get(k) !== v).map(([k]) => k);
    const extra = [...state.keys()].filter((k) => !expected.has(k));
    assert.deepEqual(
      { size: state.size, wrong: wrong.slice(0, 5), wrongCount: wrong.length, extra: extra.slice(0, 5) },
      { size: expected.size, wrong: [], wrongCount: 0, extra: [] },
    );
    assert.equal(backend.lastRestore?.from, 'storage', `restored from ${backend.lastRestore?.from}`);
  } finally {
    await backend.close();
  }
  assert.equal(warnings.length, 1, `warnings: ${JSON.stringify(warnings)}`);
  assert.ok(warnings[0]!.includes(join(directory, 'db')), warnings[0]);
  assert.match(warnings[0]!, cause);
  // The rebuilt copy holds the checkpoint: the next restart reuses it, without a warning.
  const again = await open(directory);
  try {
    await again.backend.restoreHandle(handle, io.files());
    assert.equal(again.backend.lastRestore?.from, 'local');
    assert.deepEqual(contents(again.backend), expected);
    assert.deepEqual(again.warnings, []);
  } finally {
    await again.backend.close();
  }
}

describe('level backend: damage of the local copy is rebuilt from the checkpoint', () => {
  test('undamaged, the local copy is reused without a warning', async () => {
    const { directory, io, handle, expected } = await checkpointed();
    layout(directory);
    const { backend, warnings } = await open(directory);
    try {
      await backend.restoreHandle(handle, io.files());
      assert.equal(backend.lastRestore?.from, 'local');
      assert.deepEqual(contents(backend), expected);
      assert.deepEqual(warnings, []);
    } finally {
      await backend.close();
    }
  });

  test('CURRENT holding garbage', async () => {
    const s = await checkpointed();
    writeFileSync(join(layout(s.directory).db, 'CURRENT'), 'garbage');
    await restoresAll(s.directory, s.io, s.handle, s.expected, /CURRENT/);
  });

  test('CURRENT naming a missing MANIFEST', async () => {
    const s = await checkpointed();
    writeFileSync(join(layout(s.directory).db, 'CURRENT'), 'MANIFEST-999999\n');
    await restoresAll(s.directory, s.io, s.handle, s.expected, /MANIFEST-999999/);
  });

  test('CURRENT empty', async () => {
    const s = await checkpointed();
    writeFileSync(join(layout(s.directory).db, 'CURRENT'), '');
    await restoresAll(s.directory, s.io, s.handle, s.expected, /CURRENT/);
  });

  test('CURRENT missing', async () => {
    const s = await checkpointed();
    rmSync(join(layout(s.directory).db, 'CURRENT'));
    await restoresAll(s.directory, s.io, s.handle, s.expected, /CURRENT/);
  });

  test('MANIFEST truncated', async () => {
    const s = await checkpointed();
    const { manifest } = layout(s.directory);
    truncateSync(manifest, Math.floor(statSync(manifest).size / 2));
    await restoresAll(s.directory, s.io, s.handle, s.expected, /MANIFEST/);
  });

  test('MANIFEST garbage', async () => {
    const s = await checkpointed();
    const { manifest } = layout(s.directory);
    scramble(manifest, 10, 20);
    await restoresAll(s.directory, s.io, s.handle, s.expected, /MANIFEST/);
  });

  test('.log: a damaged record in its first block', async () => {
    const s = await checkpointed();
    const { log } = layout(s.directory);
    scramble(log.path, 1000, 16);
    await restoresAll(s.directory, s.io, s.handle, s.expected, /\.log/);
  });

  test('.log cut short in its last record (a crash in the middle of a write) is no damage: no warning, the marker decides', async () => {
    const s = await checkpointed();
    const { log } = layout(s.directory);
    truncateSync(log.path, log.size - 100); // the last record: the capture's batch, with the marker
    const { backend, warnings } = await open(s.directory);
    try {
      await backend.restoreHandle(s.handle, s.io.files());
      assert.equal(backend.lastRestore?.from, 'storage');
      assert.match(backend.lastRestore!.reason, /written after its last capture/);
      assert.deepEqual(contents(backend), s.expected);
      assert.deepEqual(warnings, []);
    } finally {
      await backend.close();
    }
  });

  test('.ldb: damaged value bytes inside a data block', async () => {
    const s = await checkpointed();
    const { tables } = layout(s.directory);
    scrambleValue(tables);
    await restoresAll(s.directory, s.io, s.handle, s.expected, /\.ldb/);
  });

  test('.ldb: truncated', async () => {
    const s = await checkpointed();
    const { tables } = layout(s.directory);
    truncateSync(tables[0]!.path, Math.floor(tables[0]!.size / 2));
    await restoresAll(s.directory, s.io, s.handle, s.expected, /\.ldb/);
  });

  test('.ldb: missing', async () => {
    const s = await checkpointed();
    const { tables } = layout(s.directory);
    rmSync(tables[0]!.path);
    await restoresAll(s.directory, s.io, s.handle, s.expected, /\.ldb|missing/);
  });

  test('damage found while running fails the task with LOCAL_STATE_DAMAGED (a restart, not a permanent failure); the next open rebuilds', async () => {
    const s = await checkpointed();
    const { tables } = layout(s.directory);
    const first = await open(s.directory);
    try {
      await first.backend.restoreHandle(s.handle, s.io.files());
      assert.equal(first.backend.lastRestore?.from, 'local');
      // Every table's first blocks, under the open database: its next reads there fail.
      for (const t of tables) scramble(t.path, 0, 8000);
      assert.throws(
        () => contents(first.backend),
        (e: unknown) =>
          isStreamError(e, 'LOCAL_STATE_DAMAGED') &&
          e.permanent === false &&
          e.message.includes(join(s.directory, 'db')) &&
          /rebuilt from checkpoint storage/.test(e.message),
      );
      assert.deepEqual(first.warnings, []);
    } finally {
      await first.backend.close().catch(() => {});
    }
    await restoresAll(
      s.directory,
      s.io,
      s.handle,
      s.expected,
      /marked damaged: .*is damaged: reading state 'counts' key/,
    );
  });

  test('damaged checkpoint storage cannot rebuild it: CHECKPOINT_CORRUPT naming the file, not an empty start', async () => {
    const s = await checkpointed();
    const { tables } = layout(s.directory);
    scrambleValue(tables);
    const file = s.handle.files[0]!.path;
    s.io.storage.corrupt(file);
    const { backend, warnings } = await open(s.directory);
    try {
      await assert.rejects(backend.restoreHandle(s.handle, s.io.files()), (e: unknown) => {
        assert.ok(isStreamError(e, 'CHECKPOINT_CORRUPT'), String(e));
        assert.ok(e.message.includes(file), e.message);
        return true;
      });
      assert.equal(warnings.length, 1, `warnings: ${JSON.stringify(warnings)}`);
    } finally {
      await backend.close();
    }
    // Nor on the next attempt: the local copy left behind holds no checkpoint (no marker).
    const next = await open(s.directory);
    try {
      await assert.rejects(next.backend.restoreHandle(s.handle, s.io.files()), (e: unknown) =>
        isStreamError(e, 'CHECKPOINT_CORRUPT'),
      );
    } finally {
      await next.backend.close();
    }
  });
});
