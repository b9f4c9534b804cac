/** The CEP library: the pattern API, the static and dynamic operators, patterns as data (docs/cep.md). */
export { type CompiledPattern, compilePattern } from './compile.ts';
export {
  DYNAMIC_PATTERNS_STATE,
  type DynamicCepOptions,
  dynamicCep,
  type PatternRecord,
  type PatternRejection,
  type PatternUpdate,
} from './dynamic.ts';
export type { CepMatch, CepTimeout, EngineOptions } from './engine.ts';
export type { Expr, ExprError } from './json/expr.ts';
export {
  compilePatternJson,
  type PatternJson,
  type PatternValidation,
  type SkipJson,
  type StageJson,
  validatePatternJson,
} from './json/pattern-json.ts';
export { type CepOptions, cep } from './operator.ts';
export {
  type AfterMatchSkip,
  type Condition,
  type Contiguity,
  type MatchContext,
  noSkip,
  Pattern,
  type PatternSpec,
  type StageSpec,
  skipPastLastEvent,
  skipToFirst,
  skipToLast,
  skipToNext,
} from './pattern.ts';
