import { randomBytes } from 'node:crypto';
import { StreamError } from '../../api/errors.ts';
import type { KeyId } from '../../api/keys.ts';
import type { Serializer } from '../../api/serializer.ts';
import type {
  CheckpointFiles,
  KeyedStateBackend,
  KeyedStateCapture,
  KeyedStateHandle,
  KeyedStateSnapshot,
  StateMeta,
} from '../backend.ts';
import {
  checkKeyedSnapshotFormat,
  checkRestoredCompatible,
  checkSameRegistration,
  resolveSerializer,
} from '../state-meta.ts';
import {
  type ChainLayout,
  type ChainPolicy,
  captureToken,
  parseChainLayout,
  resolveChainPolicy,
} from './checkpoint/chain.ts';
import type { ChainPosition } from './checkpoint/write-checkpoint.ts';

/** The options of every keyed backend: its checkpoints' chain (checkpoint/chain.ts `ChainPolicy`). */
export interface KeyedBackendOptions {
  /** Deltas on one full checkpoint before the next full one. Default 10. */
  readonly maxDeltas?: number;
  /** A full checkpoint instead of a delta once the deltas would outweigh the base x this. Default 1. */
  readonly maxDeltaRatio?: number;
  /** Checkpoint run files are cut at about this size. Default 64 MiB. */
  readonly fileBytes?: number;
  /**
   * Run files of one checkpoint uploaded at once, and downloaded ahead while a restore applies them
   * (in order). Default 4; 1 transfers one file after the other. Memory: about (n + 1) x fileBytes.
   */
  readonly fileConcurrency?: number;
}

/** What the backend holds under a state name: its meta, and whether it is registered or only restored. */
export interface HeldState {
  readonly meta: StateMeta;
  readonly registered: boolean;
}

/**
 * The part of the keyed backend contract every backend shares, as `BaseCheckpointStorage` is for
 * storages: each public method below validates, then calls one primitive the backend implements.
 *
 * - `register`: a state registered again must be registered the same way (STATE_DESCRIPTOR_CONFLICT);
 *   the serializer must match the meta; a restored state must be readable by the new registration
 *   (SERIALIZER_MISMATCH / STATE_DESCRIPTOR_CONFLICT). Then `_register`.
 * - `restore(snapshot)`: a format this build reads, no state or key twice (CHECKPOINT_CORRUPT), every
 *   registered state compatible; all checked before `_restore` changes anything.
 * - `restoreHandle(handle, files)`: the handle is a chain of this kind (parseChainLayout), no state
 *   twice, registered states compatible, before `_restoreChain` reads a file.
 * - `capture`: the capture's token and the one a delta builds on (the previous capture's, or the
 *   restored checkpoint's); `_capture` freezes the state.
 *
 * The hot path (`get`, `put` ...) is the backend's own, with no wrapper in between. The chain options
 * (`KeyedBackendOptions`) are validated here, CONFIG_INVALID naming the field.
 */
export abstract class BaseKeyedStateBackend implements KeyedStateBackend {
  abstract readonly kind: string;
  /** The chain policy of this backend's checkpoints. */
  protected readonly policy: ChainPolicy;
  readonly #instance = randomBytes(6).toString('hex');
  #captures = 0;
  /** Token of the last capture, or of the restored checkpoint: what the next delta builds on. */
  #lastToken: string | undefined;

  /** `where` names the backend in option errors (`heap backend.fileBytes must be ...`). */
  protected constructor(where: string, options: KeyedBackendOptions) {
    this.policy = resolveChainPolicy(where, options);
  }

  // ---- primitives -------------------------------------------------------------------------------

  /** Throws when the backend can take no call (closed, failed). Default: always usable. */
  protected _checkUsable(): void {}
  /** The state held under `name`, registered or restored and not registered yet. */
  protected abstract _held(name: string): HeldState | undefined;
  /** Registers a state: new, or one held from a restore (checked compatible). */
  protected abstract _register(meta: StateMeta, serializer: Serializer<unknown>): void;
  /** Freezes the state for a capture at `at` (token, base token, policy). */
  protected abstract _capture(checkpointId: number, at: ChainPosition): KeyedStateCapture;
  /** Replaces all state by a checked snapshot; throws, changing nothing visible, on bytes that do not decode. */
  protected abstract _restore(snapshot: KeyedStateSnapshot): Promise<void>;
  /** Replaces all state by a checked chain's (local recovery where the backend has a local copy). */
  protected abstract _restoreChain(
    handle: KeyedStateHandle,
    layout: ChainLayout,
    files: CheckpointFiles,
  ): Promise<void>;

  abstract get(state: string, key: KeyId): unknown;
  abstract getForUpdate<T>(state: string, key: KeyId, copy: (value: T) => T): T | undefined;
  abstract put(state: string, key: KeyId, value: unknown): void;
  abstract delete(state: string, key: KeyId): void;
  abstract entries(state: string): [KeyId, unknown][];
  abstract size(state: string): number;
  abstract states(): readonly StateMeta[];
  abstract close(): Promise<void>;

  // ---- KeyedStateBackend --------------------------------------------------------------------------

  register(meta: StateMeta, serializer?: Serializer<unknown>): void {
    this._checkUsable();
    const held = this._held(meta.name);
    if (held?.registered) {
      checkSameRegistration(held.meta, meta);
      return;
    }
    const resolved = resolveSerializer(meta, serializer);
    if (held !== undefined) checkRestoredCompatible(held.meta, meta);
    this._register(meta, resolved);
  }

  capture(checkpointId: number): KeyedStateCapture {
    this._checkUsable();
    const token = captureToken(this.#instance, ++this.#captures);
    const capture = this._capture(checkpointId, {
      kind: this.kind,
      token,
      baseToken: this.#lastToken,
      policy: this.policy,
    });
    this.#lastToken = token;
    return capture;
  }

  async restore(snapshot: KeyedStateSnapshot): Promise<void> {
    this._checkUsable();
    checkKeyedSnapshotFormat(snapshot);
    const seen = new Set<string>();
    for (const entry of snapshot.states) {
      const name = entry.meta.name;
      if (seen.has(name)) {
        throw new StreamError('CHECKPOINT_CORRUPT', `keyed state snapshot holds state '${name}' twice`);
      }
      seen.add(name);
      this.#checkRestorable(entry.meta);
      const keys = new Set<KeyId>();
      for (const [key] of entry.entries) {
        if (keys.has(key)) {
          throw new StreamError(
            'CHECKPOINT_CORRUPT',
            `keyed state snapshot holds key ${JSON.stringify(key)} of state '${name}' twice`,
          );
        }
        keys.add(key);
      }
    }
    this.#lastToken = undefined;
    await this._restore(snapshot);
  }

  async restoreHandle(handle: KeyedStateHandle, files: CheckpointFiles): Promise<void> {
    this._checkUsable();
    const layout = parseChainLayout(handle, this.kind);
    const seen = new Set<string>();
    for (const s of layout.states) {
      if (seen.has(s.meta.name)) {
        throw new StreamError(
          'CHECKPOINT_CORRUPT',
          `the ${this.kind} keyed state handle lists state '${s.meta.name}' twice`,
        );
      }
      seen.add(s.meta.name);
      this.#checkRestorable(s.meta);
    }
    this.#lastToken = undefined;
    await this._restoreChain(handle, layout, files);
    this.#lastToken = layout.token;
  }

  /** The error of a state used before its descriptor was registered. */
  protected notRegistered(state: string): StreamError {
    return new StreamError(
      'STATE_DESCRIPTOR_CONFLICT',
      `state '${state}' is used before it was registered: register its descriptor (get its handle) first`,
    );
  }

  /** A registered state must be able to read what a snapshot or checkpoint holds under its name. */
  #checkRestorable(inSnapshot: StateMeta): void {
    const held = this._held(inSnapshot.name);
    if (held?.registered) checkRestoredCompatible(inSnapshot, held.meta);
  }
}
