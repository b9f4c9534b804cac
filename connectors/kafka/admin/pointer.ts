import type { CheckpointPointer } from '../../../framework/index.ts';
import { kafkaError } from '../errors.ts';
import type { Admin } from '../internal/kafkajs.ts';

/**
 * The checkpoint pointer rides in the committed offset's metadata string (TxnOffsetCommit carries
 * one per partition; brokers allow 4096 bytes by default), so the group's committed offset and the
 * pointer to the snapshot it belongs to are one atomic fact. Format: `kstate1:` + JSON.
 */
const PREFIX = 'kstate1:';

export function encodePointer(p: CheckpointPointer): string {
  const s = PREFIX + JSON.stringify({ c: p.checkpointId, p: p.path, b: p.bytes, h: p.sha256 });
  if (s.length > 4000)
    throw new Error(`checkpoint pointer of ${s.length} characters exceeds the offset metadata limit`);
  return s;
}

export function decodePointer(metadata: string | null | undefined): CheckpointPointer | undefined {
  if (!metadata?.startsWith(PREFIX)) return undefined;
  const o = JSON.parse(metadata.slice(PREFIX.length)) as { c: number; p: string; b: number; h: string };
  return { checkpointId: o.c, path: o.p, bytes: o.b, sha256: o.h };
}

/**
 * The newest pointer committed for `partition` of any of `topics` by group `groupId`. All inputs of a
 * task are committed in one transaction, so they carry the same pointer; the newest wins should
 * they ever differ.
 */
export async function readCommittedPointer(
  admin: Admin,
  groupId: string,
  topics: readonly string[],
  partition: number,
): Promise<CheckpointPointer | undefined> {
  if (topics.length === 0) return undefined;
  let offsets: Awaited<ReturnType<Admin['fetchOffsets']>>;
  try {
    offsets = await admin.fetchOffsets({ groupId, topics: [...topics] });
  } catch (e) {
    throw kafkaError(`reading the committed checkpoint of group ${groupId}`, e);
  }
  let best: CheckpointPointer | undefined;
  for (const t of offsets) {
    for (const p of t.partitions) {
      if (p.partition !== partition) continue;
      const ptr = decodePointer(p.metadata);
      if (ptr && (!best || ptr.checkpointId > best.checkpointId)) best = ptr;
    }
  }
  return best;
}
