import type { StateKind, StateTtlConfig } from '../api/state.ts';
import type { OperatorStateMode } from '../state/operator-state.ts';

/**
 * `savepoint.json`, the manifest of a savepoint exported as NDJSON: which file holds which state,
 * and what the import needs to turn rows back into state (kind, mode, serializer, TTL), plus the
 * value shape the rows were seen to have, which the import checks every row against.
 */
export const NDJSON_FORMAT = 'kstate-savepoint-ndjson';
export const NDJSON_VERSION = 1;

export interface NdjsonManifest {
  readonly format: typeof NDJSON_FORMAT;
  readonly version: number;
  readonly jobId: string;
  readonly savepoint?: string;
  /** `partitioner`: the stage's partitioner name (absent: murmur2), by which keys are in key groups. */
  readonly stages: readonly {
    readonly stage: string;
    readonly partitions: number;
    readonly partitioner?: string;
  }[];
  readonly states: readonly ManifestState[];
}

interface ManifestStateBase {
  /** Relative to the export directory: `<operator>/<state>.ndjson`. */
  readonly file: string;
  readonly stage: string;
  readonly operator: string;
  readonly state: string;
  readonly serializer: string;
  readonly serializerVersion: number;
  /** Rows in the file (informational). */
  readonly rows?: number;
  /** The shape of `value` (for lists: of each element; for maps: of each map value). Absent: any. */
  readonly valueType?: Shape;
}

export interface KeyedManifestState extends ManifestStateBase {
  readonly type: 'keyed';
  readonly kind: StateKind;
  readonly ttl?: StateTtlConfig;
}

export interface OperatorManifestState extends ManifestStateBase {
  readonly type: 'operator';
  readonly mode: OperatorStateMode;
}

export type ManifestState = KeyedManifestState | OperatorManifestState;

/** A small structural type, inferred from the exported values' JSON. */
export type Shape =
  | { readonly type: 'number' | 'string' | 'boolean' | 'null' | 'array' | 'any' }
  | { readonly type: 'object'; readonly fields: Readonly<Record<string, Shape>> };

function shapeOf(j: unknown, depth = 0): Shape {
  if (j === null) return { type: 'null' };
  if (Array.isArray(j)) return { type: 'array' };
  switch (typeof j) {
    case 'number':
      return { type: 'number' };
    case 'string':
      return { type: 'string' };
    case 'boolean':
      return { type: 'boolean' };
    case 'object': {
      if (depth > 0) return { type: 'any' };
      const fields: Record<string, Shape> = {};
      for (const [k, v] of Object.entries(j as object)) fields[k] = shapeOf(v, depth + 1);
      return { type: 'object', fields };
    }
    default:
      return { type: 'any' };
  }
}

function merge(a: Shape, b: Shape): Shape {
  if (a.type === 'any' || b.type === 'any' || a.type !== b.type) return { type: 'any' };
  if (a.type !== 'object' || b.type !== 'object') return a;
  const fields: Record<string, Shape> = {};
  for (const [k, s] of Object.entries(a.fields)) {
    const t = b.fields[k];
    if (t !== undefined) fields[k] = merge(s, t);
  }
  return { type: 'object', fields };
}

/** Folds the shapes of JSON values seen one by one; `shape` is undefined until the first. */
export class ShapeInference {
  shape: Shape | undefined;
  add(json: unknown): void {
    const s = shapeOf(json);
    this.shape = this.shape === undefined ? s : merge(this.shape, s);
  }
}

/** Why `json` does not fit `shape`, or undefined when it does. */
export function misfit(json: unknown, shape: Shape | undefined, path = 'value'): string | undefined {
  if (shape === undefined || shape.type === 'any') return undefined;
  const actual = json === null ? 'null' : Array.isArray(json) ? 'array' : typeof json;
  if (actual !== shape.type)
    return `${path} is ${describe(json)}, expected ${shape.type === 'object' ? 'an object' : `a ${shape.type}`}`;
  if (shape.type === 'object') {
    for (const [k, s] of Object.entries(shape.fields)) {
      const o = json as Record<string, unknown>;
      if (!(k in o)) return `${path}.${k} is missing`;
      const m = misfit(o[k], s, `${path}.${k}`);
      if (m) return m;
    }
  }
  return undefined;
}

function describe(j: unknown): string {
  const s = JSON.stringify(j);
  return s !== undefined && s.length > 40 ? `${s.slice(0, 40)}...` : String(s);
}

/** A path segment for an operator uid or state name: characters outside [A-Za-z0-9_-] percent-encoded. */
export function fileSegment(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, (c) =>
    [...Buffer.from(c)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  );
}
