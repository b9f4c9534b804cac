import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { StateTtlConfig } from '../../../api/state.ts';
import {
  descriptors,
  type Fixture,
  handles,
  type MakeKeyedStateBackend,
  sortEntries,
  withFixture,
} from './fixture.ts';

type Time = StateTtlConfig['time'];
type Update = NonNullable<StateTtlConfig['update']>;
type Visibility = NonNullable<StateTtlConfig['visibility']>;

function setNow(f: Fixture, time: Time, now: number): void {
  if (time === 'processing') f.processingTime = now;
  else f.watermark = now;
}

/** TTL through every handle kind, in both time domains, for every update type and visibility. */
export function ttlCases(make: MakeKeyedStateBackend): void {
  for (const time of ['processing', 'event'] as const) {
    for (const update of ['onCreateAndWrite', 'onReadAndWrite'] as const) {
      for (const visibility of ['neverReturnExpired', 'returnExpiredIfNotCleanedUp'] as const) {
        test(`TTL ${time} time, ${update}, ${visibility}: value, list, map, reducing, aggregating`, () =>
          withFixture(make, (f) => ttlScenario(f, time, update, visibility)));
      }
    }
  }

  describe('TTL details', () => {
    test('processing-time TTL ignores the watermark, event-time TTL ignores the processing clock', () =>
      withFixture(make, (f) => {
        const p = handles(f, descriptors({ ttlMs: 100, time: 'processing' }, '-p'));
        const e = handles(f, descriptors({ ttlMs: 100, time: 'event' }, '-e'));
        f.processingTime = 1000;
        f.watermark = 1000;
        p.value.update('p');
        e.value.update('e');
        f.watermark = 5000;
        assert.equal(p.value.value(), 'p');
        assert.equal(e.value.value(), undefined);
        f.processingTime = 5000;
        assert.equal(p.value.value(), undefined);
      }));

    test('event time: entries written before the first watermark live ttl from the first watermark seen', () =>
      withFixture(make, (f) => {
        const h = handles(f, descriptors({ ttlMs: 100, time: 'event' }));
        f.at('a');
        h.value.update('early');
        h.list.add('early');
        f.at('b');
        h.value.update('early-b');
        assert.equal(f.watermark, Number.NEGATIVE_INFINITY);
        f.watermark = 5000;
        f.at('a');
        assert.equal(h.value.value(), 'early', 'not expired at the first watermark');
        assert.deepEqual(h.list.get(), ['early']);
        assert.equal(f.store.cleanupExpired(), 0, 'cleanup restamps instead of dropping');
        f.watermark = 5099;
        assert.equal(h.value.value(), 'early');
        f.at('b');
        assert.equal(h.value.value(), 'early-b');
        f.watermark = 5100;
        f.at('a');
        assert.equal(h.value.value(), undefined);
        assert.deepEqual(h.list.get(), []);
        f.at('b');
        assert.equal(h.value.value(), undefined);
      }));

    test('cleanupExpired drops expired entries, list elements and map entries in both time domains', () =>
      withFixture(make, (f) => {
        const p = handles(f, descriptors({ ttlMs: 100, time: 'processing' }, '-p'));
        const e = handles(f, descriptors({ ttlMs: 100, time: 'event' }, '-e'));
        const plain = handles(f, descriptors(undefined, '-plain'));
        f.processingTime = 1000;
        f.watermark = 1000;
        for (const key of ['a', 'b', 'c']) {
          f.at(key);
          for (const h of [p, e, plain]) {
            h.value.update(key);
            h.list.add(`${key}-old`);
            h.map.put('old', 1);
            h.reducing.add(1);
            h.aggregating.add(1);
          }
        }
        f.processingTime = 1050;
        f.watermark = 1050;
        f.at('a');
        for (const h of [p, e]) {
          h.list.add('a-new');
          h.map.put('new', 2);
        }
        f.processingTime = 1100;
        f.watermark = 1100;
        // Expired: 3 keys x (value, reducing, aggregating) + 3 old list elements + 3 old map entries, per domain.
        assert.equal(f.store.cleanupExpired(), 2 * (3 * 3 + 3 + 3));
        for (const h of [p, e]) {
          assert.equal(f.backend.size(h === p ? 'value-p' : 'value-e'), 0);
          assert.equal(f.backend.size(h === p ? 'list-p' : 'list-e'), 1);
          assert.equal(f.backend.size(h === p ? 'map-p' : 'map-e'), 1);
          f.at('a');
          assert.deepEqual(h.list.get(), ['a-new']);
          assert.deepEqual(h.map.entries(), [['new', 2]]);
        }
        assert.equal(f.backend.size('value-plain'), 3, 'states without TTL are untouched');
        assert.equal(f.store.cleanupExpired(), 0);
      }));

    test('TTL timestamps survive a snapshot and restore', () =>
      withFixture(make, async (f) => {
        const d = descriptors({ ttlMs: 100, time: 'processing' });
        const h = handles(f, d);
        f.processingTime = 1000;
        h.value.update('v');
        h.list.add('l');
        h.map.put('k', 'm');
        const capture = f.backend.capture(1);
        const snapshot = await capture.materialize();
        capture.release();
        await withFixture(make, async (g) => {
          await g.backend.restore(snapshot);
          const r = handles(g, d);
          g.processingTime = 1099;
          assert.equal(r.value.value(), 'v');
          assert.deepEqual(r.list.get(), ['l']);
          assert.equal(r.map.get('k'), 'm');
          g.processingTime = 1100;
          assert.equal(r.value.value(), undefined);
          assert.deepEqual(r.list.get(), []);
          assert.equal(r.map.get('k'), undefined);
        });
      }));
  });
}

/**
 * ttl 100. Writes at 1000, reads at 1050, more writes at 1080, reads at 1100 (written-at-1000 entries
 * expire then unless the read at 1050 refreshed them), and for onReadAndWrite reads at 1199 and 1200.
 */
function ttlScenario(f: Fixture, time: Time, update: Update, visibility: Visibility): void {
  const h = handles(f, descriptors({ ttlMs: 100, time, update, visibility }));
  const returnExpired = visibility === 'returnExpiredIfNotCleanedUp';
  const expiredOr = <T>(v: T, empty: T): T => (returnExpired ? v : empty);
  f.at('k');
  setNow(f, time, 1000);
  h.value.update('x');
  h.list.add('a');
  h.map.put('k1', 'a');
  h.reducing.add(1);
  h.aggregating.add(10);

  setNow(f, time, 1050);
  assert.equal(h.value.value(), 'x');
  assert.deepEqual(h.list.get(), ['a']);
  assert.equal(h.map.get('k1'), 'a');
  assert.equal(h.reducing.get(), 1);
  assert.equal(h.aggregating.get(), 10);

  setNow(f, time, 1080);
  h.list.add('b');
  h.map.put('k2', 'b');

  setNow(f, time, 1100);
  if (update === 'onCreateAndWrite') {
    // Written at 1000: expired at 1100; the reads at 1050 did not extend them.
    assert.equal(h.value.value(), expiredOr('x', undefined));
    assert.equal(h.value.value(), undefined, 'an expired value is deleted when read');
    assert.deepEqual(h.list.get(), expiredOr(['a', 'b'], ['b']));
    assert.deepEqual(h.list.get(), ['b']);
    assert.deepEqual(
      sortEntries(h.map.entries()),
      expiredOr(
        [
          ['k1', 'a'],
          ['k2', 'b'],
        ],
        [['k2', 'b']],
      ),
    );
    assert.deepEqual(h.map.entries(), [['k2', 'b']]);
    assert.equal(h.map.contains('k1'), false);
    assert.equal(h.reducing.get(), expiredOr(1, undefined));
    assert.equal(h.reducing.get(), undefined);
    assert.equal(h.aggregating.get(), expiredOr(10, undefined));
    assert.equal(h.aggregating.get(), undefined);
    assert.equal(f.backend.size('value'), 0);
    assert.equal(f.backend.size('reducing'), 0);
    h.reducing.add(5);
    h.aggregating.add(4);
    assert.equal(h.reducing.get(), 5, 'add after expiry starts afresh');
    assert.equal(h.aggregating.get(), 4);
    // A write resets the age.
    h.value.update('y');
    setNow(f, time, 1199);
    assert.equal(h.value.value(), 'y');
    setNow(f, time, 1200);
    assert.equal(h.value.value(), expiredOr('y', undefined));
    return;
  }
  // onReadAndWrite: the reads at 1050 extended everything to 1150; reading at 1100 extends to 1200.
  assert.equal(h.value.value(), 'x');
  assert.deepEqual(h.list.get(), ['a', 'b']);
  assert.deepEqual(sortEntries(h.map.entries()), [
    ['k1', 'a'],
    ['k2', 'b'],
  ]);
  assert.equal(h.reducing.get(), 1);
  assert.equal(h.aggregating.get(), 10);
  setNow(f, time, 1199);
  assert.equal(f.store.cleanupExpired(), 0);
  setNow(f, time, 1200);
  assert.equal(h.value.value(), expiredOr('x', undefined));
  assert.equal(h.value.value(), undefined);
  assert.deepEqual(h.list.get(), expiredOr(['a', 'b'], []));
  assert.deepEqual(h.list.get(), []);
  assert.equal(h.map.get('k1'), expiredOr('a', undefined));
  assert.equal(h.map.contains('k1'), false);
  assert.equal(h.map.contains('k2'), returnExpired);
  assert.equal(h.map.isEmpty(), true);
  assert.equal(h.reducing.get(), expiredOr(1, undefined));
  assert.equal(h.aggregating.get(), expiredOr(10, undefined));
  for (const name of ['value', 'list', 'map', 'reducing', 'aggregating']) {
    assert.equal(f.backend.size(name), 0, `${name} is empty after its entries expired`);
  }
}
