import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isStreamError } from '../../api/errors.ts';
import { outputTag } from '../../api/functions.ts';
import { KeyedOperatorHarness } from '../../testing/harness.ts';
import { compilePattern } from '../compile.ts';
import type { CepMatch, CepTimeout } from '../engine.ts';
import { cep } from '../operator.ts';
import { Pattern, skipToFirst } from '../pattern.ts';

interface Ev {
  readonly key: string;
  readonly type: string;
  readonly n: number;
}
const ev = (type: string, n: number, key = 'k'): Ev => ({ key, type, n });
const is = (t: string) => (e: Ev) => e.type === t;
const timedOut = outputTag<CepTimeout<Ev>>('timedOut');
const late = outputTag<Ev>('late');

const short = (m: CepMatch<Ev>) =>
  Object.entries(m.events)
    .map(([s, es]) => `${s}:${es.map((e) => `${e.type}${e.n}`).join(',')}`)
    .join(' ');

async function harness(p: Pattern<Ev>, timeDomain: 'event' | 'processing' = 'event') {
  return KeyedOperatorHarness.create(cep<string, Ev>(p, { timedOut, late, timeDomain }), (e: Ev) => e.key);
}

describe('timeouts', () => {
  const ab = Pattern.begin<Ev>('a').where(is('a')).followedBy('b').where(is('b')).within(10);

  test('a partial match that cannot complete within `within` goes to the timed-out side output', async () => {
    const h = await harness(ab);
    h.processElement(ev('a', 1), 1);
    h.processElement(ev('c', 5), 5);
    h.processElement(ev('b', 12), 12);
    h.advanceWatermark(10); // a1's window ends at 11: not yet
    assert.equal(h.sideOutputs.get('timedOut'), undefined);
    h.advanceWatermark(100);
    const outs = (h.sideOutputs.get('timedOut') ?? []).map((r) => r.value as CepTimeout<Ev>);
    // a1 times out at 11, before b12 is processed: no match.
    assert.deepEqual(
      outs.map((t) => [short(t), t.start, t.end, t.timedOutAt]),
      [['a:a1', 1, 1, 11]],
    );
    assert.deepEqual(h.output, []);
    await h.close();
  });

  test('complete matches do not time out; every incomplete partial match does, once', async () => {
    const h = await harness(
      Pattern.begin<Ev>('a')
        .where(is('a'))
        .followedBy('b')
        .where(is('b'))
        .optional()
        .followedBy('c')
        .where(is('c'))
        .within(10),
    );
    for (const [t, n] of [
      ['a', 1],
      ['b', 2],
      ['c', 3],
      ['a', 4],
      ['b', 6],
    ] as const)
      h.processElement(ev(t, n), n);
    h.advanceWatermark(1000);
    const outs = (h.sideOutputs.get('timedOut') ?? []).map((r) => short(r.value as CepTimeout<Ev>));
    // b is optional: a1 c3 matches too (c3 is the first c after a1); both end at c3.
    assert.deepEqual(
      h.output.map((r) => short(r.value)),
      ['a:a1 b:b2 c:c3', 'a:a1 c:c3'],
    );
    // Left waiting when the watermark passes 14: a4 (for a b or a c) and a4 b6 (for a c).
    assert.deepEqual(outs.sort(), ['a:a4', 'a:a4 b:b6'].sort());
    await h.close();
  });

  test('processing time: events are taken at arrival, timeouts fire on processing-time timers', async () => {
    const h = await harness(ab, 'processing');
    h.setProcessingTime(100);
    h.processElement(ev('a', 1));
    h.setProcessingTime(105);
    h.processElement(ev('b', 2));
    h.processElement(ev('a', 3));
    h.setProcessingTime(109);
    assert.equal(h.sideOutputs.get('timedOut'), undefined);
    h.setProcessingTime(115);
    assert.deepEqual(
      h.output.map((r) => [short(r.value), r.timestamp]),
      [['a:a1 b:b2', 105]],
    );
    const outs = (h.sideOutputs.get('timedOut') ?? []).map((r) => r.value as CepTimeout<Ev>);
    assert.deepEqual(
      outs.map((t) => [short(t), t.timedOutAt]),
      [['a:a3', 115]],
    );
    await h.close();
  });
});

describe('bad input', () => {
  test('late events and events without a timestamp go to the late side output', async () => {
    const h = await harness(Pattern.begin<Ev>('a').where(is('a')).next('b').where(is('b')));
    h.advanceWatermark(10);
    h.processElement(ev('a', 5), 5);
    h.processElement(ev('a', 10), 10);
    h.processElement(ev('a', 99));
    h.processElement(ev('a', 11), 11);
    h.processElement(ev('b', 12), 12);
    h.advanceWatermark(20);
    assert.deepEqual(
      (h.sideOutputs.get('late') ?? []).map((r) => (r.value as Ev).n),
      [5, 10, 99],
    );
    assert.deepEqual(
      h.output.map((r) => short(r.value)),
      ['a:a11 b:b12'],
    );
    await h.close();
  });

  test('without a late output, late events and events without a timestamp are dropped and counted; on-time ones are not', async () => {
    const h = await KeyedOperatorHarness.create(
      cep<string, Ev>(Pattern.begin<Ev>('a').where(is('a')).next('b').where(is('b'))),
      (e: Ev) => e.key,
    );
    h.advanceWatermark(10);
    h.processElement(ev('a', 11), 11);
    assert.equal(h.lateRecordsDropped, 0);
    h.processElement(ev('a', 5), 5);
    h.processElement(ev('a', 10), 10); // at the watermark: late for CEP (time <= watermark)
    h.processElement(ev('a', 99));
    assert.equal(h.lateRecordsDropped, 3);
    h.processElement(ev('b', 12), 12);
    h.advanceWatermark(20);
    assert.equal(h.lateRecordsDropped, 3);
    assert.deepEqual(
      h.output.map((r) => short(r.value)),
      ['a:a11 b:b12'],
    );
    await h.close();
  });

  test('with a late output, late events are not counted as dropped', async () => {
    const h = await harness(Pattern.begin<Ev>('a').where(is('a')));
    h.advanceWatermark(10);
    h.processElement(ev('a', 5), 5);
    assert.equal(h.sideOutputs.get('late')?.length, 1);
    assert.equal(h.lateRecordsDropped, 0);
    await h.close();
  });

  test('out-of-order and duplicate events are matched in event-time order, duplicates as distinct events', async () => {
    const h = await harness(Pattern.begin<Ev>('a').where(is('a')).next('b').where(is('b')));
    h.processElement(ev('b', 3), 3);
    h.processElement(ev('a', 2), 2);
    h.processElement(ev('b', 3), 3);
    h.advanceWatermark(5);
    assert.deepEqual(
      h.output.map((r) => short(r.value)),
      ['a:a2 b:b3'],
    );
    await h.close();
  });

  test('state stays bounded: a key without partial matches holds no state (10 000 keys)', async () => {
    const h = await harness(Pattern.begin<Ev>('a').where(is('a')).followedBy('b').where(is('b')).within(50));
    for (let i = 0; i < 10_000; i++) h.processElement(ev(i % 3 === 0 ? 'a' : 'c', i, `k${i}`), i);
    h.advanceWatermark(10_000);
    const during = await h.snapshot();
    const entries = (s: typeof during) => s.keyed.states.reduce((n, st) => n + st.entries.length, 0);
    // Only the partial matches of the last 50 ms remain: 17 keys, each with its partial match, its
    // event and its seq counter.
    assert.equal(entries(during), 17 * 3);
    h.advanceWatermark(20_000);
    const after = await h.snapshot();
    assert.equal(entries(after), 0);
    assert.equal((h.sideOutputs.get('timedOut') ?? []).length, 3334);
    await h.close();
  });
});

describe('pattern API validation', () => {
  const bad = (build: () => Pattern<Ev>, words: RegExp) => {
    assert.throws(
      () => compilePattern(build()),
      (e: unknown) => isStreamError(e, 'PATTERN_INVALID') && words.test(e.message),
    );
  };
  test('structural errors name the stage', () => {
    bad(() => Pattern.begin<Ev>('a').times(0), /stage 'a': times must be at least 1/);
    bad(() => Pattern.begin<Ev>('a').times(3, 2), /from > to/);
    bad(() => Pattern.begin<Ev>('a').within(0), /within must be a positive/);
    bad(() => Pattern.begin<Ev>('a').optional(), /every stage of the pattern is optional/);
    bad(() => Pattern.begin<Ev>('a').notNext('n'), /cannot end with a negation/);
    bad(() => Pattern.begin<Ev>('a').followedBy('a'), /used twice/);
    bad(() => Pattern.begin<Ev>('a').greedy().next('b'), /greedy applies to looping stages/);
    bad(
      () => Pattern.begin<Ev>('a').next('b').oneOrMore().greedy(),
      /greedy has no effect on the last stage/,
    );
    bad(() => Pattern.begin<Ev>('a').consecutive(), /consecutive/);
    bad(
      () => Pattern.begin<Ev>('a').next('b').optional().notFollowedBy('n').next('c'),
      /before a negation \('b'\) cannot be optional/,
    );
    bad(() => Pattern.begin<Ev>('a', skipToFirst('zz')).next('b'), /skipToFirst\('zz'\) names no stage/);
  });
});
