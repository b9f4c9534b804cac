import cluster, { type Worker } from 'node:cluster';
import pino from 'pino';
import { clusterMetrics, StreamError, startServiceHttp } from '../../../framework/index.ts';
import type { ServiceConfig } from './config.ts';
import { EXIT } from './exit-codes.ts';
import { adminAccess, queryEndpointOf, tlsFiles } from './http-access.ts';
import { WORKER_QUERY_ENDPOINT_ENV, workersQueryRoutes } from './query-workers.ts';
import { workersSavepointRoute } from './savepoint-workers.ts';
import { ShutdownSignals } from './signals.ts';
import { workerStatusRoutes } from './status-workers.ts';

/** The environment variable that tells a worker its slot (0 .. workers-1). */
const WORKER_SLOT_ENV = 'KSTATE_WORKER_SLOT';

/** In a worker of --workers: its slot (0 .. workers-1), else undefined. */
export function workerSlot(): string | undefined {
  return cluster.isWorker ? process.env[WORKER_SLOT_ENV] : undefined;
}

/** The instance id of this process: `id` itself, or `id-<slot>` in a worker of --workers. */
export function workerInstanceId(id: string): string {
  const slot = workerSlot();
  return slot === undefined ? id : `${id}-${slot}`;
}

/**
 * Several workers in one process: the primary forks `workers` copies of this command (each a
 * member of the consumer group) and serves one /metrics merging theirs, /readyz (ready when every
 * worker is), /livez. A signal is passed on to the workers as a message (they stop gracefully; a second
 * one stops them at once), so that a signal sent to the whole process group counts once in a worker.
 */
export async function servePrimary(
  workers: number,
  config: ServiceConfig,
  signals: ShutdownSignals = new ShutdownSignals().install(),
): Promise<void> {
  const log = pino({ level: config.logLevel, base: { service: 'kstate', role: 'primary' } });
  if (signals.requested !== undefined) {
    log.info({ signal: signals.requested }, 'stopped before the workers started');
    process.exit(EXIT.OK);
  }
  // Refused before any worker is forked (a worker forked first would die with its channel closed).
  if (config.httpPort === 0)
    throw new StreamError(
      'CONFIG_INVALID',
      'httpPort 0 with several workers: the primary needs a port for /metrics',
    );
  const ready = new Map<number, { ready: boolean; reason?: string }>();
  // Each worker has a slot, kept by the worker started in its place, so that a static member
  // (groupInstanceId) restarted after a crash takes over its own membership.
  const slots = new Map<number, number>();
  /** The primary's query endpoint, which the workers advertise (set before the first fork). */
  let endpoint = '';
  const fork = (slot: number) =>
    slots.set(
      cluster.fork({ [WORKER_SLOT_ENV]: String(slot), [WORKER_QUERY_ENDPOINT_ENV]: endpoint }).id,
      slot,
    );
  /**
   * A worker's job failed (permanently, or its restart strategy gave up: docs/service.md "Failure
   * policy"), or its start was refused (a code that is not retriable): no new worker; the service exits
   * with that worker's exit code (1 when the strategy gave up, else by the error's code).
   */
  let failed: { code: string; worker: number; exit?: number } | undefined;
  cluster.on(
    'message',
    (
      worker,
      msg: { kstate?: string; ready?: boolean; reason?: string; code?: string; permanent?: boolean },
    ) => {
      if (msg?.kstate === 'readiness')
        ready.set(worker.id, { ready: msg.ready === true, ...(msg.reason ? { reason: msg.reason } : {}) });
      if (msg?.kstate === 'failed' && failed === undefined) {
        failed = { code: msg.code ?? 'unknown', worker: worker.id };
        stopping = true;
        log.fatal(
          { worker: worker.id, code: failed.code },
          msg.permanent === false
            ? 'job failed in a worker (its restart strategy gave up): stopping the others'
            : 'job failed permanently in a worker: stopping the others',
        );
        tell('stop');
      }
    },
  );
  let stopping = false;
  cluster.on('exit', (worker, code, signal) => {
    // A message sent before the exit ('failed') is read before the worker's channel closes.
    if (worker.isConnected()) worker.once('disconnect', () => exited(worker, code, signal));
    else exited(worker, code, signal);
  });
  const exited = (worker: Worker, code: number | null, signal: string | null) => {
    ready.delete(worker.id);
    if (failed?.worker === worker.id) failed.exit = code ?? EXIT.JOB_FAILED;
    const slot = slots.get(worker.id) ?? 0;
    slots.delete(worker.id);
    if (!stopping) {
      log.error({ worker: worker.id, code, signal }, 'worker exited; starting a new one');
      fork(slot);
    } else if (Object.keys(cluster.workers ?? {}).length === 0) {
      log.info('all workers stopped');
      process.exit(failed === undefined ? EXIT.OK : failed.exit || EXIT.JOB_FAILED);
    }
  };
  const tell = (kstate: 'stop' | 'force') => {
    for (const w of Object.values(cluster.workers ?? {})) if (w?.isConnected()) w.send({ kstate });
  };
  // The workers' own deadline comes first; this one bounds a worker that hangs.
  signals.deadline(config.shutdownTimeoutMs + 10_000, () => {
    log.warn('shutdown deadline passed: exiting at once');
    process.exit(EXIT.FORCED);
  });
  signals.onStop(
    () => {
      stopping = true;
      tell('stop');
    },
    () => tell('force'),
  );
  const tls = tlsFiles(config);
  const admin = adminAccess(config);
  const http = await startServiceHttp({
    port: config.httpPort,
    host: config.httpHost,
    ...(tls === undefined ? {} : { tls }),
    metrics: clusterMetrics(),
    // /status and /status.json over every worker's tasks (status-workers.ts); the workers' queries
    // (query-workers.ts).
    routes: {
      ...workerStatusRoutes(workers),
      ...workersQueryRoutes(15_000, (id) => ready.get(id)?.ready === true),
    },
    // POST /savepoint of every worker's tasks; an action, as without workers.
    actions: { '/savepoint': workersSavepointRoute(config.checkpointTimeoutMs + 10_000) },
    ...(admin === undefined ? {} : { admin }),
    ...(config.advertisedHost === undefined ? {} : { advertisedHost: config.advertisedHost }),
    ready: () => {
      const states = [...ready.values()];
      const all = states.length === workers && states.every((s) => s.ready);
      return {
        ready: all,
        reason: all
          ? `${workers} workers ready`
          : `${states.filter((s) => s.ready).length} of ${workers} workers ready`,
      };
    },
  });
  // The workers start once the port is ours (a port in use is refused before any worker is forked),
  // and advertise this endpoint for queries.
  if (stopping) {
    log.info({ signal: signals.requested }, 'stopped before the workers started');
    process.exit(EXIT.OK);
  }
  endpoint = queryEndpointOf(http, config.advertisedHost);
  for (let i = 0; i < workers; i++) fork(i);
  log.info(
    { url: http.url, workers },
    'primary serving /metrics, /status, /query and POST /savepoint for all workers',
  );
}
