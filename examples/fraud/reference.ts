import type { PatternJson } from '../../framework/index.ts';
import { type Alert, alertKey, type Transaction } from './model.ts';

/**
 * A brute-force matcher for the fraud patterns, written from the definitions of docs/cep.md and
 * independent of the CEP library's NFA and expression compiler: per card, it enumerates every
 * assignment of the card's transactions to the pattern's stages that satisfies the conditions,
 * the contiguity (`followedBy`: no transaction in between would have satisfied the stage;
 * `next`: none in between), the `times` and `within` (last - first < within), orders the matches
 * by their last transaction, then by their transactions, and applies the after-match skip.
 *
 * It covers the JSON subset the fraud patterns use (positive stages with `next`, `followedBy` or
 * `followedByAny`, fixed `times`, relaxed inner contiguity; `noSkip`, `skipToNext`,
 * `skipPastLastEvent`) and throws on anything else, so it is never silently wrong.
 */
export function referenceAlerts(
  record: { readonly id: string; readonly version: number; readonly pattern: PatternJson },
  transactions: readonly Transaction[],
): Alert[] {
  const p = record.pattern;
  const skip = p.skip ?? 'noSkip';
  if (typeof skip !== 'string' || !['noSkip', 'skipToNext', 'skipPastLastEvent'].includes(skip)) {
    throw new Error(`reference: skip ${JSON.stringify(skip)} is not supported`);
  }
  // One slot per event a stage takes (a stage with times n has n slots).
  const slots: { stage: string; where: unknown; join: string }[] = [];
  p.stages.forEach((s, i) => {
    const extra = Object.keys(s).filter((k) => !['name', 'join', 'where', 'times'].includes(k));
    if (extra.length > 0 || (s.times !== undefined && typeof s.times !== 'number')) {
      throw new Error(`reference: stage ${s.name} uses ${extra.join(', ') || 'times {min, max}'}`);
    }
    const join = i === 0 ? 'start' : (s.join ?? '');
    if (i > 0 && !['next', 'followedBy', 'followedByAny'].includes(join)) {
      throw new Error(`reference: join ${join} is not supported`);
    }
    for (let k = 0; k < ((s.times as number | undefined) ?? 1); k++) {
      slots.push({ stage: s.name, where: s.where ?? true, join: k === 0 ? join : 'followedBy' });
    }
  });

  const byCard = new Map<string, Transaction[]>();
  for (const t of [...transactions].sort((a, b) => a.ts - b.ts)) {
    byCard.set(t.card, [...(byCard.get(t.card) ?? []), t]);
  }
  const alerts: Alert[] = [];
  for (const [card, txs] of byCard) {
    const found: number[][] = [];
    const pick: number[] = [];
    const context = (upTo: number) => (stage: string) =>
      pick.slice(0, upTo).flatMap((q, i) => (slots[i]!.stage === stage ? [txs[q]!] : []));
    const holds = (slot: number, q: number) => truthy(evaluate(slots[slot]!.where, txs[q]!, context(slot)));
    const extend = (slot: number) => {
      if (slot === slots.length) {
        found.push([...pick]);
        return;
      }
      const prev = slot === 0 ? -1 : pick[slot - 1]!;
      for (let q = prev + 1; q < txs.length; q++) {
        if (txs[q]!.ts - txs[pick[0]!]!.ts >= p.within) break;
        const join = slots[slot]!.join;
        if (join === 'next' && q !== prev + 1) break;
        if (!holds(slot, q)) continue;
        pick.push(q);
        extend(slot + 1);
        pick.pop();
        // next, followedBy: no later transaction is a candidate once this one satisfied the slot.
        if (join !== 'followedByAny') break;
      }
    };
    // Every transaction may start a match: enumerate from each start.
    for (let q = 0; q < txs.length; q++) {
      if (!holds(0, q)) continue;
      pick.push(q);
      extend(1);
      pick.pop();
    }
    found.sort((a, b) => a[a.length - 1]! - b[b.length - 1]! || lex(a, b));
    const kept: number[][] = [];
    for (const m of found) {
      const start = m[0]!;
      const discarded = kept.some((k) =>
        skip === 'skipPastLastEvent'
          ? start <= k[k.length - 1]!
          : skip === 'skipToNext'
            ? start <= k[0]!
            : false,
      );
      if (!discarded) kept.push(m);
    }
    for (const m of kept) {
      const tx: Record<string, string[]> = {};
      m.forEach((q, i) => {
        tx[slots[i]!.stage] = [...(tx[slots[i]!.stage] ?? []), txs[q]!.id];
      });
      alerts.push({
        pattern: record.id,
        version: record.version,
        card,
        start: txs[m[0]!]!.ts,
        end: txs[m[m.length - 1]!]!.ts,
        tx,
      });
    }
  }
  return alerts.sort((a, b) => a.end - b.end || (alertKey(a) < alertKey(b) ? -1 : 1));
}

function lex(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

type Value = number | string | boolean | null | undefined;
const truthy = (v: Value) => v === true;

/** The expression language of docs/cep.md (fields, aggregates, comparisons, in, and/or/not, arithmetic). */
function evaluate(e: unknown, tx: Transaction, events: (stage: string) => Transaction[]): Value {
  if (e === null || typeof e !== 'object') return e as Value;
  const o = e as Record<string, unknown>;
  const field = (t: Transaction, f: string): Value => {
    let cur: unknown = t;
    for (const part of f.split('.')) cur = (cur as Record<string, unknown> | undefined)?.[part];
    return typeof cur === 'object' ? undefined : (cur as Value);
  };
  if ('agg' in o) {
    const list = events(o.stage as string);
    if (o.agg === 'count' && o.field === undefined) return list.length;
    if (o.field === undefined) throw new Error(`reference: aggregate ${String(o.agg)} without a field`);
    const values = list.map((t) => field(t, o.field as string));
    switch (o.agg) {
      case 'count':
        return values.filter((v) => v !== undefined).length;
      case 'first':
        return values[0];
      case 'last':
        return values[values.length - 1];
      default:
        throw new Error(`reference: aggregate ${String(o.agg)} is not supported`);
    }
  }
  if ('field' in o) return field(tx, o.field as string);
  const [op] = Object.keys(o);
  const arg = o[op!] as unknown[];
  const ev = (x: unknown) => evaluate(x, tx, events);
  switch (op) {
    case 'and':
      return arg.every((x) => truthy(ev(x)));
    case 'or':
      return arg.some((x) => truthy(ev(x)));
    case 'not':
      return !truthy(ev(arg));
    case 'in': {
      const v = ev(arg[0]);
      return v !== undefined && (arg[1] as Value[]).includes(v);
    }
  }
  const [x, y] = [ev(arg[0]), ev(arg[1])];
  if (x === undefined || y === undefined) return false;
  switch (op) {
    case '==':
      return x === y;
    case '!=':
      return x !== y;
  }
  const comparable =
    (typeof x === 'number' && typeof y === 'number') || (typeof x === 'string' && typeof y === 'string');
  if (!comparable) return false;
  switch (op) {
    case '<':
      return (x as number) < (y as number);
    case '<=':
      return (x as number) <= (y as number);
    case '>':
      return (x as number) > (y as number);
    case '>=':
      return (x as number) >= (y as number);
  }
  throw new Error(`reference: operator ${op} is not supported`);
}
