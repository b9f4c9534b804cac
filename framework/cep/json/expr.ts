import type { Condition, MatchContext } from '../pattern.ts';

/**
 * The condition language of JSON patterns (docs/cep.md, "Conditions"). An expression is one of:
 *
 *   literal              1, "FR", true, null
 *   {"field": "a.b"}     a field of the candidate event (dot path)
 *   {"agg": "count"|"sum"|"min"|"max"|"avg"|"first"|"last", "stage": "s", "field"?: "a.b"}
 *                        over the events stage `s` has taken so far in the partial match
 *   {"==": [x, y]}       also "!=", "<", "<=", ">", ">="
 *   {"in": [x, [literal, ...]]}
 *   {"and": [e, ...]}  {"or": [e, ...]}  {"not": e}
 *   {"+": [x, y]}        also "-", "*", "/", "%"
 *
 * Missing values (absent field, aggregate over no event, arithmetic on non-numbers, division by 0)
 * are `undefined`, and every comparison with `undefined` is false (so `not` of it is true). `<`,
 * `<=`, `>`, `>=` compare two numbers or two strings, else false; `==` and `!=` compare with `===`.
 */
export type Expr =
  | number
  | string
  | boolean
  | null
  | { readonly field: string }
  | { readonly agg: Aggregate; readonly stage: string; readonly field?: string }
  | { readonly [op: string]: unknown };

export type Aggregate = 'count' | 'sum' | 'min' | 'max' | 'avg' | 'first' | 'last';

export const COMPARISONS = ['==', '!=', '<', '<=', '>', '>='] as const;
export const ARITHMETIC = ['+', '-', '*', '/', '%'] as const;
export const AGGREGATES: readonly Aggregate[] = ['count', 'sum', 'min', 'max', 'avg', 'first', 'last'];

export interface ExprError {
  readonly path: string;
  readonly message: string;
}

type Value = number | string | boolean | null | undefined;
type Eval = (event: unknown, ctx: MatchContext<unknown>) => Value;

const isObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x);

/** The kind of an expression: `bool` (conditions) or `value`. */
export type ExprKind = 'bool' | 'value';

/**
 * Check an expression; returns its kind, pushing errors (with JSON paths) for anything malformed.
 * `stages` lists the stage names an aggregate may name (the stages up to the current one).
 */
export function checkExpr(
  e: unknown,
  path: string,
  stages: readonly string[],
  errors: ExprError[],
): ExprKind | undefined {
  const err = (p: string, message: string) => {
    errors.push({ path: p, message });
    return undefined;
  };
  if (e === null || typeof e === 'number' || typeof e === 'string') {
    if (typeof e === 'number' && !Number.isFinite(e)) return err(path, 'numbers must be finite');
    return 'value';
  }
  if (typeof e === 'boolean') return 'bool';
  if (!isObject(e)) return err(path, `expected an expression (literal or object), got ${describe(e)}`);
  const keys = Object.keys(e);
  if ('field' in e && !('agg' in e)) {
    if (keys.length !== 1)
      return err(path, `a field reference has only "field", got keys ${keys.join(', ')}`);
    return checkFieldPath(e.field, `${path}.field`, errors) ? 'value' : undefined;
  }
  if ('agg' in e) {
    const extra = keys.filter((k) => !['agg', 'stage', 'field'].includes(k));
    if (extra.length > 0) return err(path, `unknown key(s) ${extra.join(', ')} in an aggregate`);
    if (!AGGREGATES.includes(e.agg as Aggregate)) {
      return err(`${path}.agg`, `unknown aggregate ${describe(e.agg)}; use one of ${AGGREGATES.join(', ')}`);
    }
    if (typeof e.stage !== 'string' || !stages.includes(e.stage)) {
      return err(
        `${path}.stage`,
        `an aggregate must name this stage or an earlier one (${stages.join(', ')}), got ${describe(e.stage)}`,
      );
    }
    if (e.field === undefined) {
      if (e.agg !== 'count' && e.agg !== 'first' && e.agg !== 'last') {
        return err(path, `aggregate '${e.agg}' needs a "field"`);
      }
      return 'value';
    }
    return checkFieldPath(e.field, `${path}.field`, errors) ? 'value' : undefined;
  }
  if (keys.length !== 1) {
    return err(
      path,
      `an operator object has exactly one key (the operator), got ${keys.length ? keys.join(', ') : 'none'}`,
    );
  }
  const op = keys[0]!;
  const arg = e[op];
  const at = `${path}.${op}`;
  if (op === 'not') {
    const k = checkExpr(arg, at, stages, errors);
    if (k === 'value') err(at, 'expected a condition (comparison, in, and, or, not, true, false)');
    return k === 'bool' ? 'bool' : undefined;
  }
  if (op === 'and' || op === 'or') {
    if (!Array.isArray(arg) || arg.length === 0)
      return err(at, `"${op}" takes a non-empty array of conditions`);
    let ok = true;
    arg.forEach((x, i) => {
      const k = checkExpr(x, `${at}[${i}]`, stages, errors);
      if (k === 'value') {
        err(`${at}[${i}]`, 'expected a condition (comparison, in, and, or, not, true, false)');
      }
      ok &&= k === 'bool';
    });
    return ok ? 'bool' : undefined;
  }
  const binary =
    (COMPARISONS as readonly string[]).includes(op) || (ARITHMETIC as readonly string[]).includes(op);
  if (binary) {
    if (!Array.isArray(arg) || arg.length !== 2) return err(at, `"${op}" takes an array of two operands`);
    const a = checkExpr(arg[0], `${at}[0]`, stages, errors);
    const b = checkExpr(arg[1], `${at}[1]`, stages, errors);
    if (a === 'bool' && (ARITHMETIC as readonly string[]).includes(op))
      err(`${at}[0]`, 'arithmetic on a condition');
    if (b === 'bool' && (ARITHMETIC as readonly string[]).includes(op))
      err(`${at}[1]`, 'arithmetic on a condition');
    if (a === undefined || b === undefined) return undefined;
    return (COMPARISONS as readonly string[]).includes(op) ? 'bool' : 'value';
  }
  if (op === 'in') {
    if (!Array.isArray(arg) || arg.length !== 2 || !Array.isArray(arg[1])) {
      return err(at, '"in" takes [expression, [literal, ...]]');
    }
    const a = checkExpr(arg[0], `${at}[0]`, stages, errors);
    const list = arg[1] as unknown[];
    list.forEach((x, i) => {
      if (!(x === null || ['number', 'string', 'boolean'].includes(typeof x))) {
        err(`${at}[1][${i}]`, `"in" lists literals only, got ${describe(x)}`);
      }
    });
    return a === undefined ? undefined : 'bool';
  }
  return err(
    path,
    `unknown operator "${op}"; use field, agg, ${COMPARISONS.join(' ')}, in, and, or, not, ${ARITHMETIC.join(' ')}`,
  );
}

function checkFieldPath(f: unknown, path: string, errors: ExprError[]): boolean {
  if (typeof f !== 'string' || f === '' || f.split('.').some((s) => s === '')) {
    errors.push({ path, message: `a field is a non-empty dot path like "card.country", got ${describe(f)}` });
    return false;
  }
  return true;
}

export function describe(x: unknown): string {
  if (x === undefined) return 'nothing';
  const s = JSON.stringify(x);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** Read a dot path from a value; `undefined` when any step is missing or not an object. */
export function readField(value: unknown, path: readonly string[]): Value {
  let cur: unknown = value;
  for (const p of path) {
    if (!isObject(cur)) return undefined;
    cur = cur[p];
  }
  return cur === null || ['number', 'string', 'boolean'].includes(typeof cur) ? (cur as Value) : undefined;
}

const num = (x: Value): x is number => typeof x === 'number';

/** Compile a checked expression to an evaluator. */
function compileValue(e: Expr): Eval {
  if (e === null || typeof e !== 'object') {
    const v = e as Value;
    return () => v;
  }
  const o = e as Record<string, unknown>;
  if ('agg' in o) {
    const stage = o.stage as string;
    const path = typeof o.field === 'string' ? o.field.split('.') : undefined;
    const agg = o.agg as Aggregate;
    return (_event, ctx) => aggregate(agg, ctx.events(stage), path);
  }
  if ('field' in o) {
    const path = (o.field as string).split('.');
    return (event) => readField(event, path);
  }
  const op = Object.keys(o)[0]!;
  const arg = o[op];
  if (
    op === 'and' ||
    op === 'or' ||
    op === 'not' ||
    op === 'in' ||
    (COMPARISONS as readonly string[]).includes(op)
  ) {
    const c = compileCondition(e);
    return (event, ctx) => c(event, ctx);
  }
  const [a, b] = (arg as Expr[]).map(compileValue) as [Eval, Eval];
  return (event, ctx) => {
    const x = a(event, ctx);
    const y = b(event, ctx);
    if (!num(x) || !num(y)) return undefined;
    switch (op) {
      case '+':
        return x + y;
      case '-':
        return x - y;
      case '*':
        return x * y;
      case '/':
        return y === 0 ? undefined : x / y;
      default:
        return y === 0 ? undefined : x % y;
    }
  };
}

function aggregate(agg: Aggregate, events: readonly unknown[], path: string[] | undefined): Value {
  if (agg === 'count') {
    return path === undefined ? events.length : events.filter((x) => readField(x, path) !== undefined).length;
  }
  const values = path === undefined ? (events as Value[]) : events.map((x) => readField(x, path));
  if (agg === 'first') return values.length > 0 ? values[0] : undefined;
  if (agg === 'last') return values.length > 0 ? values[values.length - 1] : undefined;
  const nums = values.filter(num);
  if (agg === 'sum') return nums.reduce((s, x) => s + x, 0);
  if (nums.length === 0) return undefined;
  if (agg === 'min') return Math.min(...nums);
  if (agg === 'max') return Math.max(...nums);
  return nums.reduce((s, x) => s + x, 0) / nums.length;
}

/** Compile a checked condition (an expression of kind `bool`). */
export function compileCondition(e: Expr): Condition<unknown> {
  if (typeof e === 'boolean') return () => e;
  const o = e as Record<string, unknown>;
  const op = Object.keys(o)[0]!;
  const arg = o[op];
  if (op === 'not') {
    const c = compileCondition(arg as Expr);
    return (event, ctx) => !c(event, ctx);
  }
  if (op === 'and' || op === 'or') {
    const cs = (arg as Expr[]).map(compileCondition);
    return op === 'and'
      ? (event, ctx) => cs.every((c) => c(event, ctx))
      : (event, ctx) => cs.some((c) => c(event, ctx));
  }
  if (op === 'in') {
    const [x, list] = arg as [Expr, Value[]];
    const v = compileValue(x);
    const set = new Set(list);
    return (event, ctx) => {
      const y = v(event, ctx);
      return y !== undefined && set.has(y);
    };
  }
  const [a, b] = (arg as Expr[]).map(compileValue) as [Eval, Eval];
  return (event, ctx) => compare(op, a(event, ctx), b(event, ctx));
}

export function compare(op: string, x: Value, y: Value): boolean {
  if (x === undefined || y === undefined) return false;
  if (op === '==') return x === y;
  if (op === '!=') return x !== y;
  if (!((num(x) && num(y)) || (typeof x === 'string' && typeof y === 'string'))) return false;
  switch (op) {
    case '<':
      return x < y;
    case '<=':
      return x <= y;
    case '>':
      return x > y;
    default:
      return x >= y;
  }
}
