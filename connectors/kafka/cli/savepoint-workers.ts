import type { ServiceRoute } from '../../../framework/index.ts';
import { json, unavailable } from './savepoint-route.ts';
import { answerPrimary, askWorkers } from './worker-ipc.ts';

/**
 * `POST /savepoint` of `kstate run --workers n`: the primary serves it (an action, behind the same
 * admin token as without workers) by asking every worker, over the cluster's IPC channel, to take the
 * savepoint of its tasks with its own route (savepoint-route.ts), and answers for all of them.
 *
 * Over worker-ipc.ts, kind `savepoint`: the request carries `name`; a worker answers its route's
 * `status` and `body`, and `tasks`: whether it runs any.
 *
 * The answer:
 * - 200 `{"savepoint", "tasks"}` with every worker's tasks, when every worker that runs a task took it;
 * - else the refusal of the first worker that refused, by status (400, then 409, then 503 ...), with
 *   `"taken"`: the tasks of the workers that did take it (a partial savepoint: `--from-savepoint`
 *   refuses to start from it, as from any savepoint a task lacks);
 * - 503 with `Retry-After` when no worker runs a task, or not every worker answered within `timeoutMs`.
 */
export function answerSavepointRequests(route: ServiceRoute, runsTasks: () => boolean): void {
  answerPrimary('savepoint', async (request) => {
    const tasks = runsTasks();
    if (!tasks) return { status: 200, body: { tasks: [] }, tasks };
    const a = await route({ method: 'POST', query: new URLSearchParams({ name: String(request.name) }) });
    return { status: a.status, body: parse(a.body), tasks };
  });
}

interface WorkerAnswer {
  readonly status: number;
  readonly body: Record<string, unknown>;
  readonly tasks: boolean;
}

export function workersSavepointRoute(timeoutMs: number): ServiceRoute {
  return async ({ query }) => {
    const name = query.get('name') ?? '';
    const { answers, asked } = await askWorkers<WorkerAnswer>('savepoint', { name }, timeoutMs, (a) =>
      typeof a.status === 'number'
        ? { status: a.status, body: (a.body ?? {}) as Record<string, unknown>, tasks: a.tasks === true }
        : typeof a.error === 'string'
          ? { status: 500, body: { error: a.error }, tasks: true }
          : undefined,
    );
    if (answers.length < asked || asked === 0)
      return unavailable(`${answers.length} of ${asked} workers answered: ask again once /readyz is 200`);
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
