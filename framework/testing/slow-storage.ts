import type { CheckpointMetadata, CheckpointStorage, FileRef, Scope } from '../checkpoint/storage/storage.ts';

/**
 * Wraps a storage so that file writes wait until the test opens the gate: a deliberately slow
 * checkpoint storage, to show that asynchronous snapshots let processing go on meanwhile.
 */
export class SlowStorage implements CheckpointStorage {
  readonly kind: CheckpointStorage['kind'];
  readonly #inner: CheckpointStorage;
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;
  /** Writes currently waiting at the gate. */
  waiting = 0;
  /** Per task id, its writes waiting at the gate (a task may write several files at once). */
  readonly #waitingByTask = new Map<string, number>();
  #onWaiting: (() => void) | undefined;

  constructor(inner: CheckpointStorage) {
    this.#inner = inner;
    this.kind = inner.kind;
  }

  /** Make every following write wait until `release()`. */
  hold(): void {
    this.#gate ??= new Promise((r) => {
      this.#open = r;
    });
  }

  release(): void {
    this.#open?.();
    this.#gate = undefined;
    this.#open = undefined;
  }

  /** Resolves once at least `n` writes are waiting at the gate. */
  async whenWaiting(n = 1): Promise<void> {
    while (this.waiting < n) {
      await new Promise<void>((r) => {
        this.#onWaiting = r;
      });
    }
  }

  /** Resolves once writes of at least `n` different tasks are waiting at the gate. */
  async whenTasksWaiting(n: number): Promise<void> {
    while (this.#waitingByTask.size < n) {
      await new Promise<void>((r) => {
        this.#onWaiting = r;
      });
    }
  }

  async writeFile(scope: Scope, checkpointId: number, name: string, bytes: Uint8Array): Promise<FileRef> {
    if (this.#gate) {
      const task = scope.taskId;
      this.waiting++;
      this.#waitingByTask.set(task, (this.#waitingByTask.get(task) ?? 0) + 1);
      this.#onWaiting?.();
      this.#onWaiting = undefined;
      await this.#gate;
      this.waiting--;
      const left = (this.#waitingByTask.get(task) ?? 1) - 1;
      if (left > 0) this.#waitingByTask.set(task, left);
      else this.#waitingByTask.delete(task);
    }
    return this.#inner.writeFile(scope, checkpointId, name, bytes);
  }
  readFile(ref: FileRef): Promise<Uint8Array> {
    return this.#inner.readFile(ref);
  }
  commit(meta: CheckpointMetadata): Promise<void> {
    return this.#inner.commit(meta);
  }
  latest(scope: Scope): Promise<CheckpointMetadata | undefined> {
    return this.#inner.latest(scope);
  }
  list(scope: Scope): Promise<CheckpointMetadata[]> {
    return this.#inner.list(scope);
  }
  load(scope: Scope, id: number): Promise<CheckpointMetadata> {
    return this.#inner.load(scope, id);
  }
  loadSavepoint(name: string, scope: Scope): Promise<CheckpointMetadata> {
    return this.#inner.loadSavepoint(name, scope);
  }
  discard(scope: Scope, id: number): Promise<void> {
    return this.#inner.discard(scope, id);
  }
  tasks(jobId: string): Promise<string[]> {
    return this.#inner.tasks(jobId);
  }
}
