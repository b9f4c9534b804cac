/**
 * Helpers of the savepoint tests: the `kstate` CLI as a child process, the savepoint job as a
 * service, keyed input in phases, and the final state of a savepoint read key by key.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  FilesystemCheckpointStorage,
  keyedStateValue,
  keyId,
  readJobSavepoint,
} from '../../../../framework/index.ts';
import { sendWhenReady } from './eos-helpers.ts';
import { kafkaClient } from './kafka.ts';

export const CLI = fileURLToPath(new URL('../../cli/cli.ts', import.meta.url));
export const JOB = fileURLToPath(new URL('../jobs/savepoint-job.ts', import.meta.url));

export function cli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { ...process.env, ...env }, timeout: 120_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

/** `kstate run <savepoint job> ...args` until `stop()`, which sends SIGTERM and awaits exit 0. */
export function startJob(env: Record<string, string>, args: string[] = []) {
  const child: ChildProcess = spawn(process.execPath, [CLI, 'run', JOB, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: string[] = [];
  let buf = '';
  const onData = (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop()!;
    out.push(...lines);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exit = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  return {
    out,
    exit,
    async stop(): Promise<number | null> {
      child.kill('SIGTERM');
      return exit;
    },
    /** Resolves once `n` lines match `re` (30 s). */
    async lines(re: RegExp, n: number): Promise<void> {
      const end = Date.now() + 30_000;
      while (out.filter((l) => re.test(l)).length < n) {
        if (Date.now() > end) throw new Error(`fewer than ${n} lines ${re} in:\n${out.join('\n')}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}

export const KEYS = 50;

/** Records n in [from, from + count): key `k<(n * 7) % KEYS>`. Sent keyed (Kafka's default partitioner). */
export async function produce(topic: string, from: number, count: number): Promise<void> {
  const producer = kafkaClient(`sp-producer-${from}`).producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    for (let i = from; i < from + count; i += 500) {
      const messages: { key: string; value: string }[] = [];
      for (let n = i; n < Math.min(i + 500, from + count); n++) {
        const k = `k${(n * 7) % KEYS}`;
        messages.push({ key: k, value: JSON.stringify({ k, n }) });
      }
      await sendWhenReady(() => producer.send({ topic, messages }));
    }
  } finally {
    await producer.disconnect();
  }
}

/** count, sum and the n % 3 buckets every key should have after records [0, total). */
export function expectedState(total: number): Map<string, { count: number; sum: number; buckets: number[] }> {
  const m = new Map<string, { count: number; sum: number; buckets: number[] }>();
  for (let n = 0; n < total; n++) {
    const k = `k${(n * 7) % KEYS}`;
    const s = m.get(k) ?? { count: 0, sum: 0, buckets: [0, 0, 0] };
    s.count++;
    s.sum += n;
    s.buckets[n % 3]!++;
    m.set(k, s);
  }
  return m;
}

/** Per key, `count`, `sum` and `buckets` of savepoint `name` of job `jobId`, plus the sum of the 'seen' elements. */
export async function savepointState(checkpointDir: string, jobId: string, name: string) {
  const storage = new FilesystemCheckpointStorage({ directory: checkpointDir, createDirectory: false });
  const taskIds = (await readdir(join(checkpointDir, jobId))).sort();
  const sp = await readJobSavepoint(storage, jobId, taskIds, name);
  const state = new Map<string, { count: unknown; sum: unknown; buckets: unknown }>();
  const bytes = new Map<string, string>();
  let seenElements = 0;
  for (const t of sp.stages[0]!.tasks) {
    for (let i = 0; i < KEYS; i++) {
      const k = `k${i}`;
      const count = keyedStateValue(t.keyed, 'count-sum/count', keyId(k));
      if (count === undefined) continue;
      if (state.has(k)) throw new Error(`key ${k} in two tasks of savepoint ${name}`);
      const buckets = keyedStateValue(t.keyed, 'count-sum/buckets', keyId(k)) as Map<number, number>;
      state.set(k, {
        count,
        sum: keyedStateValue(t.keyed, 'count-sum/sum', keyId(k)),
        buckets: [0, 1, 2].map((b) => buckets.get(b) ?? 0),
      });
    }
    for (const s of t.keyed.states)
      for (const [k, b] of s.entries) bytes.set(`${s.meta.name} ${k}`, Buffer.from(b).toString('hex'));
    const seen = t.operators.operators.seen?.operatorState?.states.find((s) => s.name === 'seen');
    seenElements += seen?.elements.length ?? 0;
  }
  return { sp, state, bytes, seenElements, partitions: sp.stages[0]!.partitions };
}
