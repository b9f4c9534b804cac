/**
 * The lifecycle of a task as an explicit table (as Kafka Streams' Task.State and kafkajs's
 * transaction state machine): one state, the valid moves out of it, and nothing else.
 *
 * ```
 *   created ─run()─> restoring ──> running ─end of input─> finishing ─final checkpoint─> finished
 *      │                 │            │                        │
 *      ├─────────────────┴────────────┴────────────────────────┴─stop()──> stopped
 *      └─────────────────┴────────────┴────────────────────────┴─failure─> failed (the first wins)
 *   every state ─abort()─> closed: nothing of this incarnation commits any more
 * ```
 *
 * `finished`, `stopped` and `failed` end the loop (`run()` returns, or rejects with the failure);
 * the owner then calls `abort()` (after a stop or a failure), which closes the task.
 */
export type TaskStateName =
  | 'created'
  | 'restoring'
  | 'running'
  | 'finishing'
  | 'finished'
  | 'stopped'
  | 'failed'
  | 'closed';

export type TaskState =
  | { readonly name: Exclude<TaskStateName, 'failed'> }
  | { readonly name: 'failed'; readonly error: unknown };

const MOVES: Readonly<Record<TaskStateName, readonly TaskStateName[]>> = {
  created: ['restoring', 'stopped', 'failed', 'closed'],
  restoring: ['running', 'stopped', 'failed', 'closed'],
  running: ['finishing', 'stopped', 'failed', 'closed'],
  finishing: ['finished', 'stopped', 'failed', 'closed'],
  finished: ['closed'],
  stopped: ['closed'],
  failed: ['closed'],
  closed: [],
};

/** Whether a task in state `from` may move to `to`. */
export function canMove(from: TaskStateName, to: TaskStateName): boolean {
  return MOVES[from].includes(to);
}

/** The loop processes input (or, finishing, completes its final checkpoint) in these states. */
export function isLive(state: TaskState): boolean {
  return state.name === 'running' || state.name === 'finishing';
}
