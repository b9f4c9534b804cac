import { COMPARISONS, compare, describe, type Expr } from './expr.ts';

/**
 * Decidable unsatisfiability of a (checked) condition, sound but not complete: a reason is returned
 * only when no event can satisfy it. Within a conjunction it combines the comparisons of one field
 * with literals (==, !=, <, <=, >, >=, in): two different `==`, an empty range, a value excluded by
 * `!=` or outside an `in` list, a field compared both as a number and as a string. `or` is
 * unsatisfiable when every branch is; literal `false` and comparisons of literals are evaluated.
 */
export function contradiction(e: Expr): string | undefined {
  if (e === false) return 'it is the literal false';
  if (typeof e !== 'object' || e === null) return undefined;
  const o = e as Record<string, unknown>;
  const op = Object.keys(o)[0]!;
  if (op === 'not') return o.not === true ? 'it is not(true)' : undefined;
  if (op === 'or') {
    const reasons = (o.or as Expr[]).map(contradiction);
    return reasons.every((r) => r !== undefined) ? reasons.join('; and ') : undefined;
  }
  if (op === 'and' || (COMPARISONS as readonly string[]).includes(op) || op === 'in') return conjunction([e]);
  return undefined;
}

type Lit = number | string | boolean | null;

interface Facts {
  eq: Lit[];
  neq: Lit[];
  lo?: { v: number | string; incl: boolean };
  hi?: { v: number | string; incl: boolean };
  ordered?: 'number' | 'string';
  in?: Lit[];
}

const isLit = (x: unknown): x is Lit => x === null || ['number', 'string', 'boolean'].includes(typeof x);
const fieldOf = (x: unknown): string | undefined =>
  typeof x === 'object' && x !== null && !Array.isArray(x) && 'field' in x && !('agg' in x)
    ? ((x as { field: string }).field as string)
    : undefined;
const flip: Record<string, string> = { '<': '>', '<=': '>=', '>': '<', '>=': '<=', '==': '==', '!=': '!=' };

function conjunction(items: readonly Expr[]): string | undefined {
  const atoms: Expr[] = [];
  const flatten = (x: Expr) => {
    const o = x as Record<string, unknown>;
    if (typeof x === 'object' && x !== null && 'and' in o) for (const y of o.and as Expr[]) flatten(y);
    else atoms.push(x);
  };
  items.forEach(flatten);
  const facts = new Map<string, Facts>();
  const get = (f: string) => {
    let x = facts.get(f);
    if (!x) {
      x = { eq: [], neq: [] };
      facts.set(f, x);
    }
    return x;
  };
  for (const a of atoms) {
    const nested = typeof a === 'object' && a !== null && ('or' in a || 'not' in a);
    const own = nested || typeof a === 'boolean' ? contradiction(a) : undefined;
    if (own !== undefined) return own;
    if (typeof a !== 'object' || a === null) continue;
    const o = a as Record<string, unknown>;
    const op = Object.keys(o)[0]!;
    if (op === 'in') {
      const [x, list] = o.in as [unknown, Lit[]];
      const f = fieldOf(x);
      if (f !== undefined) {
        const facts = get(f);
        facts.in = facts.in === undefined ? [...list] : facts.in.filter((v) => list.includes(v));
      } else if (isLit(x) && !list.includes(x)) return `${describe(x)} is not in ${describe(list)}`;
      continue;
    }
    if (!(COMPARISONS as readonly string[]).includes(op)) continue;
    const [l, r] = o[op] as [unknown, unknown];
    if (isLit(l) && isLit(r)) {
      if (!compare(op, l, r)) return `${describe(l)} ${op} ${describe(r)} is false`;
      continue;
    }
    let f = fieldOf(l);
    let v: unknown = r;
    let cmp = op;
    if (f === undefined || !isLit(r)) {
      f = fieldOf(r);
      v = l;
      cmp = flip[op]!;
    }
    if (f === undefined || !isLit(v)) continue;
    const facts = get(f);
    if (cmp === '==') facts.eq.push(v);
    else if (cmp === '!=') facts.neq.push(v);
    else {
      if (typeof v !== 'number' && typeof v !== 'string') {
        return `"${f}" ${cmp} ${describe(v)} never holds (only numbers and strings are ordered)`;
      }
      const t = typeof v as 'number' | 'string';
      if (facts.ordered !== undefined && facts.ordered !== t) {
        return `"${f}" is compared both as a number and as a string`;
      }
      facts.ordered = t;
      const incl = cmp === '<=' || cmp === '>=';
      if (cmp === '>' || cmp === '>=') {
        if (facts.lo === undefined || v > facts.lo.v || (v === facts.lo.v && !incl)) facts.lo = { v, incl };
      } else if (facts.hi === undefined || v < facts.hi.v || (v === facts.hi.v && !incl))
        facts.hi = { v, incl };
    }
  }
  for (const [f, x] of facts) {
    const reason = fieldContradiction(f, x);
    if (reason) return reason;
  }
  return undefined;
}

function admits(x: Facts, v: Lit): boolean {
  if (x.neq.includes(v)) return false;
  if (x.in !== undefined && !x.in.includes(v)) return false;
  if (x.ordered !== undefined) {
    if (typeof v !== x.ordered) return false;
    const w = v as number | string;
    if (x.lo && (w < x.lo.v || (w === x.lo.v && !x.lo.incl))) return false;
    if (x.hi && (w > x.hi.v || (w === x.hi.v && !x.hi.incl))) return false;
  }
  return true;
}

function fieldContradiction(f: string, x: Facts): string | undefined {
  const eqs = [...new Set(x.eq)];
  if (eqs.length > 1) return `"${f}" cannot equal both ${describe(eqs[0])} and ${describe(eqs[1])}`;
  const range = () =>
    `${x.lo ? `${x.lo.incl ? '>=' : '>'} ${describe(x.lo.v)}` : ''}${x.lo && x.hi ? ' and ' : ''}${x.hi ? `${x.hi.incl ? '<=' : '<'} ${describe(x.hi.v)}` : ''}`;
  if (eqs.length === 1 && !admits(x, eqs[0]!)) {
    return `"${f}" == ${describe(eqs[0])} contradicts the other conditions on "${f}"`;
  }
  if (x.lo && x.hi && (x.lo.v > x.hi.v || (x.lo.v === x.hi.v && !(x.lo.incl && x.hi.incl)))) {
    return `no value of "${f}" is ${range()}`;
  }
  if (x.lo && x.hi && x.lo.v === x.hi.v && x.neq.includes(x.lo.v)) {
    return `"${f}" must be ${describe(x.lo.v)} and must not be`;
  }
  if (x.in !== undefined && !x.in.some((v) => admits(x, v))) {
    return `no value of the "in" list of "${f}" satisfies the other conditions on "${f}"`;
  }
  return undefined;
}
