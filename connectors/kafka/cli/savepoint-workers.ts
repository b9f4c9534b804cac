import cluster, { type Worker } from 'node:cluster';
import type { ServiceAnswer, ServiceRoute } from '../../../framework/index.ts';
import { json, unavailable } from './savepoint-route.ts';

/**
 * `POST /savepoint` of `kstate run --workers n`: the primary serves it (an action, behind the same
 * admin token as without workers) by asking every worker, over the cluster's IPC channel, to take the
 * savepoint of its tasks with its own route (savepoint-route.ts), and answers for all of them.
 *
 * Protocol: primary -> worker `{ kstate: 'savepoint?', id, name }`; worker -> primary
 * `{ kstate: 'savepoint', id, status, body, tasks }` (its route's answer; `tasks`: whether it runs any).
 *
 * The answer:
 * - 200 `{"savepoint", "tasks"}` with every worker's tasks, when every worker that runs a task took it;
 * - else the refusal of the first worker that refused, by status (400, then 409, then 503 ...), with
 *   `"taken"`: the tasks of the workers that did take it (a partial savepoint: `--from-savepoint`
 *   refuses to start from it, as from any savepoint a task lacks);
 * - 503 with `Retry-After` when no worker runs a task, or not every worker answered within `timeoutMs`.
 */
export function answerSavepointRequests(route: ServiceRoute, runsTasks: () => boolean): void {
  if (!cluster.isWorker) return;
  process.on('message', (m: unknown) => {
    const msg = m as { kstate?: unknown; id?: unknown; name?: unknown } | null;
    if (msg?.kstate !== 'savepoint?' || typeof msg.name !== 'string') return;
    const id = msg.id;
    const tasks = runsTasks();
    const answer: Promise<ServiceAnswer> = tasks
      ? route({ method: 'POST', query: new URLSearchParams({ name: msg.name }) })
      : Promise.resolve({ status: 200, type: 'application/json', body: '{"tasks":[]}' });
    void answer.then(
      (a) => process.send?.({ kstate: 'savepoint', id, status: a.status, body: parse(a.body), tasks }),
      (e: unknown) =>
        process.send?.({ kstate: 'savepoint', id, status: 500, body: { error: String(e) }, tasks }),
    );
  });
}

interface WorkerAnswer {
  readonly status: number;
  readonly body: Record<string, unknown>;
  readonly tasks: boolean;
}

let nextRequest = 0;

export function workersSavepointRoute(timeoutMs: number): ServiceRoute {
  return async ({ query }) => {
    const name = query.get('name') ?? '';
    const workers = Object.values(cluster.workers ?? {}).filter(
      (w): w is Worker => w?.isConnected() === true,
    );
    const answers = await ask(workers, name, timeoutMs);
    if (answers.length < workers.length || workers.length === 0)
      return unavailable(
        `${answers.length} of ${workers.length} workers answered: ask again once /readyz is 200`,
      );
    const running = answers.filter((a) => a.tasks);
    if (running.length === 0)
      return unavailable('no task runs on this instance (yet): ask again once /readyz is 200');
    const tasks = running.flatMap((a) => (a.status === 200 ? taskIds(a) : []));
    const refused = running.filter((a) => a.status !== 200).sort((x, y) => x.status - y.status)[0];
    if (refused === undefined) return json(200, { savepoint: name, tasks });
    const headers = refused.status === 503 ? { 'retry-after': '5' } : undefined;
    return json(refused.status, { ...refused.body, ...(tasks.length > 0 ? { taken: tasks } : {}) }, headers);
  };
}

function ask(workers: readonly Worker[], name: string, timeoutMs: number): Promise<WorkerAnswer[]> {
  if (workers.length === 0) return Promise.resolve([]);
  const id = ++nextRequest;
  const answers = new Map<number, WorkerAnswer>();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      cluster.off('message', onMessage);
      resolve([...answers.values()]);
    };
    const onMessage = (worker: Worker, msg: { kstate?: unknown; id?: unknown } & Partial<WorkerAnswer>) => {
      if (msg?.kstate !== 'savepoint' || msg.id !== id || typeof msg.status !== 'number') return;
      answers.set(worker.id, { status: msg.status, body: msg.body ?? {}, tasks: msg.tasks === true });
      if (answers.size === workers.length) done();
    };
    const timer = setTimeout(done, timeoutMs);
    cluster.on('message', onMessage);
    for (const w of workers) w.send({ kstate: 'savepoint?', id, name });
  });
}

function taskIds(a: WorkerAnswer): string[] {
  const t = a.body.tasks;
  return Array.isArray(t) ? t.filter((x): x is string => typeof x === 'string') : [];
}

function parse(body: string): Record<string, unknown> {
  try {
    const v = JSON.parse(body) as unknown;
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
