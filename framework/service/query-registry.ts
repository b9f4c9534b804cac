import type { Scope } from '../checkpoint/storage/storage.ts';
import type { JobListener } from '../runtime/job.ts';
import type { KeyedStateBackend } from '../state/backend.ts';
import { HeapKeyedStateBackend } from '../state/backends/heap/heap.ts';

/**
 * The keyed backends of the tasks running in this process, and which tasks are live, for queries.
 *
 * It learns of them through two explicit hooks and never changes a backend (the runtime's backend
 * stays the very object the factory made):
 * - opening: `track(factory)` wraps the job's backend factory (`JobOptions.backend`); each backend
 *   the runtime opens for a task incarnation is registered under the task's id, replacing the
 *   previous incarnation's registration;
 * - lifecycle: `listener()` is a job listener (the observer the runtime calls): `restored` makes the
 *   task live; `taskEnding`, which the runtime sends before any task's backend closes (a teardown
 *   by the job, the end of a bounded task's input, the abort of a failed job's other tasks),
 *   disposes the registration (as `taskStopped` and `taskFailed` do, should a runtime not call
 *   it), so a backend is never read while or after it closes, nor kept once closed
 *   (query-close.test.ts).
 *
 * A task is live from its `restored` event until its registration is disposed; queries read only a
 * live task's backend (`live`). A backend opened for another scope than a task's (the job-change
 * scratch backend `<task>.restructure`) is registered under that id, which no query asks for, and
 * replaced at the next open of the same id.
 */
export class StateQueryRegistry {
  readonly #tasks = new Map<string, Registration>();

  /** Wraps a job's backend factory (default: heap) so that every task's backend is known here. */
  track(
    factory: ((scope: Scope) => KeyedStateBackend | Promise<KeyedStateBackend>) | undefined,
  ): (scope: Scope) => Promise<KeyedStateBackend> {
    const make = factory ?? (() => new HeapKeyedStateBackend());
    return async (scope) => {
      const backend = await make(scope);
      this.#tasks.set(scope.taskId, { backend, live: false });
      return backend;
    };
  }

  /** The lifecycle events of the job's tasks (combine with the job's other listeners). */
  listener(): JobListener {
    return {
      restored: ({ taskId }) => {
        const r = this.#tasks.get(taskId);
        if (r !== undefined) r.live = true;
      },
      taskEnding: ({ taskId }) => this.#dispose(taskId),
      taskStopped: ({ taskId }) => this.#dispose(taskId),
      taskFailed: ({ taskId }) => this.#dispose(taskId),
    };
  }

  /** The task's backend when the task is live here. */
  live(taskId: string): KeyedStateBackend | undefined {
    const r = this.#tasks.get(taskId);
    return r?.live ? r.backend : undefined;
  }

  /** Task ids with a registered backend (live or not): for tests and diagnostics. */
  registered(): string[] {
    return [...this.#tasks.keys()];
  }

  #dispose(taskId: string): void {
    this.#tasks.delete(taskId);
  }
}

interface Registration {
  readonly backend: KeyedStateBackend;
  live: boolean;
}
