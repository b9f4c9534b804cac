import { StreamError } from '../api/errors.ts';
import type { KeyId } from '../api/keys.ts';
import type { Serializer } from '../api/serializer.ts';
import type {
  KeyedStateBackend,
  KeyedStateCapture,
  KeyedStateSnapshot,
  StateMeta,
} from '../state/backend.ts';

/**
 * One keyed backend per task, shared by its keyed operators: each operator sees it through this
 * view, which prefixes state names with `<uid>/`. Snapshots are taken of the whole backend by the
 * task, never through a view.
 */
export function scopedBackend(backend: KeyedStateBackend, uid: string): KeyedStateBackend {
  const p = `${uid}/`;
  const notHere = (what: string): never => {
    throw new StreamError('GRAPH_INVALID', `operator '${uid}' cannot ${what} the task's keyed backend`);
  };
  return {
    kind: backend.kind,
    register: (meta: StateMeta, serializer?: Serializer<unknown>) =>
      backend.register({ ...meta, name: p + meta.name }, serializer),
    get: (s: string, k: KeyId) => backend.get(p + s, k),
    getForUpdate: <T>(s: string, k: KeyId, copy: (v: T) => T) => backend.getForUpdate(p + s, k, copy),
    put: (s: string, k: KeyId, v: unknown) => backend.put(p + s, k, v),
    delete: (s: string, k: KeyId) => backend.delete(p + s, k),
    entries: (s: string) => backend.entries(p + s),
    size: (s: string) => backend.size(p + s),
    capture: (_id: number): KeyedStateCapture => notHere('capture'),
    restore: (_s: KeyedStateSnapshot): Promise<void> => notHere('restore'),
    close: async () => {},
  };
}
