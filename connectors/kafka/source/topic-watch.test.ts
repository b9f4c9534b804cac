import assert from 'node:assert/strict';
import { test } from 'node:test';
import { topicChange } from './topic-watch.ts';

test('topicChange: nothing while every source topic has its partitions; else the first change, with what to do', () => {
  const expected = new Map([
    ['orders', 4],
    ['rules', 1],
  ]);
  assert.equal(topicChange('j', expected, new Map([...expected, ['other', 3]])), undefined);
  const gone = topicChange('j', expected, new Map([['orders', 4]]));
  assert.equal(gone?.code, 'CONFIG_INVALID');
  assert.match(
    gone!.message,
    /source topic 'rules' was deleted while job 'j' ran: .*create it again \(1 partitions\)/,
  );
  const grown = topicChange('j', expected, new Map([...expected, ['orders', 6]]));
  assert.match(
    grown!.message,
    /'orders' has 6 partitions now; job 'j' started with 4 .*new partitions would never be read.*--to 6/,
  );
  // A topic deleted and created again with fewer partitions.
  const shrunk = topicChange('j', expected, new Map([...expected, ['orders', 2]]));
  assert.match(
    shrunk!.message,
    /'orders' has 2 partitions now; job 'j' started with 4 .*its tasks no longer match the topic/,
  );
});
