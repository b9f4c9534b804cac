import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { StreamError } from '../../../framework/index.ts';
import type { Admin } from '../internal/kafkajs.ts';
import { topicChange, watchTopics } from './topic-watch.ts';

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

test('watchTopics names only the source topics; all topics only to tell which one the brokers no longer know', async () => {
  const asked: (string[] | 'all')[] = [];
  let cluster = new Map([
    ['orders', 4],
    ['rules', 1],
    ['someone-else', 9],
  ]);
  let failNext = false;
  const meta = (names: string[]) => ({
    topics: names
      .filter((n) => cluster.has(n))
      .map((name) => ({ name, partitions: Array(cluster.get(name)) })),
  });
  const admin = {
    fetchTopicMetadata: async (a?: { topics: string[] }) => {
      if (failNext) {
        failNext = false;
        throw Object.assign(new Error('Connection closed'), { type: 'NETWORK' });
      }
      if (a === undefined) {
        asked.push('all');
        return meta([...cluster.keys()]);
      }
      asked.push([...a.topics]);
      if (a.topics.some((t) => !cluster.has(t))) {
        throw Object.assign(new Error('This server does not host this topic-partition'), {
          type: 'UNKNOWN_TOPIC_OR_PARTITION',
        });
      }
      return meta(a.topics);
    },
  } as unknown as Admin;
  const changes: StreamError[] = [];
  const stop = watchTopics({
    jobId: 'j',
    admin,
    expected: new Map([
      ['orders', 4],
      ['rules', 1],
    ]),
    intervalMs: 2,
    onChange: (e) => changes.push(e),
  });
  const until = async (what: string, done: () => boolean) => {
    for (let i = 0; i < 5000 && !done(); i++) await new Promise((r) => setTimeout(r, 2));
    assert.ok(done(), what);
  };
  try {
    await until('three checks', () => asked.length >= 3);
    failNext = true; // a failed request is let pass: the watch goes on
    const before = asked.length;
    await until('checks after a failed one', () => asked.length >= before + 2);
    assert.ok(
      asked.every((a) => a !== 'all' && a.join() === 'orders,rules'),
      JSON.stringify(asked),
    );
    assert.equal(changes.length, 0);
    cluster = new Map([
      ['orders', 4],
      ['someone-else', 9],
    ]);
    await until('the deletion reported', () => changes.length > 0);
    assert.equal(asked.at(-1), 'all', 'one request for every topic, after the named one failed');
    assert.equal(asked.filter((a) => a === 'all').length, 1);
    assert.match(changes[0]!.message, /source topic 'rules' was deleted while job 'j' ran/);
    const settled = asked.length;
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(asked.length, settled, 'stopped after reporting');
    assert.equal(changes.length, 1);
  } finally {
    stop();
  }
});
