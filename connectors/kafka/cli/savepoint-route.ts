import {
  type BaseCheckpointStorage,
  checkSavepointName,
  type ServiceAnswer,
  type ServiceRoute,
  StreamError,
} from '../../../framework/index.ts';
import type { KafkaRunningJob } from '../run-kafka-job.ts';

/**
 * `POST /savepoint?name=<name>`, an action (framework/service/http.ts: off unless an admin token is
 * configured, then only for requests that pass the Host, Origin and token checks). It answers by
 * cause, and its bodies never carry a server path or an error's message (which may name checkpoint
 * files); `onFailed` gets the error for the log:
 *
 * | status | when |
 * | --- | --- |
 * | 200 | taken: `{"savepoint", "tasks"}` |
 * | 400 | no name, or a name that is not a savepoint name (1-200 of `A-Za-z0-9._-`, not starting with `.`) |
 * | 409 | a savepoint of that name exists for a task running here, or is being taken |
 * | 503 | the job is starting, no task runs here, a task waits to restart, or the savepoint failed (with `Retry-After`) |
 */
export interface SavepointRouteOptions {
  readonly jobId: string;
  readonly running: () => KafkaRunningJob | undefined;
  readonly storage: () => Pick<BaseCheckpointStorage, 'listSavepoints'> | undefined;
  readonly onTaken?: (name: string, tasks: number) => void;
  readonly onFailed?: (name: string, e: unknown) => void;
}

/** A JSON answer (the savepoint routes' form: savepoint-workers.ts answers alike). */
export const json = (status: number, value: unknown, headers?: Record<string, string>): ServiceAnswer => ({
  status,
  type: 'application/json; charset=utf-8',
  body: `${JSON.stringify(value)}\n`,
  ...(headers ? { headers } : {}),
});
/** 503 with `Retry-After`: ask again. */
export const unavailable = (error: string, code?: string) =>
  json(503, { error, ...(code ? { code } : {}) }, { 'retry-after': '5' });

export function savepointRoute(o: SavepointRouteOptions): ServiceRoute {
  const taking = new Set<string>();
  return async ({ query }) => {
    const name = query.get('name');
    if (name === null || name === '')
      return json(400, { error: 'POST /savepoint?name=<name>: the savepoint needs a name' });
    try {
      checkSavepointName(name);
    } catch {
      return json(400, {
        error: `${JSON.stringify(name.slice(0, 220))} is not a savepoint name: use 1-200 characters from A-Z a-z 0-9 . _ -, not starting with "."`,
      });
    }
    const running = o.running();
    const storage = o.storage();
    if (running === undefined || storage === undefined)
      return unavailable('the job is still starting: ask again once /readyz is 200');
    const tasks = running.tasks();
    if (tasks.length === 0)
      return unavailable('no task runs on this instance (yet): ask again once /readyz is 200');
    if (taking.has(name)) return json(409, { error: `savepoint '${name}' is being taken now` });
    taking.add(name);
    try {
      for (const t of tasks) {
        const taken = await storage.listSavepoints({ jobId: o.jobId, taskId: t.scope.taskId });
        if (taken.some((m) => m.savepoint === name))
          return json(409, {
            error: `savepoint '${name}' exists already (task ${t.scope.taskId}): choose another name`,
          });
      }
      const metas = await running.savepoint(name);
      o.onTaken?.(name, metas.length);
      return json(200, { savepoint: name, tasks: metas.map((m) => m.taskId) });
    } catch (e) {
      o.onFailed?.(name, e);
      return savepointFailure(name, e);
    } finally {
      taking.delete(name);
    }
  };
}

/** The answer to a failed savepoint: by the error's code, never its message. */
export function savepointFailure(name: string, e: unknown): ServiceAnswer {
  const code = e instanceof StreamError ? e.code : undefined;
  if (code === 'CHECKPOINT_DECLINED')
    return unavailable(
      `savepoint '${name}' declined: a task waits to restart after a failure, or is stopping; ask again once /readyz is 200`,
      code,
    );
  return unavailable(
    `savepoint '${name}' failed${code ? ` (${code}, docs/errors.md)` : ''}: the service log has the details; ask again with another name if part of it was committed`,
    code,
  );
}
