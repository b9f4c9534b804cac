import type { FileRef } from '../../../checkpoint/storage/storage.ts';
import type { CheckpointFiles, KeyedStateHandle } from '../../backend.ts';
import {
  CHAIN_LAYOUT_FORMAT,
  type ChainLayout,
  type ChainPolicy,
  type ChainState,
  chooseCheckpointType,
  parseChainLayout,
  RunFilesWriter,
} from './chain.ts';

/** Where a capture stands in its backend's chain of checkpoints. */
export interface ChainPosition {
  /** The backend kind (`KeyedStateHandle.backend`). */
  readonly kind: string;
  /** This capture's token (`captureToken`). */
  readonly token: string;
  /** The token of the capture before it, or of the checkpoint restored since: what a delta builds on. */
  readonly baseToken: string | undefined;
  readonly policy: ChainPolicy;
}

/** What a capture holds, as the skeleton asks for it. */
export interface CheckpointContent {
  /** Every state at the capture with its number of entries (recorded in the layout). */
  readonly states: readonly ChainState[];
  /** Keys put or deleted since the capture before, and all keys: the delta's size estimate. */
  readonly changedKeys: number;
  readonly totalKeys: number;
  /** Writes every entry at the capture (a full checkpoint). */
  writeAll(out: RunFilesWriter): Promise<void>;
  /** Writes the puts and deletes since the capture before (a delta). */
  writeChanges(out: RunFilesWriter): Promise<void>;
}

/**
 * `KeyedStateCapture.writeCheckpoint` in the chain format, one skeleton for every backend; the
 * backend only says what its capture holds (`content`):
 *
 * 1. `previous` is read as a chain of this backend's kind; another kind's or a malformed handle
 *    counts as none (a full checkpoint, never a wrong delta).
 * 2. Full or delta: `chooseCheckpointType` (a delta only on the previous capture's checkpoint, while
 *    the chain is short and the deltas do not outweigh the base).
 * 3. The capture writes all its entries, or its changes, into run files (`RunFilesWriter`: cut at
 *    `fileBytes`, up to `fileConcurrency` uploads at once). When the capture fails meanwhile (a
 *    serializer throws, a read fails), the checkpoint rejects only once no upload of it runs.
 * 4. The handle: a full one lists its own files; a delta lists the previous checkpoint's files and
 *    its own, and its layout is the previous chain with this delta appended.
 */
export async function writeChainCheckpoint(
  at: ChainPosition,
  content: CheckpointContent,
  files: CheckpointFiles,
  previous: KeyedStateHandle | undefined,
): Promise<KeyedStateHandle> {
  let prev: ChainLayout | undefined;
  if (previous !== undefined) {
    try {
      prev = parseChainLayout(previous, at.kind);
    } catch {
      prev = undefined; // not ours, or malformed: write a full checkpoint
    }
  }
  const type = chooseCheckpointType(prev, at.baseToken, content.changedKeys, content.totalKeys, at.policy);
  const layout = (base: ChainLayout['base'], deltas: ChainLayout['deltas']): ChainLayout => ({
    format: CHAIN_LAYOUT_FORMAT,
    token: at.token,
    states: content.states,
    base,
    deltas,
  });
  const write = async (prefix: string, fill: (out: RunFilesWriter) => Promise<void>) => {
    const w = new RunFilesWriter(files, prefix, at.policy.fileBytes, at.policy.fileConcurrency);
    try {
      await fill(w);
    } catch (e) {
      await w.abandon(); // a value failed to encode, or a read: no upload may land after the rejection
      throw e;
    }
    return w.finish();
  };
  if (type === 'full' || prev === undefined || previous === undefined) {
    const { refs, part } = await write('keyed-full', (out) => content.writeAll(out));
    return { backend: at.kind, type: 'full', files: refs, layout: layout(part, []) };
  }
  const { refs, part } = await write('keyed-delta', (out) => content.writeChanges(out));
  const inherited: FileRef[] = previous.files.map((f) => ({
    path: f.path,
    bytes: f.bytes,
    sha256: f.sha256,
  }));
  return {
    backend: at.kind,
    type: 'incremental',
    files: [...inherited, ...refs],
    layout: layout(prev.base, [...prev.deltas, { token: at.token, ...part }]),
  };
}
