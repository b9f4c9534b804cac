import type {
  BroadcastContext,
  KeyedBroadcastProcessFunction,
  OutputTag,
  RuntimeInfo,
} from '../api/functions.ts';
import type { Key } from '../api/keys.ts';
import type { MapState } from '../api/state.ts';
import { type ActivePattern, CepEngine, type CepMatch, type EngineOptions } from './engine.ts';
import type { ExprError } from './json/expr.ts';
import { describe } from './json/expr.ts';
import { formatErrors, type PatternJson, validatePatternJson } from './json/pattern-json.ts';

/**
 * Patterns from a stream (docs/cep.md, "Dynamic patterns"). The broadcast input carries records
 *
 *   { "id": "card-testing", "version": 3, "pattern": { ...JSON pattern... } }   add or replace
 *   { "id": "card-testing", "version": 4, "pattern": null }                      remove
 *
 * as objects, JSON text or UTF-8 bytes of JSON text, so a Kafka topic of JSON records feeds it
 * directly. Protocol, per pattern id: a higher version replaces the running pattern; the same version
 * with the same pattern is a no-op (replays after a restore); an older version, the same version with
 * another pattern, or a malformed record is rejected: the error goes to the `rejected` side output
 * and to `log`, and the running patterns stay. Accepted patterns live in broadcast state
 * `DYNAMIC_PATTERNS_STATE` (checkpointed with the job).
 *
 * Per key, partial matches are stored with the version of their pattern: those of an unchanged
 * pattern are kept across updates of other patterns, those of a changed or removed pattern are
 * dropped (lazily: the next time the key sees an event or a timer). A pattern sees the events
 * processed after it was accepted (in event time: the events the watermark releases after that).
 */
export const DYNAMIC_PATTERNS_STATE = 'cep-patterns';

export interface PatternRecord {
  readonly id: string;
  readonly version: number;
  readonly pattern: PatternJson | null;
}

export interface PatternRejection {
  /** The record's id and version, when it had readable ones. */
  readonly id?: string;
  readonly version?: number;
  readonly errors: readonly ExprError[];
  readonly message: string;
}

/** Accepted updates: `active` (added or replaced) or `removed`. */
export interface PatternUpdate {
  readonly id: string;
  readonly version: number;
  readonly status: 'active' | 'removed';
}

export interface DynamicCepOptions<E> extends EngineOptions<E> {
  readonly rejected?: OutputTag<PatternRejection>;
  readonly updates?: OutputTag<PatternUpdate>;
  /** Where rejections are logged; default `console.warn`. */
  readonly log?: (message: string) => void;
}

interface Stored {
  readonly version: number;
  /** The pattern as canonical JSON text (what the same-version check compares). */
  readonly json: string;
}

const ID = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/;

/**
 * The keyed broadcast function: connect a keyed event stream with the broadcast pattern stream,
 * `events.keyBy(k).connect(patterns.broadcast(DYNAMIC_PATTERNS_STATE)).process(dynamicCep(), { uid })`.
 * Matches carry the pattern's id and version.
 */
export function dynamicCep<K extends Key, E = unknown>(
  options: DynamicCepOptions<E> = {},
): KeyedBroadcastProcessFunction<K, E, unknown, CepMatch<E>> {
  const engine = new CepEngine<E>(options);
  const log = options.log ?? ((m: string) => console.warn(m));
  // The function object is shared by the operator's tasks: compiled patterns are cached per task.
  const tasks = new Map<string, Map<string, ActivePattern<E>>>();
  const taskOf = (info: RuntimeInfo) => `${info.jobId}/${info.operatorUid}/${info.partition}`;
  const compile = (id: string, s: Stored): ActivePattern<E> => {
    const v = validatePatternJson(JSON.parse(s.json));
    if (!v.ok) throw new Error(`stored pattern '${id}' no longer validates: ${formatErrors(v.errors)}`);
    return { id, version: s.version, nfa: v.nfa as ActivePattern<E>['nfa'] };
  };
  const active = (info: RuntimeInfo, state?: { entries(): [string, Stored][] }) => {
    let t = tasks.get(taskOf(info));
    if (t === undefined) {
      t = new Map();
      for (const [id, s] of state?.entries() ?? []) t.set(id, compile(id, s));
      tasks.set(taskOf(info), t);
    }
    return [...t.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  };
  const reject = (ctx: BroadcastContext, r: Omit<PatternRejection, 'message'>) => {
    const what = r.id === undefined ? 'a pattern record' : `pattern '${r.id}' version ${r.version}`;
    const message = `CEP: rejected ${what}: ${r.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}; the running patterns stay`;
    if (options.rejected) ctx.output(options.rejected, { ...r, message });
    log(message);
  };

  return {
    initializeState(ctx) {
      const state = ctx.operatorState.getBroadcastState<string, Stored>(DYNAMIC_PATTERNS_STATE);
      tasks.delete(taskOf(ctx.info));
      active(ctx.info, state);
    },
    processElement(value, ctx, out) {
      engine.onElement(value, ctx, out, active(ctx.info, ctx.broadcastState(DYNAMIC_PATTERNS_STATE)));
    },
    onTimer(timestamp, ctx, out) {
      engine.onTimer(timestamp, ctx.timeDomain, ctx, out, active(ctx.info));
    },
    processBroadcastElement(raw, ctx) {
      const state: MapState<string, Stored> = ctx.broadcastState(DYNAMIC_PATTERNS_STATE);
      active(ctx.info, state);
      const r = readRecord(raw);
      if ('errors' in r) return reject(ctx, r);
      const { id, version } = r;
      const existing = state.get(id);
      const json = r.pattern === null ? 'null' : canonical(r.pattern);
      if (existing !== undefined) {
        if (version < existing.version) {
          const message = `version ${version} is older than the running version ${existing.version}`;
          return reject(ctx, { id, version, errors: [{ path: '$.version', message }] });
        }
        if (version === existing.version) {
          if (json === existing.json) return;
          const message = `version ${version} already holds another pattern; publish a changed pattern with a higher version`;
          return reject(ctx, { id, version, errors: [{ path: '$.version', message }] });
        }
      }
      const cache = tasks.get(taskOf(ctx.info))!;
      if (r.pattern === null) {
        state.remove(id);
        cache.delete(id);
        if (options.updates) ctx.output(options.updates, { id, version, status: 'removed' });
        return;
      }
      const v = validatePatternJson(r.pattern);
      if (!v.ok) {
        return reject(ctx, {
          id,
          version,
          errors: v.errors.map((e) => ({ ...e, path: `$.pattern${e.path.slice(1)}` })),
        });
      }
      state.put(id, { version, json });
      cache.set(id, { id, version, nfa: v.nfa as ActivePattern<E>['nfa'] });
      if (options.updates) ctx.output(options.updates, { id, version, status: 'active' });
    },
  };
}

type ReadRecord = { id: string; version: number; pattern: unknown } | Omit<PatternRejection, 'message'>;

/** Parse and check the envelope of a pattern record. */
export function readRecord(raw: unknown): ReadRecord {
  let value = raw;
  if (raw instanceof Uint8Array) value = new TextDecoder().decode(raw);
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value);
    } catch (e) {
      return { errors: [{ path: '$', message: `not JSON: ${(e as Error).message}` }] };
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return {
      errors: [
        {
          path: '$',
          message: `a pattern record is an object {id, version, pattern}, got ${describe(value)}`,
        },
      ],
    };
  }
  const o = value as Record<string, unknown>;
  const errors: ExprError[] = [];
  for (const k of Object.keys(o)) {
    if (!['id', 'version', 'pattern'].includes(k))
      errors.push({ path: `$.${k}`, message: 'unknown key; a record has id, version, pattern' });
  }
  const id = typeof o.id === 'string' && ID.test(o.id) ? o.id : undefined;
  if (id === undefined)
    errors.push({
      path: '$.id',
      message: `must be a name of letters, digits, '_', '.', '-', got ${describe(o.id)}`,
    });
  const version =
    Number.isInteger(o.version) && (o.version as number) >= 0 ? (o.version as number) : undefined;
  if (version === undefined)
    errors.push({ path: '$.version', message: `must be a whole number >= 0, got ${describe(o.version)}` });
  if (!('pattern' in o))
    errors.push({ path: '$.pattern', message: 'is required (null removes the pattern)' });
  if (errors.length > 0)
    return { ...(id ? { id } : {}), ...(version !== undefined ? { version } : {}), errors };
  return { id: id!, version: version!, pattern: o.pattern };
}

/** JSON text with object keys sorted, so equal patterns compare equal. */
function canonical(x: unknown): string {
  if (Array.isArray(x)) return `[${x.map(canonical).join(',')}]`;
  if (typeof x === 'object' && x !== null) {
    const o = x as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(x);
}
