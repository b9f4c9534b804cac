/**
 * Transactional ids, in one place: `<jobId>.<taskId>.<slot>`. A task (stage x partition) always
 * uses the same ids, so the instance that takes a partition over fences the one that had it: its
 * InitProducerId bumps the epoch and aborts whatever that one left open.
 */
export const TRANSACTION_SLOTS = 2;

export function transactionalId(jobId: string, taskId: string, slot: number): string {
  return `${jobId}.${taskId}.${slot}`;
}
