import { unpack } from 'msgpackr';
import type { CheckpointStorage } from '../../checkpoint/storage/storage.ts';
import type { JobPlan } from '../../graph/plan.ts';
import { decodeKeyedSnapshot } from '../../state/snapshot-codec.ts';
import type { TaskPayload } from '../snapshot-io.ts';
import { taskScope } from '../task.ts';

/** The keyed state of every task's latest checkpoint, decoded and in a canonical order. */
export async function finalKeyedState(
  storage: CheckpointStorage,
  jobId: string,
  plan: JobPlan,
): Promise<string[]> {
  const rows: string[] = [];
  for (const stage of plan.stages) {
    for (let p = 0; p < stage.partitions; p++) {
      const scope = taskScope(jobId, plan, stage, p);
      const meta = await storage.latest(scope);
      if (!meta) throw new Error(`no checkpoint for ${scope.taskId}`);
      const payload = meta.payload as TaskPayload;
      const ref = meta.files.find((f) => f.path === payload.keyedFile)!;
      const snap = decodeKeyedSnapshot(await storage.readFile(ref), ref.path);
      for (const s of snap.states) {
        for (const [k, v] of s.entries)
          rows.push(`${scope.taskId} ${s.meta.name} ${k} ${JSON.stringify(unpack(v))}`);
      }
    }
  }
  return rows.sort();
}

export function sorted(xs: readonly string[]): string[] {
  return [...xs].sort();
}

/** Resolve when `cond` holds, polling on the event loop; reject after `ms`. */
export async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
