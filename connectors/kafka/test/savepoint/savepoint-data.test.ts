/**
 * Done-when (d) of issue 8: an exported savepoint is read by DuckDB (and jq), and a savepoint
 * bootstrapped from NDJSON restores into a running job, which continues from the imported state.
 * Bad input: rows of the wrong type (refused with file and line), an unknown manifest version, an
 * unknown state file.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { DuckDBInstance } from '@duckdb/node-api';
import type { Admin } from '../../internal/kafkajs.ts';
import type { Out } from '../jobs/savepoint-job.ts';
import { readCommitted } from '../support/eos-helpers.ts';
import { brokersFromEnv, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';
import { cli, expectedState, KEYS, produce, savepointState, startJob } from '../support/savepoint-helpers.ts';

const FIRST = 2000;
const MORE = 1000;

describe('savepoints as data (real broker)', () => {
  let dir: string;
  let admin: Admin;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sp-data-'));
    admin = kafkaClient('sp-data-admin').admin();
    await admin.connect();
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  const envOf = (jobId: string, input: string, output: string) => ({
    SP_JOB_ID: jobId,
    SP_INPUT: input,
    SP_OUTPUT: output,
    KSTATE_BROKERS: brokersFromEnv().join(','),
    KSTATE_STATE_DIR: join(dir, 'state', jobId),
    KSTATE_CHECKPOINT_DIR: join(dir, 'checkpoints'),
    KSTATE_CHECKPOINT_INTERVAL_MS: '500',
    KSTATE_HTTP_PORT: '0',
    KSTATE_SHUTDOWN_TIMEOUT_MS: '20000',
  });

  async function runUntil(env: Record<string, string>, outputs: number, args: string[]): Promise<Out[]> {
    const job = startJob(env, args);
    let got: Out[];
    try {
      got = await readCommitted<Out>(env.SP_OUTPUT!, outputs, 90_000);
      assert.equal(got.length, outputs, job.out.slice(-20).join('\n'));
    } finally {
      assert.equal(await job.stop(), 0, job.out.slice(-20).join('\n'));
    }
    return got;
  }

  test('(d) export is read by DuckDB and jq; an NDJSON bootstrap restores into a running job that continues from it', async () => {
    const n = names('sp data');
    const [in2, out2, in3, out3] = [n.topic('in2'), n.topic('out2'), n.topic('in3'), n.topic('out3')];
    await admin.createTopics({
      topics: [
        { topic: in2, numPartitions: 2 },
        { topic: out2, numPartitions: 1 },
        { topic: in3, numPartitions: 3 },
        { topic: out3, numPartitions: 1 },
      ],
      waitForLeaders: true,
    });
    const job = n.group('job');
    const env = envOf(job, in2, out2);
    await produce(in2, 0, FIRST);
    await runUntil(env, FIRST, ['--savepoint-on-stop', 'sp']);

    const x = join(dir, 'export');
    const exported = await cli(['savepoint', 'export', job, 'sp', '--out', x], env);
    assert.equal(exported.code, 0, exported.stderr);
    const expected = expectedState(FIRST);

    // jq: the counts add up to the records; one row per key.
    const sh = promisify(execFile);
    const jq = await sh('jq', ['-s', '[length, (map(.value) | add)]', join(x, 'count-sum/count.ndjson')]);
    assert.deepEqual(JSON.parse(jq.stdout), [KEYS, FIRST]);

    // DuckDB: SQL over the NDJSON returns the same per-key values as the job's state.
    const db = await DuckDBInstance.create(':memory:');
    const conn = await db.connect();
    const file = (f: string) => `'${join(x, f).replaceAll("'", "''")}'`;
    const rows = (
      await conn.runAndReadAll(`
        SELECT c.key AS key, c.value AS count, s.value AS sum, c.keyGroup AS kg
        FROM read_json_auto(${file('count-sum/count.ndjson')}) c
        JOIN read_json_auto(${file('count-sum/sum.ndjson')}) s USING (key)
        ORDER BY key`)
    ).getRowObjectsJson() as { key: string; count: string | number; sum: string | number; kg: number }[];
    const buckets = (
      await conn.runAndReadAll(`
        SELECT key, list(value ORDER BY mapKey) AS b
        FROM read_json_auto(${file('count-sum/buckets.ndjson')}) GROUP BY key`)
    ).getRowObjectsJson() as { key: string; b: (string | number)[] }[];
    const seen = (
      await conn.runAndReadAll(`SELECT sum(value) AS s FROM read_json_auto(${file('seen/seen.ndjson')})`)
    ).getRowObjectsJson() as { s: string | number }[];
    conn.closeSync();
    assert.equal(rows.length, KEYS);
    const sp = await savepointState(join(dir, 'checkpoints'), job, 'sp');
    for (const r of rows) {
      const e = expected.get(r.key)!;
      assert.deepEqual([Number(r.count), Number(r.sum)], [e.count, e.sum], r.key);
      const s = sp.state.get(r.key)!;
      assert.deepEqual([Number(r.count), Number(r.sum)], [s.count, s.sum], r.key);
    }
    for (const b of buckets) assert.deepEqual(b.b.map(Number), expected.get(b.key)!.buckets, b.key);
    assert.equal(Number(seen[0]!.s), FIRST, 'the operator state rows: records seen per task add up');
    console.log(`# DuckDB read ${rows.length} keys x (count, sum, buckets) equal to the savepoint's state`);

    // Bootstrap a new job (3 partitions) from the files; its counts continue from the imported ones.
    const job2 = n.group('job2');
    const env2 = envOf(job2, in3, out3);
    const imported = await cli(
      ['savepoint', 'import', job2, '--from', x, '--as', 'boot', '--partitions', '3'],
      env2,
    );
    assert.equal(imported.code, 0, imported.stderr);
    assert.deepEqual((JSON.parse(imported.stdout) as { tasks: string[] }).tasks, [
      'input-p0',
      'input-p1',
      'input-p2',
    ]);
    await produce(in3, FIRST, MORE);
    const outs = await runUntil(env2, MORE, ['--from-savepoint', 'boot', '--savepoint-on-stop', 'after']);
    // Every output continues the key's running count and sum from the exported values.
    const running = new Map([...expected].map(([k, e]) => [k, { count: e.count, sum: e.sum }]));
    const byN = new Map(outs.map((o) => [o.n, o]));
    for (let i = FIRST; i < FIRST + MORE; i++) {
      const k = `k${(i * 7) % KEYS}`;
      const r = running.get(k)!;
      r.count++;
      r.sum += i;
      assert.deepEqual(byN.get(i), { k, n: i, count: r.count, sum: r.sum }, `output of record ${i}`);
    }
    const after2 = await savepointState(join(dir, 'checkpoints'), job2, 'after');
    for (const [k, e] of expectedState(FIRST + MORE)) assert.deepEqual(after2.state.get(k), e, k);

    // Bad input.
    const bad = join(dir, 'bad');
    await cp(x, bad, { recursive: true });
    const countFile = join(bad, 'count-sum/count.ndjson');
    const lines = (await readFile(countFile, 'utf8')).trim().split('\n');
    const good = lines[4]!;
    lines[4] = JSON.stringify({ ...JSON.parse(good), value: 'ten' });
    await writeFile(countFile, `${lines.join('\n')}\n`);
    const wrongType = await cli(
      ['savepoint', 'import', 'job3', '--from', bad, '--as', 'b', '--partitions', '2'],
      env2,
    );
    assert.equal(wrongType.code, 65);
    assert.match(wrongType.stderr, /count-sum\/count\.ndjson:5: value is "ten", expected a number/);
    lines[4] = good;
    await writeFile(countFile, `${lines.join('\n')}\n`);
    await writeFile(join(bad, 'count-sum', 'total.ndjson'), '{"key":"k1","value":1}\n');
    const unknown = await cli(['savepoint', 'import', 'job3', '--from', bad, '--as', 'b'], env2);
    assert.equal(unknown.code, 65);
    assert.match(unknown.stderr, /total\.ndjson: savepoint\.json does not describe this file/);
    await rm(join(bad, 'count-sum', 'total.ndjson'));
    const manifest = JSON.parse(await readFile(join(bad, 'savepoint.json'), 'utf8'));
    await writeFile(join(bad, 'savepoint.json'), JSON.stringify({ ...manifest, version: 99 }));
    const version = await cli(['savepoint', 'import', 'job3', '--from', bad, '--as', 'b'], env2);
    assert.equal(version.code, 65);
    assert.match(version.stderr, /savepoint\.json has version 99; this build reads version 1/);
    const noSavepoint = await cli(['savepoint', 'export', job, 'nope', '--out', join(dir, 'none')], env);
    assert.equal(noSavepoint.code, 69);
  });
});
