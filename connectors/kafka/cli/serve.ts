import cluster from 'node:cluster';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import {
  combineListeners,
  createPrometheusMetrics,
  failureClass,
  instrumentJob,
  type JobListener,
  LevelKeyedStateBackend,
  levelBackend,
  queryRoutes,
  type ServiceHttp,
  type ServiceRoute,
  StateQueries,
  StateQueryRegistry,
  StreamError,
  type StreamJob,
  shareWithPrimary,
  startServiceHttp,
} from '../../../framework/index.ts';
import { BrokerWatch } from '../broker-watch.ts';
import { type KafkaRunningJob, runKafkaJob } from '../run-kafka-job.ts';
import type { ServiceConfig } from './config.ts';
import { actionFor, EXIT, exitCodeFor } from './exit-codes.ts';
import { adminAccess, queryEndpointOf, tlsFiles } from './http-access.ts';
import { kafkaMetricsOf } from './kafka-metrics.ts';
import { answerQueryRequests, workerQueryEndpoint } from './query-workers.ts';
import { savepointRoute } from './savepoint-route.ts';
import { answerSavepointRequests } from './savepoint-workers.ts';
import { workerInstanceId, workerSlot } from './serve-primary.ts';
import { ShutdownSignals } from './signals.ts';
import { STATUS_HTML, StatusBoard } from './status.ts';
import { answerStatusRequests } from './status-workers.ts';
import { openCheckpointStorage } from './storage.ts';

/**
 * The service around one job: the job as a consumer-group member, /metrics, /livez, /readyz, the
 * status page (/status, /status.json), a savepoint trigger (POST /savepoint?name=..., an action:
 * off without an admin token, http-access.ts), /readyz 503 also while the brokers are lost
 * (broker-watch.ts), structured logs with the task and checkpoint in every line about them, and
 * graceful shutdown: the first SIGTERM/SIGINT takes a final checkpoint, commits it, leaves the
 * group and exits 0 within shutdownTimeoutMs; a second signal, or the deadline, exits at once (130),
 * losing nothing committed.
 * A signal during the start (`signals` installed by the CLI first thing) exits 0 before the job joins
 * its group, or stops it gracefully as soon as it has started.
 */
export async function serve(
  job: StreamJob,
  config: ServiceConfig,
  o: { savepointOnStop?: string; fromSavepoint?: string } = {},
  signals: ShutdownSignals = new ShutdownSignals().install(),
): Promise<void> {
  const log = pino({
    level: config.logLevel,
    base: { service: 'kstate', job: job.jobId, ...(cluster.isWorker ? { worker: cluster.worker?.id } : {}) },
  });
  // Time since the process started: Node's start, module loading and building the job.
  log.info({ loadedMs: Math.round(performance.now()) }, 'starting');
  signals.deadline(config.shutdownTimeoutMs + 5_000, () => {
    log.warn('shutdown deadline passed: exiting at once; tasks resume from their last committed checkpoint');
    process.exit(EXIT.FORCED);
  });
  let http: ServiceHttp | undefined;
  /** Before each slow step of the start: a signal so far stops the service here, nothing to commit. */
  const stopIfRequested = async (): Promise<void> => {
    if (signals.requested === undefined) return;
    await http?.close();
    log.info({ signal: signals.requested }, 'stopped before the job started');
    process.exit(EXIT.OK);
  };
  await stopIfRequested();
  const metrics = createPrometheusMetrics();
  if (cluster.isWorker) shareWithPrimary(metrics);
  const instrumented = instrumentJob(metrics, job.jobId);
  const board = new StatusBoard(job.jobId);
  // Under --workers, the primary's status page asks each worker for its board.
  answerStatusRequests(board);
  const kafkaMetrics = kafkaMetricsOf(metrics, job.jobId);
  // HTTP first: a port in use is refused before the job joins its group.
  let running: KafkaRunningJob | undefined;
  // Interactive queries (docs/queries.md): the tasks' live backends, routed by the group's assignment.
  const registry = new StateQueryRegistry();
  // Under --workers, the primary's endpoint, where it serves the workers' queries (query-workers.ts).
  let endpoint: string | undefined = workerQueryEndpoint();
  const queries = new StateQueries({
    jobId: job.jobId,
    plan: () => running?.plan,
    registry,
    routing: {
      owner: async (p, fresh) =>
        running === undefined
          ? { kind: 'moving', reason: 'the job is still starting' }
          : running.queryRouting.owner(p, fresh),
      isSelf: (owner, p) => running?.queryRouting.isSelf(owner, p) ?? false,
    },
    get self() {
      return endpoint;
    },
  });
  answerQueryRequests(queries, workerSlot(), endpoint);
  const routes: Record<string, ServiceRoute> = {
    ...queryRoutes(queries),
    '/status': async () => ({ status: 200, type: 'text/html; charset=utf-8', body: STATUS_HTML }),
    '/status.json': async () => ({
      status: 200,
      type: 'application/json',
      body: JSON.stringify(board.json()),
    }),
  };
  // Actions change state: off unless an admin token is configured (docs/service.md, "Exposing the HTTP port").
  let storage: Awaited<ReturnType<typeof openCheckpointStorage>> | undefined;
  const actions: Record<string, ServiceRoute> = {
    '/savepoint': savepointRoute({
      jobId: job.jobId,
      running: () => running,
      storage: () => storage,
      onTaken: (name, tasks) => log.info({ savepoint: name, tasks }, 'savepoint taken'),
      onFailed: (name, e) => log.warn({ savepoint: name, ...codesOf(e), err: String(e) }, 'savepoint failed'),
    }),
  };
  // Under --workers the primary serves /savepoint and asks each worker to take it (savepoint-workers.ts);
  // a worker still starting answers through its route (503), one without tasks adds none.
  answerSavepointRequests(actions['/savepoint']!, () => running === undefined || running.tasks().length > 0);
  // Not ready while no broker has answered for brokerLossTimeoutMs (set once the job has started).
  let brokers: BrokerWatch | undefined;
  const ready = () => {
    const b = brokers?.verdict();
    return b !== undefined && !b.ready ? { ...instrumented.readiness(), ...b } : instrumented.readiness();
  };
  if (config.httpPort !== 0 && !cluster.isWorker) {
    const admin = adminAccess(config);
    const tls = tlsFiles(config);
    http = await startServiceHttp({
      port: config.httpPort,
      host: config.httpHost,
      metrics,
      ready,
      routes,
      actions,
      ...(admin === undefined ? {} : { admin }),
      ...(config.advertisedHost === undefined ? {} : { advertisedHost: config.advertisedHost }),
      ...(tls === undefined ? {} : { tls }),
      onError: (e, path) => log.error({ path, ...codesOf(e), err: String(e) }, 'http request failed'),
    });
    endpoint = queryEndpointOf(http, config.advertisedHost);
    log.info(
      { url: http.url, actions: admin === undefined ? 'off' : 'on' },
      'http endpoints: /metrics /livez /readyz /status /query /query/keys; actions: POST /savepoint',
    );
  }
  await stopIfRequested();
  // Storage before the group: a missing bucket or refused credentials stop the start with what to do
  // (cli.ts: exit 69 / 77), rather than fail every checkpoint of a running job.
  storage = await openCheckpointStorage(config, { purpose: 'run' });
  // Under --workers, the primary hears of it and starts no new worker (a refused start, not a crash).
  await storage.check?.().catch(tellPrimaryStartFailed);
  // Where a job change reads old level checkpoints (docs/savepoints.md "Job changes"); removed after the start.
  const scratch = join(config.stateDir, '.restructure', String(process.pid));
  const failure = failurePolicy(log, config);
  running = await runKafkaJob(job, {
    connection: { brokers: config.brokers },
    storage,
    backend: registry.track(config.backend === 'level' ? levelBackend(config.stateDir) : undefined),
    ...(endpoint === undefined ? {} : { queryEndpoint: endpoint }),
    // kstate run --from-savepoint: every task starts from that savepoint (docs/savepoints.md).
    ...(o.fromSavepoint ? { savepoint: o.fromSavepoint } : {}),
    allowNonRestoredState: config.allowNonRestoredState,
    scratchBackend: (scope) => LevelKeyedStateBackend.open({ directory: join(scratch, scope.taskId) }),
    checkpoints: {
      intervalMs: config.checkpointIntervalMs,
      timeoutMs: config.checkpointTimeoutMs,
      incremental: config.incremental,
    },
    // The failure policy (docs/service.md): counted failures back off and end; transient ones do not count.
    restart:
      config.restartStrategy === 'failure-rate'
        ? {
            kind: 'failure-rate',
            maxFailures: config.restartAttempts,
            intervalMs: config.restartResetMs,
            delayMs: config.restartDelayMs,
          }
        : {
            kind: 'exponential-backoff',
            initialDelayMs: config.restartDelayMs,
            maxDelayMs: config.restartMaxDelayMs,
            multiplier: 2,
            maxAttempts: config.restartAttempts,
            resetAfterMs: config.restartResetMs,
          },
    onUserFunctionError: config.onUserFunctionError,
    consumer: {
      sessionTimeoutMs: config.sessionTimeoutMs,
      heartbeatIntervalMs: Math.min(1000, Math.floor(config.sessionTimeoutMs / 3)),
      ...(config.groupInstanceId === undefined
        ? {}
        : { groupInstanceId: workerInstanceId(config.groupInstanceId) }),
    },
    listener: combineListeners(
      instrumented,
      board.listener(),
      logListener(log),
      registry.listener(),
      failure.listener,
    ),
  })
    .catch(tellPrimaryStartFailed)
    .finally(() => rm(scratch, { recursive: true, force: true }).catch(() => {}));
  const detach = instrumented.attach(running);
  if (config.brokerLossTimeoutMs > 0) {
    const reachable = metrics.gauge({
      name: 'brokers_reachable',
      help: 'Whether a Kafka broker answered within brokerLossTimeoutMs (1) or not (0: /readyz is 503)',
      labels: ['job_id'],
    });
    reachable.set({ job_id: job.jobId }, 1);
    brokers = new BrokerWatch({
      connection: { brokers: config.brokers },
      lostAfterMs: config.brokerLossTimeoutMs,
      onChange: (v) => {
        reachable.set({ job_id: job.jobId }, v.ready ? 1 : 0);
        if (v.ready) log.info('the brokers answer again');
        else log.warn({ reason: v.reason }, 'lost the brokers: /readyz is 503');
      },
    });
  }
  board.watch(running);
  const lagTimer = setInterval(() => kafkaMetrics.sample(running), 2000);
  lagTimer.unref();

  if (cluster.isWorker) {
    const tick = setInterval(() => process.send?.({ kstate: 'readiness', ...ready() }), 500);
    tick.unref();
  }
  log.info({ brokers: config.brokers, backend: config.backend }, 'service running');

  const stop = (signal: NodeJS.Signals) => {
    log.info(
      { signal, timeoutMs: config.shutdownTimeoutMs },
      'stopping: final checkpoint, then leaving the group',
    );
    void (async () => {
      if (o.savepointOnStop) {
        await running.savepoint(o.savepointOnStop).then(
          (metas) => log.info({ savepoint: o.savepointOnStop, tasks: metas.length }, 'savepoint taken'),
          (e: unknown) => log.error({ err: String(e) }, 'savepoint on stop failed'),
        );
      }
      const report = await running.stop({ finalCheckpoint: true, timeoutMs: config.shutdownTimeoutMs });
      detach();
      board.stop();
      clearInterval(lagTimer);
      kafkaMetrics.detach();
      await brokers?.stop();
      await http?.close();
      log.info(report, 'stopped');
      process.exit(EXIT.OK);
    })();
  };
  signals.onStop(stop, (signal) =>
    log.warn({ signal }, 'second signal: exiting at once; tasks resume from their last committed checkpoint'),
  );
  running.done.catch((e: unknown) => failure.exit(e));
}

/**
 * The end of a job that failed (docs/service.md "Failure policy"): once the job has torn its tasks
 * down and left the consumer group (`RunningJob.done` rejects after that), one `job failed` line
 * naming the task, the error's code (and cause), the exit code and what to do, then the exit: by the
 * error's code for a permanent failure (exit-codes.ts), 1 when the restart strategy gave up. Until
 * then /readyz is 503 and `kstate_tasks{state="failed"}` counts the task. Leaving the group is bounded
 * by shutdownTimeoutMs: past it the service exits all the same.
 */
function failurePolicy(log: Logger, config: ServiceConfig) {
  let failed: { taskId: string } | undefined;
  const exit = (e: unknown): void => {
    const code = exitCodeFor(e);
    log.fatal(
      {
        task: failed?.taskId ?? null,
        ...codesOf(e),
        exit: code,
        action: actionFor(code),
        err: e instanceof Error ? e.message : String(e),
      },
      'job failed',
    );
    // A new worker would fail the same way (a permanent failure), or start the restarts the policy
    // ended over again: the primary must not start one, and exits with this code.
    if (cluster.isWorker && process.send) {
      const permanent = failureClass(e) === 'permanent';
      process.send({ kstate: 'failed', code: codesOf(e).code ?? 'unknown', permanent }, () =>
        process.exit(code),
      );
      return;
    }
    process.exit(code);
  };
  const listener: JobListener = {
    taskFailed(f) {
      if (f.restarting || failed !== undefined) return;
      const code = f.failure === 'permanent' ? exitCodeFor(f.error) : EXIT.JOB_FAILED;
      failed = { taskId: f.taskId };
      setTimeout(() => {
        log.fatal(
          { task: f.taskId, ...codesOf(f.error), exit: code, action: actionFor(code), err: String(f.error) },
          `job failed; leaving the consumer group took longer than shutdownTimeoutMs (${config.shutdownTimeoutMs} ms)`,
        );
        process.exit(code);
      }, config.shutdownTimeoutMs).unref();
    },
  };
  return { listener, exit };
}

/**
 * A worker whose start was refused (a StreamError not retriable: STATE_NOT_RESTORED, JOB_CHANGE_BLOCKED,
 * a missing topic) tells the primary before it exits (cli.ts: 78 for these): a new worker would be
 * refused the same way, so the primary starts none, stops the others and exits with this worker's code.
 */
async function tellPrimaryStartFailed(e: unknown): Promise<never> {
  if (cluster.isWorker && e instanceof StreamError && !e.retriable && process.send) {
    const sent = process.send.bind(process);
    await new Promise<void>((r) => {
      sent({ kstate: 'failed', code: e.code }, () => r());
    });
  }
  throw e;
}

function logListener(log: Logger): JobListener {
  return {
    jobStart: (s) =>
      log.info(
        {
          savepoint: s.savepoint ?? null,
          ...(s.changed
            ? {
                changes: s.changed.changes,
                derived: s.changed.derived ?? null,
                dropped: s.changed.dropped.length,
              }
            : {}),
        },
        s.changed ? 'job changed: state re-cut by operator uid' : 'start decided',
      ),
    jobNotice: (n) => (n.level === 'warn' ? log.warn(n.message) : log.info(n.message)),
    taskStarted: (t) => log.info({ task: t.taskId }, 'task started'),
    taskStopped: (t) => log.info({ task: t.taskId }, 'task stopped'),
    restored: (r) =>
      log.info({ task: r.taskId, checkpoint: r.checkpointId ?? null, ms: Math.round(r.ms) }, 'task restored'),
    checkpointCompleted: (s) =>
      log.debug(
        { task: s.taskId, checkpoint: s.checkpointId, bytes: s.bytes, asyncMs: Math.round(s.asyncMs) },
        'checkpoint committed',
      ),
    checkpointFailed: (f) =>
      log.warn(
        { task: f.taskId, checkpoint: f.checkpointId, ...codesOf(f.error), err: String(f.error) },
        'checkpoint failed',
      ),
    recordFailed: (r) =>
      log.warn(
        { task: r.taskId, operator: r.operator, policy: r.policy, ...codesOf(r.error), err: String(r.error) },
        r.policy === 'skip' ? 'record skipped' : 'record dead-lettered',
      ),
    taskFailed: (f) =>
      log.error(
        {
          task: f.taskId,
          ...codesOf(f.error),
          err: String(f.error),
          failure: f.failure ?? null,
          restarting: f.restarting,
          delayMs: f.delayMs,
        },
        'task failed',
      ),
  };
}

/**
 * The catalogued codes of an error (docs/errors.md) for its log line: `code`, and `cause` when an
 * error it wraps has another (a CHECKPOINT_DECLINED task failure caused by CHECKPOINT_STORAGE_FAILED).
 */
function codesOf(e: unknown): { code?: string; cause?: string } {
  const codes: string[] = [];
  for (let x = e, depth = 0; x !== undefined && x !== null && depth < 8; depth++) {
    if (x instanceof StreamError && !codes.includes(x.code)) codes.push(x.code);
    x = (x as { cause?: unknown }).cause;
  }
  return {
    ...(codes[0] === undefined ? {} : { code: codes[0] }),
    ...(codes[1] === undefined ? {} : { cause: codes[1] }),
  };
}
