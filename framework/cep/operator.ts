import type { KeyedProcessFunction } from '../api/functions.ts';
import type { Key } from '../api/keys.ts';
import { compilePattern } from './compile.ts';
import { type ActivePattern, CepEngine, type CepMatch, type EngineOptions } from './engine.ts';
import type { Pattern } from './pattern.ts';

export interface CepOptions<E> extends EngineOptions<E> {
  /** The `pattern` field of the matches; default `pattern`. */
  readonly id?: string;
}

/**
 * The CEP operator for a pattern fixed in code: a keyed process function that emits one `CepMatch`
 * per match, per key, in event-time order (its timestamp is the time of the match's last event).
 * Use it on a keyed stream: `events.keyBy(e => e.card).process(cep(pattern), { uid: 'fraud' })`.
 * The pattern is compiled (and validated, PATTERN_INVALID) here, when the job is built.
 *
 * Partial matches live in keyed state (see `CepEngine`), so they are checkpointed and survive
 * restarts; restore with the same pattern (a changed pattern needs `version` bumped, which drops the
 * partial matches of the old one).
 */
export function cep<K extends Key, E>(
  pattern: Pattern<E>,
  options: CepOptions<E> & { readonly version?: number } = {},
): KeyedProcessFunction<K, E, CepMatch<E>> {
  const active: ActivePattern<E>[] = [
    { id: options.id ?? 'pattern', version: options.version ?? 0, nfa: compilePattern(pattern) },
  ];
  const engine = new CepEngine<E>(options);
  return {
    processElement(value, ctx, out) {
      engine.onElement(value, ctx, out, active);
    },
    onTimer(timestamp, ctx, out) {
      engine.onTimer(timestamp, ctx.timeDomain, ctx, out, active);
    },
  };
}
