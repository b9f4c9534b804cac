/**
 * The LevelDB backend's local damage check (framework/state/backends/level/local-check.ts), two ways:
 *
 * 1. `check`: its cost against what a reuse of the local copy does anyway (LevelDB's open and a scan
 *    of its keys): `--mb` MB of 1 kB values written to a fresh LevelDB, then three runs of each.
 * 2. `restart`: a restart after a crash, whose database was written after its last capture (so it
 *    holds no local-recovery marker and the restore rebuilds it from checkpoint storage): the
 *    backend's open and restore, timed together, with the database dropped unread at open (no
 *    `MARKER` file beside it, as the backend leaves it) against checked first (a `MARKER` file put
 *    there, which is what every open did before the file existed). `--mb` MB of state through the
 *    backend API, one full checkpoint to filesystem storage, then a few thousand writes after it;
 *    three rounds alternating, the database brought back to that state between rounds.
 *
 *     node scripts/bench/local-check.ts [--mb=100] [--parts=check,restart]
 *
 * A measurement, not a test: docs/level-backend.md ("Cost") records a run.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { FilesystemCheckpointStorage } from '../../framework/checkpoint/storage/filesystem.ts';
import type { CheckpointFiles, KeyedStateHandle, StateMeta } from '../../framework/state/backend.ts';
import { LevelKeyedStateBackend } from '../../framework/state/backends/level/level.ts';
import { checkLocalCopy } from '../../framework/state/backends/level/local-check.ts';
import { flag, intFlag } from './flags.ts';

const mb = intFlag('mb', 100);
const parts = flag('parts', 'check,restart').split(',');
const root = mkdtempSync(join(tmpdir(), 'kstate-local-check-'));

async function checkPart(): Promise<void> {
  const location = join(root, 'db');
  const db = new ClassicLevel<string, string>(location);
  await db.open();
  for (let i = 0; i < mb * 1000; i += 1000) {
    const batch = db.batch();
    for (let j = i; j < i + 1000; j++) batch.put(`s1:key-${j}`, randomBytes(500).toString('hex'));
    await batch.write();
  }
  await db.close();
  for (let run = 0; run < 3; run++) {
    let t = performance.now();
    const damage = await checkLocalCopy(location);
    if (damage !== undefined) throw new Error(`the check found damage in a fresh LevelDB: ${damage}`);
    const check = performance.now() - t;
    t = performance.now();
    const again = new ClassicLevel<string, string>(location);
    await again.open();
    let keys = 0;
    for await (const _ of again.keys()) keys++;
    await again.close();
    console.log(
      `check: ${mb} MB, ${keys} keys: check ${check.toFixed(0)} ms, open and key scan ${(performance.now() - t).toFixed(0)} ms`,
    );
  }
  rmSync(location, { recursive: true, force: true });
}

const META: StateMeta = { name: 'values', kind: 'value', serializerId: 'msgpack', serializerVersion: 1 };
const SCOPE = { jobId: 'local-check', taskId: 's0-p0' };

async function restartPart(): Promise<void> {
  const directory = join(root, 'task');
  const storage = new FilesystemCheckpointStorage({ directory: join(root, 'storage') });
  const files = (id: number): CheckpointFiles => ({
    write: (name, bytes) => storage.writeFile(SCOPE, id, name, bytes),
    read: (ref) => storage.readFile(ref),
  });
  const open = async () => {
    const b = await LevelKeyedStateBackend.open({ directory, onWarning: () => {} });
    b.register(META);
    return b;
  };
  /** A few thousand writes after the capture reach the database: it holds no marker any more. */
  const writeAfter = async (b: LevelKeyedStateBackend) => {
    for (let i = 0; i < 5000; i++) b.put('values', `key-${i}`, randomBytes(500).toString('hex'));
    await b.flushed();
  };
  const keys = mb * 1000;
  let handle: KeyedStateHandle;
  {
    const b = await open();
    for (let i = 0; i < keys; i++) {
      b.put('values', `key-${i}`, randomBytes(500).toString('hex'));
      if (i % 10_000 === 9_999) await b.flushed();
    }
    const capture = b.capture(1);
    handle = await capture.writeCheckpoint!(files(1), undefined);
    capture.release();
    await writeAfter(b);
    await b.close();
  }
  const times: Record<'unread' | 'checked', number[]> = { unread: [], checked: [] };
  for (let round = 0; round < 3; round++) {
    for (const way of ['unread', 'checked'] as const) {
      if (way === 'checked') writeFileSync(join(directory, 'MARKER'), 'stale\n');
      const t = performance.now();
      const b = await open();
      await b.restoreHandle(handle, files(100 + round));
      const ms = performance.now() - t;
      if (b.lastRestore?.from !== 'storage') throw new Error(`expected a rebuild: ${b.lastRestore?.from}`);
      if (b.size('values') !== keys) throw new Error(`restored ${b.size('values')} keys, not ${keys}`);
      times[way].push(ms);
      await writeAfter(b);
      await b.close();
    }
  }
  const f = (xs: number[]) => xs.map((x) => `${(x / 1000).toFixed(2)} s`).join(', ');
  console.log(`restart after a crash, ${mb} MB (${keys} keys) rebuilt from storage: open and restore`);
  console.log(`  dropped unread (no MARKER file): ${f(times.unread)}`);
  console.log(`  checked first (a stale MARKER):  ${f(times.checked)}`);
}

try {
  if (parts.includes('check')) await checkPart();
  if (parts.includes('restart')) await restartPart();
} finally {
  rmSync(root, { recursive: true, force: true });
}
