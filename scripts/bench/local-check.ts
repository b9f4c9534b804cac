/**
 * The cost of the LevelDB backend's local damage check (framework/state/backends/level/
 * local-check.ts) against what a reuse of the local copy does anyway (LevelDB's open and a scan of
 * its keys): `--mb` MB of 1 kB values written to a fresh LevelDB, then three runs of each, printed.
 *
 *     node scripts/bench/local-check.ts [--mb=100]
 *
 * A measurement, not a test: docs/level-backend.md ("Cost") records a run.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { checkLocalCopy } from '../../framework/state/backends/level/local-check.ts';
import { intFlag } from './flags.ts';

const mb = intFlag('mb', 100);
const root = mkdtempSync(join(tmpdir(), 'kstate-local-check-'));
try {
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
      `${mb} MB, ${keys} keys: check ${check.toFixed(0)} ms, open and key scan ${(performance.now() - t).toFixed(0)} ms`,
    );
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
