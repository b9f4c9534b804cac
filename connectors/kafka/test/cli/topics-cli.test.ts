/**
 * `kstate topics create | describe` as a user runs it (a child process: node connectors/kafka/cli/cli.ts)
 * against the harness broker. What it created is read back by clients that are not the command:
 * kcat -L for the partitions, the test's own admin client for the topic's configs.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Admin, ConfigResourceTypes, ConfigSource } from '../../internal/kafkajs.ts';
import { brokersFromEnv, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';

const CLI = fileURLToPath(new URL('../../cli/cli.ts', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** The CLI with the service configuration in `env` only (the test's KAFKA_BROKERS removed). */
function kstate(args: string[], env: Record<string, string>): Promise<Run> {
  const { KAFKA_BROKERS: _, KSTATE_BROKERS: __, ...rest } = process.env;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { ...rest, ...env }, timeout: 120_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** kcat's view of the topic: partition count and each partition's leader (-1: none), or undefined if none. */
function kcatMetadata(topic: string): Promise<{ partitions: number; leaders: number[] } | undefined> {
  return new Promise((resolve, reject) => {
    execFile('kcat', ['-L', '-J', '-b', brokersFromEnv().join(','), '-t', topic], (err, stdout) => {
      if (err) return reject(err);
      const meta = JSON.parse(stdout) as {
        topics: { topic: string; error?: string; partitions: { partition: number; leader: number }[] }[];
      };
      const t = meta.topics.find((x) => x.topic === topic);
      resolve(
        t === undefined || t.error !== undefined
          ? undefined
          : { partitions: t.partitions.length, leaders: t.partitions.map((p) => p.leader) },
      );
    });
  });
}

interface Described {
  topic: string;
  partitions: { partition: number; leader: number; replicas: number[]; isr: number[]; offline: number[] }[];
  replicationFactor: number;
  configs: Record<string, string>;
  created?: boolean;
}

describe('kstate topics', () => {
  let admin: Admin;
  let dir: string;
  const env = () => ({ KSTATE_BROKERS: brokersFromEnv().join(',') });
  before(async () => {
    admin = kafkaClient('topics-cli-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'topics-cli-'));
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  /** The configs set on the topic, read by the test's own admin client. */
  async function topicConfigs(topic: string): Promise<Record<string, string>> {
    const r = await admin.describeConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
      includeSynonyms: false,
    });
    return Object.fromEntries(
      r.resources[0]!.configEntries.filter((c) => c.configSource === ConfigSource.TOPIC_CONFIG).map((c) => [
        c.configName,
        c.configValue,
      ]),
    );
  }

  test('create makes the topic with its partitions and configs; kcat and a second read see them; describe shows them', async () => {
    const topic = names('topics create').topic('orders');
    const made = await kstate(
      [
        'topics',
        'create',
        topic,
        '--partitions',
        '3',
        '--config',
        'retention.ms=-1',
        '--config',
        'cleanup.policy=compact',
        '--json',
      ],
      env(),
    );
    assert.equal(made.code, 0, made.stderr);
    assert.equal(made.stderr, '');
    const created = JSON.parse(made.stdout) as Described;
    assert.equal(created.created, true);
    assert.equal(created.partitions.length, 3);
    assert.deepEqual(created.configs, { 'cleanup.policy': 'compact', 'retention.ms': '-1' });

    // Read back by clients that are not the command: kcat (partitions, each with a leader), and the
    // test's admin client (the configs set on the topic).
    assert.deepEqual(await kcatMetadata(topic), { partitions: 3, leaders: [1, 1, 1] });
    assert.deepEqual(await topicConfigs(topic), { 'cleanup.policy': 'compact', 'retention.ms': '-1' });

    const described = await kstate(['topics', 'describe', topic, '--json'], env());
    assert.equal(described.code, 0, described.stderr);
    const d = JSON.parse(described.stdout) as Described;
    const { created: _, ...asCreated } = created;
    assert.deepEqual(d, asCreated);
    assert.equal(d.replicationFactor, 1);
    assert.deepEqual(
      d.partitions.map((p) => [p.partition, p.leader, p.replicas, p.isr]),
      [
        [0, 1, [1], [1]],
        [1, 1, [1], [1]],
        [2, 1, [1], [1]],
      ],
    );
    const text = await kstate(['topics', 'describe', topic], env());
    assert.equal(text.code, 0, text.stderr);
    assert.equal(
      text.stdout,
      [
        `Topic: ${topic}\tPartitionCount: 3\tReplicationFactor: 1\tConfigs: cleanup.policy=compact,retention.ms=-1`,
        '\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1',
        '\tPartition: 1\tLeader: 1\tReplicas: 1\tIsr: 1',
        '\tPartition: 2\tLeader: 1\tReplicas: 1\tIsr: 1',
        '',
      ].join('\n'),
    );

    // Again: the topic exists (65); with --if-not-exists it is accepted (0) and the differences are warned about.
    const again = await kstate(['topics', 'create', topic, '--partitions', '3'], env());
    assert.equal(again.code, 65, again.stderr);
    assert.match(
      again.stderr,
      new RegExp(`^kstate: topic ${topic.replaceAll('.', '\\.')} exists already \\(3 partitions`),
    );
    const accepted = await kstate(
      ['topics', 'create', topic, '--partitions', '5', '--config', 'retention.ms=1000', '--if-not-exists'],
      env(),
    );
    assert.equal(accepted.code, 0, accepted.stderr);
    assert.match(
      accepted.stdout,
      /exists: 3 partitions, replication factor 1, cleanup\.policy=compact, retention\.ms=-1 \(left as it is\)/,
    );
    assert.deepEqual(accepted.stderr.trim().split('\n'), [
      `kstate: warning: topic ${topic} exists with 3 partitions, not 5; it is left as it is`,
      `kstate: warning: topic ${topic} exists with retention.ms=-1, not 1000; it is left as it is`,
    ]);
    assert.equal((await kcatMetadata(topic))?.partitions, 3, 'nothing changed');
  });

  test('configs, partitions and replication factors the broker refuses exit 65 naming them, and create nothing', async () => {
    const n = names('topics refused');
    const topic = n.topic('t');
    const bad = await kstate(
      [
        'topics',
        'create',
        topic,
        '--partitions',
        '1',
        '--config',
        'retention.ms=soon',
        '--config',
        'segment.ms=100000',
        '--config',
        'no.such.config=1',
      ],
      env(),
    );
    assert.equal(bad.code, 65, bad.stderr);
    assert.match(
      bad.stderr,
      new RegExp(
        `^kstate: creating topic ${topic.replaceAll('.', '\\.')}: the brokers refuse the topic config retention\\.ms=soon, no\\.such\\.config=1 \\[INVALID_CONFIG\\]`,
      ),
    );
    const rf = await kstate(
      ['topics', 'create', topic, '--partitions', '1', '--replication-factor', '2'],
      env(),
    );
    assert.equal(rf.code, 65, rf.stderr);
    assert.match(
      rf.stderr,
      /refuse replication factor 2 \[INVALID_REPLICATION_FACTOR\]: .* at most the number of brokers \(1\)/,
    );
    const zero = await kstate(['topics', 'create', topic, '--partitions', '0'], env());
    assert.deepEqual(
      [zero.code, zero.stderr],
      [64, 'kstate: --partitions is "0"; allowed: an integer 1..2147483647\n'],
    );
    const name = await kstate(['topics', 'create', 'no spaces!', '--partitions', '1'], env());
    assert.equal(name.code, 65, name.stderr);
    assert.match(name.stderr, /\[INVALID_TOPIC_EXCEPTION\]: a topic name is 1 to 249 characters/);
    assert.equal(await kcatMetadata(topic), undefined, 'no topic was created');
    assert.ok(!(await admin.listTopics()).includes(topic));
  });

  test('bad arguments exit 64; describe of a missing topic 69 after the existing ones', async () => {
    const topic = names('topics usage').topic('t');
    for (const [args, message] of [
      [['topics', 'create', topic], /^kstate: topics create needs --partitions n/],
      [
        ['topics', 'create', topic, '--partitions', '1', '--config', 'retention.ms'],
        /no such configuration file; a topic config is name=value/,
      ],
      [
        ['topics', 'create', topic, '--partitions', '1', '--config', 'a=1', '--config', 'a=2'],
        /^kstate: --config a is given twice/,
      ],
      [['topics', 'create', topic, '--partitons', '1'], /Unknown option '--partitons'/],
      [['topics', 'frobnicate', topic], /^kstate: unknown topics command 'frobnicate'/],
      [['topics', 'describe'], /^kstate: topics describe needs a topic/],
      [['topics'], /^kstate: topics needs an argument/],
    ] as const) {
      const r = await kstate([...args], env());
      assert.equal(r.code, 64, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    assert.equal((await kstate(['topics', '--help'], {})).code, 0);

    const made = await kstate(['topics', 'create', topic, '--partitions', '2'], env());
    assert.equal(made.code, 0, made.stderr);
    assert.equal(made.stdout, `created topic ${topic}: 2 partitions, replication factor 1\n`);
    const missing = `${topic}.missing`;
    const both = await kstate(['topics', 'describe', topic, missing, '--json'], env());
    assert.equal(both.code, 69, both.stderr);
    assert.equal((JSON.parse(both.stdout) as Described).partitions.length, 2);
    assert.equal(
      both.stderr,
      `kstate: topic ${missing} does not exist: create with kstate topics create <topic> --partitions n\n`,
    );
  });

  test('the brokers come from a --config file as for kstate run; an address where no broker answers is named (69)', async () => {
    const file = join(dir, 'service.json');
    await writeFile(file, JSON.stringify({ brokers: brokersFromEnv() }));
    const topic = names('topics config file').topic('t');
    const made = await kstate(
      ['topics', 'create', topic, '--config', file, '--partitions', '1', '--config', 'retention.ms=-1'],
      {},
    );
    assert.equal(made.code, 0, made.stderr);
    assert.deepEqual(await topicConfigs(topic), { 'retention.ms': '-1' });

    // A port nobody listens on (taken from the OS, then closed).
    const server = createServer().listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const port = (server.address() as { port: number }).port;
    await new Promise((r) => server.close(r));
    const nobody = await kstate(['topics', 'describe', topic], { KSTATE_BROKERS: `127.0.0.1:${port}` });
    assert.equal(nobody.code, 69, nobody.stderr);
    assert.match(
      nobody.stderr,
      new RegExp(
        `^kstate: describing ${topic.replaceAll('.', '\\.')}: no Kafka broker answers at 127\\.0\\.0\\.1:${port} \\(tried for \\d+ s; Connection error: connect ECONNREFUSED`,
      ),
    );
  });
});
