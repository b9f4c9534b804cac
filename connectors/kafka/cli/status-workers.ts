import { hostname } from 'node:os';
import type { ServiceRoute } from '../../../framework/index.ts';
import { type StatusBoard, type StatusJson, totalsOf } from './status.ts';
import { STATUS_HTML } from './status-page.ts';
import { answerPrimary, askWorkers } from './worker-ipc.ts';

/**
 * The status page of `kstate run --workers n`: the primary serves /status and /status.json over
 * every worker's board, asked for over the cluster's IPC channel when the page asks (no messages
 * while nobody looks; worker-ipc.ts, kind `status`: the answer's `status` is the worker's
 * StatusBoard json()). Each task row keeps its worker's owner (pid, worker id, member id). A worker
 * that does not answer within `timeoutMs` is left out, and the page says how many answered.
 */
export function answerStatusRequests(board: StatusBoard): void {
  answerPrimary('status', () => ({ status: board.json() }));
}

/** Ask every connected worker for its board; resolves with the answers received within `timeoutMs`. */
export async function askWorkersStatus(timeoutMs = 2000): Promise<StatusJson[]> {
  const { answers } = await askWorkers('status', {}, timeoutMs, (a) => a.status as StatusJson | undefined);
  return answers;
}

/** One page over the workers' boards: their tasks, checkpoints, failures and lag together. */
export function mergeWorkerStatus(answers: readonly StatusJson[], workers: number): StatusJson {
  const now = Date.now();
  const tasks = answers.flatMap((a) => a.tasks);
  const checkpoints: Record<string, StatusJson['checkpoints'][string]> = {};
  for (const a of answers) {
    for (const [task, points] of Object.entries(a.checkpoints)) {
      // A task that moved between workers: one series, each checkpoint once.
      const byId = new Map([...(checkpoints[task] ?? []), ...points].map((p) => [p.id, p]));
      checkpoints[task] = [...byId.values()].sort((x, y) => x.at - y.at);
    }
  }
  return {
    job: answers.find((a) => a.job !== '')?.job ?? '',
    at: new Date(now).toISOString(),
    now,
    instance: { host: hostname(), pid: process.pid, workers },
    scope: 'workers',
    jobTasks: Math.max(0, ...answers.map((a) => a.jobTasks)),
    totals: totalsOf(tasks),
    tasks,
    checkpoints,
    failures: answers
      .flatMap((a) => a.failures)
      .sort((x, y) => x.at - y.at)
      .slice(-20),
    lag: answers.flatMap((a) => a.lag),
    answered: answers.length,
  };
}

/** /status and /status.json of the primary. */
export function workerStatusRoutes(workers: number): Record<string, ServiceRoute> {
  return {
    '/status': async () => ({ status: 200, type: 'text/html; charset=utf-8', body: STATUS_HTML }),
    '/status.json': async () => ({
      status: 200,
      type: 'application/json',
      body: JSON.stringify(mergeWorkerStatus(await askWorkersStatus(), workers)),
    }),
  };
}
