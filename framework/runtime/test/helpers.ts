import { unpack } from 'msgpackr';
import type { CheckpointStorage, FileRef } from '../../checkpoint/storage/storage.ts';
import type { JobPlan } from '../../graph/plan.ts';
import type { KeyedStateBackend, KeyedStateHandle, KeyedStateSnapshot } from '../../state/backend.ts';
import { HeapKeyedStateBackend } from '../../state/backends/heap/heap.ts';
import { temporaryLevelBackend } from '../../state/backends/level/testing.ts';
import { decodeKeyedSnapshot } from '../../state/snapshot-codec.ts';
import { materializeKeyedHandle, type TaskPayload } from '../snapshot-io.ts';
import { taskScope } from '../task.ts';

/**
 * The keyed state of every task's latest checkpoint, decoded and in a canonical order. A checkpoint
 * in a backend's own format (`keyedHandle`) is restored into a fresh backend of its kind (`backends`
 * adds kinds beyond heap and level) and materialized: that includes restored states nobody registered.
 */
export async function finalKeyedState(
  storage: CheckpointStorage,
  jobId: string,
  plan: JobPlan,
  backends: Record<string, () => Promise<KeyedStateBackend> | KeyedStateBackend> = {},
): Promise<string[]> {
  const make: Record<string, () => Promise<KeyedStateBackend> | KeyedStateBackend> = {
    heap: () => new HeapKeyedStateBackend(),
    level: () => temporaryLevelBackend(),
    ...backends,
  };
  const rows: string[] = [];
  for (const stage of plan.stages) {
    for (let p = 0; p < stage.partitions; p++) {
      const scope = taskScope(jobId, plan, stage, p);
      const meta = await storage.latest(scope);
      if (!meta) throw new Error(`no checkpoint for ${scope.taskId}`);
      const payload = meta.payload as TaskPayload;
      let snap: KeyedStateSnapshot;
      if (payload.keyedHandle !== undefined) {
        snap = await materializeHandle(payload.keyedHandle, storage, make);
      } else {
        const ref = meta.files.find((f) => f.path === payload.keyedFile)!;
        snap = decodeKeyedSnapshot(await storage.readFile(ref), ref.path);
      }
      for (const s of snap.states) {
        for (const [k, v] of s.entries)
          rows.push(`${scope.taskId} ${s.meta.name} ${k} ${JSON.stringify(unpack(v))}`);
      }
    }
  }
  return rows.sort();
}

function materializeHandle(
  handle: KeyedStateHandle,
  storage: CheckpointStorage,
  make: Record<string, () => Promise<KeyedStateBackend> | KeyedStateBackend>,
): Promise<KeyedStateSnapshot> {
  const factory = make[handle.backend];
  if (factory === undefined) throw new Error(`no backend of kind '${handle.backend}' to read the checkpoint`);
  const files = {
    write: () => Promise.reject(new Error('finalKeyedState only reads')),
    read: (ref: FileRef) => storage.readFile(ref),
  };
  return materializeKeyedHandle(handle, files, 0, factory);
}

export function sorted(xs: readonly string[]): string[] {
  return [...xs].sort();
}

/** One turn of the event loop (after the microtasks queued so far): the runtime's steps, no wall clock. */
export function turn(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/** Turns the event loop until `cond` holds; returns how many turns it took; throws after `max`. */
export async function turnsUntil(cond: () => boolean, max: number, what: string): Promise<number> {
  let turns = 0;
  for (; !cond(); turns++) {
    if (turns >= max) throw new Error(`not reached after ${max} event-loop turns: ${what}`);
    await turn();
  }
  return turns;
}

/** Resolve when `cond` holds, polling on the event loop; reject after `ms`. */
export async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
