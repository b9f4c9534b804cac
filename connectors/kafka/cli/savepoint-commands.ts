import { join } from 'node:path';
import {
  estimateRescale,
  exportSavepointToDirectory,
  importSavepointFromDirectory,
  type JobSavepoint,
  LevelKeyedStateBackend,
  type PositionQuery,
  readJobSavepoint,
  rescaleSavepoint,
  type SavepointSizeEstimate,
  type SavepointWriteProgress,
  StreamError,
} from '../../../framework/index.ts';
import { type Admin, Kafka, logLevel } from '../internal/kafkajs.ts';
import type { ServiceConfig } from './config.ts';
import { openCheckpointStorage, openSavepointFiles, type ServiceStorage } from './storage.ts';

/**
 * `kstate savepoint rescale | export | import`: offline operations on a job's savepoints in its
 * checkpoint storage, a directory or an s3:// prefix (docs/savepoints.md). Export writes, and import
 * reads, NDJSON in a directory or an s3:// prefix. Each prints one JSON line saying what it wrote.
 */

type Out = (line: string) => void;
type Warn = (line: string) => void;

/**
 * `fn` with the configured checkpoint storage (a directory is never created by these commands), and
 * the job's task ids; closed after.
 */
async function withStorage<T>(
  config: ServiceConfig,
  jobId: string,
  fn: (storage: ServiceStorage, taskIds: string[]) => Promise<T>,
): Promise<T> {
  const storage = await openCheckpointStorage(config, { purpose: 'read' });
  try {
    // The job's scopes, its `_topology` record among them (readJobSavepoint skips what is no task).
    return await fn(storage, await storage.tasks(jobId));
  } finally {
    storage.close?.();
  }
}

/** The task ids, or CHECKPOINT_NOT_FOUND when the job has none. */
function needTasks(config: ServiceConfig, jobId: string, taskIds: string[]): string[] {
  if (taskIds.length === 0)
    throw new StreamError(
      'CHECKPOINT_NOT_FOUND',
      `job ${jobId} has no checkpoints in ${config.checkpointStorage}`,
    );
  return taskIds;
}

function scratch(config: ServiceConfig) {
  const dir = join(config.stateDir, '.savepoint', String(process.pid));
  return (scope: { taskId: string }) => LevelKeyedStateBackend.open({ directory: join(dir, scope.taskId) });
}

/** A new savepoint of at least this many tasks, or bytes, gets the size and time warning. */
const LARGE_TASKS = 1000;
const LARGE_BYTES = 1024 ** 3;
/** A progress line at most this often (KSTATE_PROGRESS_INTERVAL_MS overrides it, for tests). */
const PROGRESS_INTERVAL_MS = 5000;
/** The time estimate waits for this long a sample of the writing. */
const SAMPLE_MS = 1000;

function formatBytes(n: number): string {
  if (n < 1024 * 1024) return `${Math.max(1, Math.round(n / 1024))} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(1)} GB`;
}

function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/**
 * What a savepoint write says on stderr: with `estimate` of a large one, a warning with its size
 * before anything is written (`before()`) and one with the time once the first tasks give the rate;
 * a progress line every few seconds (tasks, bytes, time, time left); and the commit point.
 */
function writeReporter(
  warn: Warn,
  command: string,
  name: string,
  o: { estimate?: SavepointSizeEstimate; tasks?: number; from?: string; filesystem: boolean },
) {
  const interval = Number(process.env.KSTATE_PROGRESS_INTERVAL_MS) || PROGRESS_INTERVAL_MS;
  const tasks = o.estimate?.tasks ?? o.tasks;
  const large =
    tasks !== undefined &&
    (tasks >= LARGE_TASKS || (o.estimate !== undefined && o.estimate.bytes >= LARGE_BYTES));
  let timed = !large;
  let last = Date.now();
  /** When the commit point was passed (ms into the write), once it was. */
  let committed: number | undefined;
  return {
    before(): void {
      if (!large || o.estimate === undefined) return;
      const e = o.estimate;
      // A directory also holds 3 directories and 3 files per task (metadata included), in blocks.
      const disk = o.filesystem ? `, about ${formatBytes(e.bytes + e.tasks * 6 * 4096)} on disk` : '';
      warn(
        `kstate: warning: savepoint '${name}' will have ${e.tasks} tasks: about ${formatBytes(e.bytes)} of state files${disk} (estimated from ${o.from ? `'${o.from}'` : 'the source'}: ${e.sourceTasks} tasks, ${formatBytes(e.sourceBytes)}, ${formatBytes(e.perTaskBytes)} per task besides its keys); the time follows once the first tasks are written. Nothing is visible under '${name}' until the write completes: stopping it (Ctrl-C) leaves nothing there, and the next command removes what it wrote`,
      );
    },
    progress(p: SavepointWriteProgress): void {
      const now = Date.now();
      if (!timed && p.phase === 'files' && p.elapsedMs >= SAMPLE_MS && p.done > 0) {
        timed = true;
        // The metadata after the commit point take about as long as the files (measured: 28 s and
        // 27 s for 10,000 tasks in a directory).
        const files = (p.elapsedMs / p.done) * p.total;
        warn(
          `kstate: warning: writing savepoint '${name}' (${p.total} tasks) takes about ${formatDuration(2 * files)} in all, at the rate of its first ${p.done} tasks (${(p.done / (p.elapsedMs / 1000)).toFixed(0)} tasks/s; the tasks' metadata after them take about as long again)`,
        );
        last = now;
      }
      if (p.phase === 'publish' && committed === undefined) {
        committed = p.elapsedMs;
        if (p.total >= LARGE_TASKS || p.elapsedMs >= interval)
          warn(
            `kstate: ${command} '${name}': all ${p.total} tasks' files written (${formatBytes(p.bytes)}, ${formatDuration(p.elapsedMs)}); committed, writing the tasks' metadata`,
          );
        last = now;
        return;
      }
      if (now - last < interval || p.done === p.total) return;
      last = now;
      const rate = p.done / Math.max(1, p.elapsedMs - (p.phase === 'publish' ? (committed ?? 0) : 0));
      const left = (p.total - p.done) / Math.max(rate, 1e-9);
      warn(
        p.phase === 'files'
          ? `kstate: ${command} '${name}': ${p.done} of ${p.total} tasks written (${formatBytes(p.bytes)}), ${formatDuration(p.elapsedMs)}, about ${formatDuration(left)} left before the commit`
          : `kstate: ${command} '${name}': committed; metadata of ${p.done} of ${p.total} tasks written, about ${formatDuration(left)} left`,
      );
    },
    log(line: string): void {
      warn(`kstate: ${line}`);
    },
  };
}

/**
 * `--to 8` (every stage) or `--to stageA=8,stageB=4` (the stages named; others keep their count).
 * Returns the count for a stage given its old count.
 */
export function parseCounts(raw: string, flag: string): (stage: string, old: number) => number {
  const positive = (s: string) => {
    const n = Number(s);
    if (!Number.isSafeInteger(n) || n < 1 || n > 100_000 || String(n) !== s.trim())
      throw new StreamError(
        'CONFIG_INVALID',
        `${flag} ${JSON.stringify(raw)}: '${s}' is not a partition count (an integer 1..100000)`,
      );
    return n;
  };
  if (!raw.includes('=')) {
    const n = positive(raw);
    return () => n;
  }
  const map = new Map<string, number>();
  for (const part of raw.split(',')) {
    const [stage, count] = part.split('=');
    if (!stage || count === undefined)
      throw new StreamError(
        'CONFIG_INVALID',
        `${flag} ${JSON.stringify(raw)}: expected <count> or <stage>=<count>[,...]`,
      );
    map.set(stage, positive(count));
  }
  return (stage, old) => map.get(stage) ?? old;
}

function parseTopicMap(raw: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (const r of raw) {
    const [from, to] = r.split('=');
    if (!from || !to)
      throw new StreamError(
        'CONFIG_INVALID',
        `--topic ${JSON.stringify(r)}: expected <old topic>=<new topic>`,
      );
    map.set(from, to);
  }
  return map;
}

interface KafkaPos {
  readonly topic: string;
  readonly offset: string;
}
function kafkaPos(p: unknown): KafkaPos | undefined {
  const o = p as { topic?: unknown; offset?: unknown } | undefined;
  return typeof o?.topic === 'string' && (typeof o.offset === 'string' || typeof o.offset === 'number')
    ? { topic: o.topic, offset: String(o.offset) }
    : undefined;
}

/** Per stage: the Kafka topic of each partitioned source (from task 0's positions), after `--topic`. */
function stageTopics(sp: JobSavepoint, rename: Map<string, string>) {
  return sp.stages.map((s) => {
    const bySource = new Map<string, { old: string; now: string }>();
    for (const c of s.tasks[0]!.payload.channels) {
      const k = kafkaPos(c.position);
      if (k && c.partition === 0 && !bySource.has(c.source))
        bySource.set(c.source, { old: k.topic, now: rename.get(k.topic) ?? k.topic });
    }
    return { stage: s.stage, partitions: s.partitions, bySource };
  });
}

async function connectAdmin(config: ServiceConfig, warn: Warn): Promise<Admin | undefined> {
  // One quick attempt: an unreachable cluster is reported, not retried for a minute.
  const admin = new Kafka({
    clientId: 'kstate-savepoint',
    brokers: [...config.brokers],
    connectionTimeout: 3000,
    logLevel: logLevel.NOTHING,
    retry: { retries: 1, initialRetryTime: 200, maxRetryTime: 1000 },
  }).admin();
  try {
    await admin.connect();
    await admin.listTopics();
    return admin;
  } catch (e) {
    await admin.disconnect().catch(() => undefined);
    warn(
      `kstate: cannot reach the brokers ${config.brokers.join(',')} (${e instanceof Error ? e.message : String(e)}): partition counts not checked against the topics; a job refuses at start a savepoint whose partition count differs from its input topics`,
    );
    return undefined;
  }
}

export async function rescaleCommand(
  config: ServiceConfig,
  jobId: string,
  savepoint: string,
  o: { to: string; as: string; topics: readonly string[]; offline: boolean },
  out: Out,
  warn: Warn,
): Promise<void> {
  const counts = parseCounts(o.to, '--to');
  const rename = parseTopicMap(o.topics);
  await withStorage(config, jobId, (storage, taskIds) =>
    rescale(
      config,
      storage,
      jobId,
      needTasks(config, jobId, taskIds),
      savepoint,
      o,
      counts,
      rename,
      out,
      warn,
    ),
  );
}

async function rescale(
  config: ServiceConfig,
  storage: ServiceStorage,
  jobId: string,
  taskIds: string[],
  savepoint: string,
  o: { as: string; offline: boolean },
  counts: (stage: string, old: number) => number,
  rename: Map<string, string>,
  out: Out,
  warn: Warn,
): Promise<void> {
  const sp = await readJobSavepoint(storage, jobId, taskIds, savepoint, scratch(config));
  const topics = stageTopics(sp, rename);
  const low = new Map<string, Map<number, string>>();
  const admin = o.offline ? undefined : await connectAdmin(config, warn);
  if (admin) {
    try {
      for (const st of topics) {
        const m = counts(st.stage, st.partitions);
        for (const { old, now } of st.bySource.values()) {
          const meta = await admin.fetchTopicMetadata({ topics: [now] }).catch(() => undefined);
          const have = meta?.topics[0]?.partitions.length;
          if (have === undefined)
            throw new StreamError(
              'RESCALE_UNSUPPORTED',
              `topic ${now} does not exist: create it with ${m} partitions first`,
            );
          if (have !== m) {
            throw new StreamError(
              'RESCALE_UNSUPPORTED',
              `topic ${now} has ${have} partitions, but stage ${st.stage} would have ${m}: give the topic ${m} partitions first (kafka-topics.sh --alter --topic ${now} --partitions ${m}; Kafka only adds partitions) or rescale --to ${have}`,
            );
          }
          const offsets = await admin.fetchTopicOffsets(now);
          low.set(now, new Map(offsets.map((p) => [p.partition, p.low])));
          if (old === now) {
            // Records after the savepoint in an old partition are read by that partition's task; a
            // key that moved to another key group fails it (KEY_GROUP_MISMATCH). Say so before.
            const high = new Map(offsets.map((p) => [p.partition, BigInt(p.high)]));
            for (const t of sp.stages.find((s) => s.stage === st.stage)!.tasks) {
              for (const c of t.payload.channels) {
                const k = kafkaPos(c.position);
                if (!k || k.topic !== now) continue;
                const h = high.get(c.partition);
                if (h !== undefined && BigInt(k.offset) < h)
                  warn(
                    `kstate: warning: ${now}/${c.partition} has ${h - BigInt(k.offset)} records after the savepoint's position ${k.offset}; those written before the partitions were added fail the job with KEY_GROUP_MISMATCH if their key moved (drain the input before taking a savepoint to rescale: docs/savepoints.md)`,
                  );
              }
            }
          }
        }
      }
    } finally {
      await admin.disconnect();
    }
  }
  const position = (q: PositionQuery & { stage: string }): unknown => {
    const k = kafkaPos(q.old);
    if (q.broadcast) return k && rename.has(k.topic) ? undefined : q.old;
    const topic = topics.find((t) => t.stage === q.stage)?.bySource.get(q.source);
    if (k && topic && k.topic !== topic.now) {
      // The job reads another topic now: its offsets start where that topic starts.
      const start = low.get(topic.now)?.get(q.partition);
      return start === undefined ? undefined : { topic: topic.now, offset: start };
    }
    if (q.old !== undefined) return q.old;
    const start = topic ? low.get(topic.now)?.get(q.partition) : undefined;
    return start === undefined ? undefined : { topic: topic!.now, offset: start };
  };
  const reporter = writeReporter(warn, 'rescale', o.as, {
    estimate: estimateRescale(sp, counts),
    from: savepoint,
    filesystem: storage.kind === 'filesystem',
  });
  reporter.before();
  const report = await rescaleSavepoint(storage, jobId, taskIds, savepoint, {
    as: o.as,
    partitions: counts,
    position,
    openBackend: scratch(config),
    savepoint: sp,
    progress: reporter.progress,
    log: reporter.log,
  });
  out(
    JSON.stringify({
      savepoint: o.as,
      from: savepoint,
      checkpointId: report.checkpointId,
      stages: report.stages,
      tasks: report.written.map((m) => m.taskId),
      checked: admin !== undefined,
    }),
  );
}

export async function exportCommand(
  config: ServiceConfig,
  jobId: string,
  savepoint: string,
  outDir: string,
  out: Out,
): Promise<void> {
  const files = await openSavepointFiles(outDir, config, '--out');
  try {
    // The target first: a missing bucket or refused credentials of --out fail before anything is read.
    await files.isEmpty();
    const { manifest } = await withStorage(config, jobId, (storage, taskIds) =>
      exportSavepointToDirectory(
        storage,
        jobId,
        needTasks(config, jobId, taskIds),
        savepoint,
        files,
        scratch(config),
      ),
    );
    out(
      JSON.stringify({
        savepoint,
        out: files.location,
        files: manifest.states.map((s) => ({ file: s.file, type: s.type, rows: s.rows })),
      }),
    );
  } finally {
    files.close?.();
  }
}

export async function importCommand(
  config: ServiceConfig,
  jobId: string,
  o: { from: string; as: string; partitions: string | undefined },
  out: Out,
  warn: Warn = (line) => process.stderr.write(`${line}\n`),
): Promise<void> {
  const counts = o.partitions ? parseCounts(o.partitions, '--partitions') : (_: string, n: number) => n;
  const files = await openSavepointFiles(o.from, config, '--from');
  try {
    const r = await withStorage(config, jobId, (storage, taskIds) => {
      let reporter: ReturnType<typeof writeReporter> | undefined;
      return importSavepointFromDirectory(storage, jobId, files, {
        as: o.as,
        partitions: counts,
        existingTaskIds: taskIds,
        progress: (p) => {
          reporter ??= writeReporter(warn, 'import', o.as, {
            tasks: p.total,
            filesystem: storage.kind === 'filesystem',
          });
          reporter.progress(p);
        },
        log: (line) => warn(`kstate: ${line}`),
      });
    });
    out(
      JSON.stringify({
        savepoint: o.as,
        from: files.location,
        checkpointId: r.checkpointId,
        tasks: r.written.map((m) => m.taskId),
        states: r.manifest.states.length,
      }),
    );
  } finally {
    files.close?.();
  }
}
