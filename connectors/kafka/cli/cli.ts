#!/usr/bin/env node
/**
 * `kstate`: create a job's topics, run the job as a Kafka consumer-group service, and look at its
 * checkpoints.
 *
 *   kstate topics create <topic> --partitions n [--replication-factor r] [--config name=value ...] [--if-not-exists] [--json]
 *   kstate topics describe <topic...> [--json]
 *   kstate run <job module> [--config file] [--savepoint-on-stop name] [--workers n]
 *   kstate checkpoints <jobId> [--config file]
 *   kstate inspect <jobId> [--task id] [--checkpoint n | --savepoint name] [--state uid/name --key k] [--config file]
 *   kstate savepoint <name> [--port n] [--config file]
 *   kstate savepoint rescale <jobId> <savepoint> --to M --as name [--topic old=new] [--offline]
 *   kstate savepoint export <jobId> <savepoint> --out <dir | s3://bucket/prefix>
 *   kstate savepoint import <jobId> --from <dir | s3://bucket/prefix> --as name [--partitions n]
 *   kstate demo
 *   kstate --version | -V
 *
 * Every command takes --help (usage on stdout, exit 0); `kstate` alone prints the usage on stderr and
 * exits 64. Errors are one line on stderr and an exit code from exit-codes.ts (docs/service.md).
 * Every command that talks to Kafka or reads checkpoints takes the service's configuration: --config
 * file and KSTATE_* variables (config.ts); checkpoints are in a directory or an s3://bucket/prefix
 * (KSTATE_CHECKPOINT_STORAGE, storage.ts). In `topics`, a --config value of the form name=value is a
 * topic config; any other is that file.
 *
 * Only modules that load at once are imported statically: `run` installs its signal handlers
 * (./signals.ts) before the framework, the Kafka client and the job module load, which takes a second
 * or more; everything else is imported where a command needs it.
 */
import cluster from 'node:cluster';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { enableCompileCache } from 'node:module';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Key } from '../../../framework/index.ts';
import { CommandError } from './command-error.ts';
import type { ServiceConfig } from './config.ts';
import { EXIT, exitCodeFor } from './exit-codes.ts';
import { ShutdownSignals } from './signals.ts';

const framework = () => import('../../../framework/index.ts');

// Node's compile cache keeps the compiled code of every module loaded from here on (the project's
// TypeScript after type stripping, its dependencies, the job module) in $NODE_COMPILE_CACHE or the OS
// temp directory: a restart loads in about a third of the CPU time (docs/kafka.md, "Restart time").
// NODE_DISABLE_COMPILE_CACHE=1 turns it off.
enableCompileCache();

const HELP: Record<string, string> = {
  main: `kstate <command> [options]

commands:
  demo                  the demo job: a local broker (unless KAFKA_BROKERS), generated orders, exactly-once totals
  topics create|describe   create a job's topics (partitions, configs), describe topics
  run <job module>      run a job as a consumer-group service until SIGTERM
  checkpoints <jobId>   list the committed checkpoints and savepoints of a job
  inspect <jobId>       print a checkpoint's operators, key groups and sizes, or one key's value
  savepoint <name>      ask a running service (on --port) for a savepoint
  savepoint rescale|export|import   offline: re-shard a savepoint, export it as NDJSON, build one from NDJSON

configuration: --config <file.json> and KSTATE_* environment variables (docs/service.md); checkpoints
and savepoints go to a directory or s3://bucket/prefix (KSTATE_CHECKPOINT_STORAGE, KSTATE_S3_ENDPOINT)
'kstate <command> --help' shows a command's options; 'kstate --version' the version.`,
  topics: `kstate topics create <topic> --partitions n [--replication-factor r] [--config name=value ...] [--if-not-exists] [--json]
kstate topics describe <topic...> [--json]

A job never creates its topics: create its input and output topics first. The partition count of a
job's input is the number of its tasks (and key groups); Kafka can add partitions later but never
remove them, and state must be rescaled when they change (docs/savepoints.md).
  create    --partitions n (required); --replication-factor r (default: the brokers'
            default.replication.factor); --config name=value, repeatable, a topic config such as
            retention.ms=-1 or cleanup.policy=compact; --if-not-exists: an existing topic is
            accepted as it is (exit 0; a difference from what was asked is a warning on stderr).
            Prints the topic as created (read back from the brokers).
  describe  partitions (leader, replicas, in-sync replicas) and the configs set on the topic.
  --json    one JSON line per topic: {"topic", "partitions": [{"partition", "leader", "replicas",
            "isr", "offline"}], "replicationFactor", "configs"} (create adds "created").
The brokers are those of 'kstate run': --config file (a --config value that is not name=value),
KSTATE_BROKERS or KAFKA_BROKERS. Exit codes: 64 bad arguments; 65 the topic exists, or the brokers
refuse the partition count, replication factor, a config or the name; 69 no broker answers (the
addresses tried are named) or, for describe, a topic does not exist; 77 not authorized.`,
  demo: `kstate demo

Runs the main demo job (examples/orders: per-customer running totals in LevelDB state, exactly once
into Kafka) as a service, fed by a data generator. Uses the cluster KAFKA_BROKERS names, or starts a
local Kafka broker (fetched once from Maven Central with mvn, run with java 17). State and checkpoints
go under ./.demo/. Ctrl-C (or DEMO_SECONDS=n) stops it; it then drains and checks every committed total
against the generator's tally, and exits 1 if one is off. DEMO_RATE sets the orders per second.`,
  run: `kstate run <job module> [--config file] [--savepoint-on-stop name] [--from-savepoint name] [--allow-non-restored-state] [--workers n]

Runs the job the module exports (default export: a StreamJob, or a function of the configuration
returning one) as a member of the consumer group <jobId>. SIGTERM or SIGINT takes a final checkpoint,
commits it, leaves the group and exits 0 within shutdownTimeoutMs; a second signal exits at once (130).
HTTP (httpPort): /metrics /livez /readyz /status; POST /savepoint?name= only with an admin token
(KSTATE_ADMIN_TOKEN; docs/service.md "Exposing the HTTP port"). With --workers n, n workers
(node:cluster) join the group and the primary serves one /metrics for all of them. --from-savepoint
starts every task from that savepoint instead of its latest checkpoint (start one instance with it,
and without it once that instance has committed a checkpoint: docs/savepoints.md). When the job's
stages changed since its last run (or since the savepoint), state is found by operator uid; state no
operator claims refuses the start (exit 78) unless --allow-non-restored-state drops it
(KSTATE_ALLOW_NON_RESTORED_STATE; docs/savepoints.md "Job changes").`,
  checkpoints: `kstate checkpoints <jobId> [--config file]

Lists, per task, the committed checkpoints (id, time, size, full or incremental) and the savepoints
in the checkpoint storage: a directory or s3://bucket/prefix (KSTATE_CHECKPOINT_STORAGE; an object
store other than AWS S3 with KSTATE_S3_ENDPOINT; credentials from the AWS SDK's chain, AWS_* variables).
Exit codes: 69 no checkpoints, no such directory or bucket, or the store cannot be reached; 77 the
store refused the credentials; 78 a bad setting.`,
  inspect: `kstate inspect <jobId> [--task id] [--checkpoint n | --savepoint name] [--state uid/name --key k] [--config file]

Prints the latest checkpoint of each task (or the one asked for): positions, operators, keyed states
with entry counts and sizes. With --state <operator uid>/<state name> and --key, the value of that key
as one JSON line {"task", "state", "key", "value"} ("ttl" with TTL), in the JSON of 'savepoint export':
a map state is {"$map": [[key, value], ...]}, and Set, Date, bigint, bytes have "$set", "$date",
"$bigint", "$bytes" (docs/service.md). --key is a string key; when no string key matches, the same
text read as JSON (--key 42 finds the number 42). A key without a value exits 69 with a line on
stderr; an unknown state exits 69 naming the states there are. Checkpoints are read from the checkpoint
storage, a directory or s3://bucket/prefix (as 'kstate checkpoints --help' says, with its exit codes).`,
  savepoint: `kstate savepoint <name> [--port n] [--config file]
kstate savepoint rescale <jobId> <savepoint> --to M --as <name> [--topic old=new ...] [--offline]
kstate savepoint export <jobId> <savepoint> --out <dir | s3://bucket/prefix>
kstate savepoint import <jobId> --from <dir | s3://bucket/prefix> --as <name> [--partitions n]

Without a subcommand: asks the service listening on --port (default: httpPort of the configuration)
for a savepoint, with the admin token the service was started with (KSTATE_ADMIN_TOKEN or
KSTATE_ADMIN_TOKEN_FILE; over HTTPS when KSTATE_HTTP_TLS_CERT is set; docs/service.md). The
subcommands work offline on the checkpoint storage, a directory or s3://bucket/prefix
(KSTATE_CHECKPOINT_STORAGE; stop the job first):
  rescale  re-shards savepoint <savepoint> to M partitions (--to M, or --to stage=M,...) as <name>:
           keyed state re-hashed into the new key groups, operator state split/union/broadcast.
           When the brokers answer, each input topic must have M partitions (else exit 65);
           --topic old=new: the job now reads topic new (its positions start at new's beginning);
           --offline: do not ask the brokers.
  export   writes <dir>/<operator>/<state>.ndjson and <dir>/savepoint.json (jq, DuckDB read them);
           --out s3://bucket/prefix writes the same names as objects (KSTATE_S3_* settings apply).
           The directory or prefix must be empty or new.
  import   builds savepoint <name> from such a directory or s3:// prefix (with n partitions;
           default: as exported)
Exit codes: 65 the data is wrong; 69 no such savepoint, directory or bucket, or the store cannot be
reached; 77 the object store refused the credentials; 78 a bad setting or name.
Start the job from the result with 'kstate run <module> --from-savepoint <name>' (docs/savepoints.md).`,
};

class UsageError extends Error {}

function fail(code: number, message: string): never {
  process.stderr.write(`kstate: ${message}\n`);
  process.exit(code);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  // First of all: a signal from here on stops the service as documented (exit 0, or 130 when forced).
  const signals = command === 'run' ? new ShutdownSignals().install() : undefined;
  if (command === undefined) throw new UsageError(`no command given\n${HELP.main}`);
  if (command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${HELP.main}\n`);
    return;
  }
  if (command === '--version' || command === '-V') {
    const { packageVersion } = await import('./version.ts');
    process.stdout.write(`${packageVersion() ?? 'unknown (no package.json named kstate above the CLI)'}\n`);
    return;
  }
  if (!(command in HELP) || command === 'main')
    throw new UsageError(`unknown command '${command}'; see kstate --help`);
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      strict: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        config: { type: 'string', multiple: true },
        'savepoint-on-stop': { type: 'string' },
        task: { type: 'string' },
        checkpoint: { type: 'string' },
        savepoint: { type: 'string' },
        state: { type: 'string' },
        key: { type: 'string' },
        port: { type: 'string' },
        workers: { type: 'string' },
        'from-savepoint': { type: 'string' },
        'allow-non-restored-state': { type: 'boolean' },
        to: { type: 'string' },
        as: { type: 'string' },
        topic: { type: 'string', multiple: true },
        offline: { type: 'boolean' },
        out: { type: 'string' },
        from: { type: 'string' },
        partitions: { type: 'string' },
        'replication-factor': { type: 'string' },
        'if-not-exists': { type: 'boolean' },
        json: { type: 'boolean' },
      },
    });
  } catch (e) {
    throw new UsageError(`${(e as Error).message}; see kstate ${command} --help`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${HELP[command]}\n`);
    return;
  }
  if (command === 'demo') {
    if (positionals.length > 0) throw new UsageError('demo takes no argument; see kstate demo --help');
    const { demoFailure, runDemo } = await import('../../../examples/orders/demo.ts');
    process.exitCode = await runDemo().catch((e: unknown) => fail(EXIT.JOB_FAILED, demoFailure(e)));
    return;
  }
  const arg = positionals[0];
  if (arg === undefined) throw new UsageError(`${command} needs an argument; see kstate ${command} --help`);
  // In `topics`, --config name=value is a topic config; any other --config value is the file.
  const configArgs = (values.config as string[] | undefined) ?? [];
  const topicConfig = (v: string) => command === 'topics' && /^[^=/\\]+=/.test(v);
  const files = configArgs.filter((v) => !topicConfig(v));
  if (files.length > 1) throw new UsageError(`--config names ${files.length} files; give one`);
  if (command === 'topics' && files[0] !== undefined && !existsSync(files[0]))
    throw new UsageError(
      `--config ${files[0]}: no such configuration file; a topic config is name=value (e.g. --config retention.ms=-1)`,
    );
  const { loadConfig } = await import('./config.ts');
  // The offline commands read only checkpoint storage: they need no broker.
  const offline =
    command === 'checkpoints' ||
    command === 'inspect' ||
    (command === 'savepoint' && (arg === 'export' || arg === 'import' || values.offline === true));
  const config = loadConfig(files[0], process.env, { brokers: offline ? 'optional' : 'required' });
  switch (command) {
    case 'topics':
      return topicsCommand(arg, positionals.slice(1), values, configArgs.filter(topicConfig), config);
    case 'run':
      return run(
        arg,
        values['allow-non-restored-state'] === true ? { ...config, allowNonRestoredState: true } : config,
        values['savepoint-on-stop'] as string | undefined,
        workerCount(values.workers),
        values['from-savepoint'] as string | undefined,
        signals!,
      );
    case 'checkpoints':
      return listCheckpoints(arg, config);
    case 'inspect':
      return inspect(arg, config, values as Record<string, string | undefined>);
    case 'savepoint':
      if (arg === 'rescale' || arg === 'export' || arg === 'import')
        return savepointCommand(arg, positionals.slice(1), values as Record<string, unknown>, config);
      return requestSavepoint(arg, Number(values.port ?? config.httpPort), config);
  }
}

async function run(
  modulePath: string,
  config: ServiceConfig,
  savepointOnStop: string | undefined,
  workers: number,
  fromSavepoint: string | undefined,
  signals: ShutdownSignals,
): Promise<void> {
  if (workers > 1 && cluster.isPrimary) {
    const { servePrimary } = await import('./serve-primary.ts');
    return servePrimary(workers, config, signals);
  }
  const { serve } = await import('./serve.ts');
  const { loadJobModule } = await import('./job-module.ts');
  const job = await loadJobModule(modulePath, config);
  await serve(
    job,
    config,
    {
      ...(savepointOnStop ? { savepointOnStop } : {}),
      ...(fromSavepoint ? { fromSavepoint } : {}),
    },
    signals,
  );
}

/** `kstate topics create|describe` (topics.ts). */
async function topicsCommand(
  sub: string,
  args: string[],
  v: Record<string, unknown>,
  topicConfigs: string[],
  config: ServiceConfig,
): Promise<void> {
  const io = {
    out: (line: string) => process.stdout.write(`${line}\n`),
    warn: (line: string) => process.stderr.write(`${line}\n`),
  };
  const json = v.json === true;
  const { createTopic, describeTopics } = await import('./topics.ts');
  if (sub === 'describe') {
    if (args.length === 0) throw new UsageError('topics describe needs a topic; see kstate topics --help');
    return describeTopics(config, args, json, io);
  }
  if (sub !== 'create')
    throw new UsageError(`unknown topics command '${sub}': create or describe; see kstate topics --help`);
  const [topic, ...extra] = args;
  if (topic === undefined) throw new UsageError('topics create needs a topic; see kstate topics --help');
  if (extra.length > 0)
    throw new UsageError(
      `topics create takes one topic, not also ${extra.join(' ')}; see kstate topics --help`,
    );
  return createTopic(
    config,
    {
      topic,
      partitions: v.partitions as string | undefined,
      replicationFactor: v['replication-factor'] as string | undefined,
      configs: topicConfigs,
      ifNotExists: v['if-not-exists'] === true,
    },
    json,
    io,
  );
}

/** `kstate savepoint rescale|export|import` (savepoint-commands.ts). */
async function savepointCommand(
  sub: 'rescale' | 'export' | 'import',
  args: string[],
  v: Record<string, unknown>,
  config: ServiceConfig,
): Promise<void> {
  const need = (flag: string): string => {
    const x = v[flag];
    if (typeof x !== 'string' || x === '')
      throw new UsageError(`savepoint ${sub} needs --${flag}; see kstate savepoint --help`);
    return x;
  };
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const warn = (line: string) => process.stderr.write(`${line}\n`);
  const [jobId, savepoint] = args;
  const { exportCommand, importCommand, rescaleCommand } = await import('./savepoint-commands.ts');
  if (jobId === undefined)
    throw new UsageError(`savepoint ${sub} needs a job id; see kstate savepoint --help`);
  if (sub === 'import')
    return importCommand(
      config,
      jobId,
      { from: need('from'), as: need('as'), partitions: v.partitions as string | undefined },
      out,
    );
  if (savepoint === undefined)
    throw new UsageError(
      `savepoint ${sub} needs the savepoint's name after the job id; see kstate savepoint --help`,
    );
  if (sub === 'export') return exportCommand(config, jobId, savepoint, need('out'), out);
  return rescaleCommand(
    config,
    jobId,
    savepoint,
    {
      to: need('to'),
      as: need('as'),
      topics: (v.topic as string[] | undefined) ?? [],
      offline: v.offline === true,
    },
    out,
    warn,
  );
}

/** The job's task ids with checkpoints or savepoints (not its `_topology` record), and the storage. */
async function jobTasks(config: ServiceConfig, jobId: string) {
  const { openCheckpointStorage } = await import('./storage.ts');
  const storage = await openCheckpointStorage(config, { purpose: 'read' });
  const tasks = (await storage.tasks(jobId)).filter((t) => /-p\d+$/.test(t));
  return { storage, tasks };
}

async function listCheckpoints(jobId: string, config: ServiceConfig): Promise<void> {
  const { storage, tasks } = await jobTasks(config, jobId);
  try {
    if (tasks.length === 0)
      throw new NotFound(`job ${jobId} has no checkpoints in ${config.checkpointStorage}`);
    process.stdout.write('task\tid\ttime\tbytes\ttype\tsavepoint\n');
    for (const taskId of tasks) {
      const scope = { jobId, taskId };
      const rows = [...(await storage.list(scope)), ...(await storage.listSavepoints(scope))];
      for (const m of rows) {
        const bytes = m.files.reduce((s, f) => s + f.bytes, 0);
        process.stdout.write(
          `${taskId}\t${m.checkpointId}\t${new Date(m.timestamp).toISOString()}\t${bytes}\t${m.type}\t${m.savepoint ?? ''}\n`,
        );
      }
    }
  } finally {
    storage.close?.();
  }
}

async function inspect(
  jobId: string,
  config: ServiceConfig,
  o: Record<string, string | undefined>,
): Promise<void> {
  const { inspectCheckpoint, keyedStateJson, keyId, LevelKeyedStateBackend } = await framework();
  if ((o.state === undefined) !== (o.key === undefined))
    throw new UsageError('inspect takes --state and --key together; see kstate inspect --help');
  if (o.checkpoint !== undefined && !/^\d+$/.test(o.checkpoint))
    throw new UsageError(
      `--checkpoint is ${JSON.stringify(o.checkpoint)}; allowed: a checkpoint id (an integer)`,
    );
  const stored = await jobTasks(config, jobId);
  const storage = stored.storage;
  const tasks = o.task ? [o.task] : stored.tasks;
  if (tasks.length === 0)
    throw new NotFound(`job ${jobId} has no checkpoints in ${config.checkpointStorage}`);
  // --key is a string key; the same text read as JSON is the fallback (--key 42: the number 42).
  const keys: { key: unknown; id: string }[] = [];
  if (o.key !== undefined) {
    keys.push({ key: o.key, id: keyId(o.key) });
    const asJson = jsonKey(o.key);
    if (asJson !== undefined) keys.push({ key: asJson, id: keyId(asJson) });
  }
  const found: { rank: number; row: string }[] = [];
  const states = new Set<string>();
  const scratch = join(config.stateDir, '.inspect', String(process.pid));
  try {
    for (const taskId of tasks) {
      const { report, keyed } = await inspectCheckpoint(
        storage,
        { jobId, taskId },
        {
          ...(o.checkpoint ? { checkpointId: Number(o.checkpoint) } : {}),
          ...(o.savepoint ? { savepoint: o.savepoint } : {}),
        },
        (scope) => LevelKeyedStateBackend.open({ directory: join(scratch, scope.taskId) }),
      );
      if (o.state === undefined) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        continue;
      }
      for (const s of keyed.states) states.add(s.meta.name);
      for (const [rank, { key, id }] of keys.entries()) {
        const entry = keyedStateJson(keyed, o.state, id);
        if (entry !== undefined)
          found.push({ rank, row: JSON.stringify({ task: taskId, state: o.state, key, ...entry }) });
      }
    }
  } finally {
    storage.close?.();
    await rm(scratch, { recursive: true, force: true });
  }
  if (o.state === undefined) return;
  const read = o.savepoint
    ? `savepoint '${o.savepoint}'`
    : o.checkpoint
      ? `checkpoint ${o.checkpoint}`
      : 'latest checkpoint';
  const where = `the ${read} of ${o.task ? `task ${o.task}` : `job ${jobId} (tasks ${tasks.join(', ')})`}`;
  if (!states.has(o.state))
    throw new NotFound(
      `no keyed state '${o.state}' in ${where}; its keyed states (<operator uid>/<state name>): ${[...states].sort().join(', ') || 'none'}`,
    );
  const best = Math.min(...found.map((f) => f.rank));
  const rows = found.filter((f) => f.rank === best);
  if (rows.length === 0)
    throw new NotFound(`key ${JSON.stringify(o.key)} has no value in state '${o.state}' in ${where}`);
  for (const { row } of rows) process.stdout.write(`${row}\n`);
}

/** `raw` read as a JSON key that is not a string (a number, boolean, null, array or object). */
function jsonKey(raw: string): Key | undefined {
  try {
    const v = JSON.parse(raw) as Key;
    return typeof v === 'string' ? undefined : v;
  } catch {
    return undefined;
  }
}

/** `kstate savepoint <name>`: POST /savepoint with the admin token (savepoint-trigger.ts). */
async function requestSavepoint(name: string, port: number, config: ServiceConfig): Promise<void> {
  const { triggerSavepoint } = await import('./savepoint-trigger.ts');
  process.stdout.write(`${await triggerSavepoint(name, port, config)}\n`);
}

class NotFound extends Error {}

function workerCount(raw: unknown): number {
  if (raw === undefined) return 1;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 64)
    throw new UsageError(`--workers is ${JSON.stringify(raw)}; allowed: an integer 1..64`);
  return n;
}

main(process.argv.slice(2)).catch(async (e: unknown) => {
  if (e instanceof UsageError) fail(EXIT.USAGE, e.message);
  if (e instanceof NotFound) fail(EXIT.UNAVAILABLE, e.message);
  if (e instanceof CommandError) fail(e.exit, e.message);
  const { isStreamError } = await framework();
  if (isStreamError(e, 'CONFIG_INVALID') && /already in use/.test(e.message)) fail(EXIT.OS_ERROR, e.message);
  // By the error's catalogued code, as a running job that fails permanently exits (serve.ts).
  if (isStreamError(e)) fail(exitCodeFor(e), e.message);
  fail(EXIT.JOB_FAILED, e instanceof Error ? e.message : String(e));
});
