/**
 * Issue 12 (a): exactly-once under chaos, run the way a user runs the service. Two `kstate run`
 * processes of one consumer group (separate LevelDB state directories, one shared checkpoint
 * directory, checkpoints every 700 ms) run jobs/chaos-job.ts: orders keyed by `id` on 6 partitions,
 * re-keyed by `user` through a repartition topic that each of the 6 upstream tasks writes in every
 * partition, a per-user running count and sum, `{user, id, count, sum}` out through the exactly-once
 * sink. The input arrives while the processes are killed: part of it from kafkajs transactional
 * producers that abort some of their transactions (interleaved with the committed ones and with
 * non-transactional writes), part from a kafkajs idempotent producer, part from kcat (librdkafka,
 * whose default partitioner is not murmur2). Rounds of SIGKILL (one process or both, at moments drawn
 * from a seeded sequence: once the group settled, or while it is still rebalancing), one zombie
 * (SIGSTOP past the session timeout until the other process runs every task, then SIGCONT), and a
 * few graceful restarts (SIGTERM), after which a live process hands tasks over to the one rejoining.
 *
 * Read back with kcat in read_committed mode: every committed input has exactly one effect, no
 * aborted input has any; per user, the committed counts in offset order are exactly 1..n and each
 * sum is the previous one plus the input's amount (order, not only the set); final sums equal the
 * recomputation from the input; no transaction of the job is left open.
 *
 * CHAOS_RECORDS (committed inputs, default 200,000), CHAOS_KILLS (rounds, default 40), CHAOS_SEED;
 * CRASH_LOG=<file> keeps the killed processes' log lines.
 */
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Admin, Producer } from '../../internal/kafkajs.ts';
import type { Order, UserTotal } from '../jobs/chaos-job.ts';
import { type JobProcess, openTransactions, startJobProcess } from '../support/crash-helpers.ts';
import { kcatProducer, sendWhenReady } from '../support/eos-helpers.ts';
import { eventually, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';
import {
  type Committed,
  checkRunningTotals,
  describeSequences,
  kcatRecords,
} from '../support/sequence-check.ts';

const RECORDS = Number(process.env.CHAOS_RECORDS ?? 200_000);
const ROUNDS = Number(process.env.CHAOS_KILLS ?? 40);
const SEED = Number(process.env.CHAOS_SEED ?? 20_251_206);
const USERS = 1000;
const PARTITIONS = 6;
/** Tasks of the job: the input stage and the repartitioned stage, one per partition each. */
const TASKS = 2 * PARTITIONS;
const CLI = fileURLToPath(new URL('../../cli/cli.ts', import.meta.url));
const JOB = fileURLToPath(new URL('../jobs/chaos-job.ts', import.meta.url));

/** Each input's user and amount are functions of its id, so the checks need no other record of them. */
const userOf = (id: number) => `u${(Math.imul(id, 2_654_435_761) >>> 0) % USERS}`;
const amountOf = (id: number) => 1 + ((id * 7919) % 1000);

function seeded(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s / 0x7fffffff;
  };
}

/**
 * The input and its ledger. Each `produce(n)` writes n more committed records, concurrently from three
 * transactional producers (a third of their transactions aborted), an idempotent producer and kcat,
 * so that aborted transactions interleave with committed ones and with plain records in every partition.
 */
class Input {
  readonly committed = new Set<number>();
  readonly aborted = new Set<number>();
  readonly stats = { transactions: 0, abortedTransactions: 0, transactional: 0, plain: 0, kcat: 0 };
  readonly #topic: string;
  readonly #transactional: readonly Producer[];
  readonly #plainProducer: Producer;
  readonly #random: () => number;
  #next = 0;
  constructor(topic: string, transactional: readonly Producer[], plain: Producer, random: () => number) {
    this.#topic = topic;
    this.#transactional = transactional;
    this.#plainProducer = plain;
    this.#random = random;
  }

  #take(n: number): { key: string; value: string }[] {
    const out = [];
    for (let i = 0; i < n; i++) {
      const id = this.#next++;
      const order: Order = { id, user: userOf(id), amount: amountOf(id) };
      out.push({ key: String(id), value: JSON.stringify(order) });
    }
    return out;
  }

  async produce(n: number): Promise<void> {
    const byTransactions = Math.round(n * 0.45);
    const byKcat = Math.round(n * 0.2);
    const producers = this.#transactional.length;
    const share = (i: number) =>
      Math.floor(byTransactions / producers) + (i < byTransactions % producers ? 1 : 0);
    await Promise.all([
      ...this.#transactional.map((p, i) => this.#transactions(p, share(i))),
      this.#plain(n - byTransactions - byKcat),
      this.#kcat(byKcat),
    ]);
  }

  async #transactions(producer: Producer, n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      const size = Math.min(left, 50 + Math.floor(this.#random() * 350));
      const abort = this.#random() < 1 / 3;
      const messages = this.#take(size);
      const txn = await producer.transaction();
      // One to three sends per transaction, so its records spread over several batches.
      const sends = 1 + Math.floor(this.#random() * 3);
      const step = Math.ceil(size / sends);
      for (let i = 0; i < size; i += step) {
        await txn.send({ topic: this.#topic, messages: messages.slice(i, i + step) });
      }
      const ids = messages.map((m) => Number(m.key));
      if (abort) {
        await txn.abort();
        for (const id of ids) this.aborted.add(id);
        this.stats.abortedTransactions++;
      } else {
        await txn.commit();
        for (const id of ids) this.committed.add(id);
        this.stats.transactions++;
        this.stats.transactional += size;
        left -= size;
      }
    }
  }

  async #plain(n: number): Promise<void> {
    for (let i = 0; i < n; i += 500) {
      const messages = this.#take(Math.min(500, n - i));
      await sendWhenReady(() => this.#plainProducer.send({ topic: this.#topic, messages }));
      for (const m of messages) this.committed.add(Number(m.key));
      this.stats.plain += messages.length;
    }
  }

  /** kcat (librdkafka) as producer: idempotent, keyed by id, its default (CRC32) partitioner. */
  async #kcat(n: number): Promise<void> {
    const messages = this.#take(n);
    const kcat = kcatProducer(this.#topic);
    await kcat.write(messages.map((m) => `${m.key}\t${m.value}\n`).join(''));
    await kcat.end();
    for (const m of messages) this.committed.add(Number(m.key));
    this.stats.kcat += n;
  }
}

/** One service process slot (a or b): its state directory survives the process. */
interface Instance {
  readonly name: string;
  p: JobProcess;
  starts: number;
}

/** Tasks a process runs now, from its log: restored and not stopped or failed since. */
function running(p: JobProcess): Set<string> {
  const tasks = new Set<string>();
  for (const line of p.lines) {
    if (!line.startsWith('{') || !line.includes('"msg":"task ')) continue;
    const e = JSON.parse(line) as { msg: string; task: string };
    if (e.msg === 'task restored') tasks.add(e.task);
    else if (e.msg === 'task stopped' || e.msg === 'task failed' || e.msg === 'task started')
      tasks.delete(e.task);
  }
  return tasks;
}

const alive = (p: JobProcess) => p.child.exitCode === null && p.child.signalCode === null;

/**
 * Runs the test body and, when it fails, prints the error at once: the spec reporter prints failure
 * details only when every test file has finished, so a later test that hangs (CI's overall timeout)
 * would otherwise lose them, as one CI run did.
 */
async function reportedInline(body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    console.log(`chaos test FAILED: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    throw e;
  }
}

describe('exactly-once under chaos: two service processes, aborted input transactions, SIGKILLs and a zombie', () => {
  let admin: Admin;
  let dir: string;
  before(async () => {
    admin = kafkaClient('chaos-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'chaos-'));
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  test(
    `${RECORDS} committed inputs plus aborted transactions, ${ROUNDS} rounds of SIGKILL and a zombie: per user, counts 1..n in offset order, every effect once`,
    {
      timeout: 20 * 60_000,
    },
    () =>
      reportedInline(async () => {
        const started = performance.now();
        const random = seeded(SEED);
        const n = names('chaos');
        const topics = { input: n.topic('in'), output: n.topic('out') };
        const jobId = n.group('job');
        await admin.createTopics({
          topics: Object.values(topics).map((topic) => ({ topic, numPartitions: PARTITIONS })),
          waitForLeaders: true,
        });
        const transactional = [0, 1, 2].map((i) =>
          kafkaClient(`chaos-tx-${i}`).producer({
            transactionalId: n.transactionalId(`p${i}`),
            idempotent: true,
            maxInFlightRequests: 1,
          }),
        );
        const plain = kafkaClient('chaos-plain').producer({ idempotent: true, maxInFlightRequests: 1 });
        await Promise.all([...transactional, plain].map((p) => p.connect()));
        const input = new Input(topics.input, transactional, plain, random);

        const env = (name: string) => ({
          KSTATE_BACKEND: 'level',
          KSTATE_STATE_DIR: join(dir, name),
          KSTATE_CHECKPOINT_DIR: join(dir, 'checkpoints'),
          KSTATE_CHECKPOINT_INTERVAL_MS: '700',
          KSTATE_HTTP_PORT: '0',
          KSTATE_LOG_LEVEL: 'debug',
          CHAOS_JOB_ID: jobId,
          CHAOS_INPUT: topics.input,
          CHAOS_OUTPUT: topics.output,
        });
        const start = (name: string) => startJobProcess(env(name), CLI, ['run', JOB]);
        const a: Instance = { name: 'a', p: start('a'), starts: 1 };
        const b: Instance = { name: 'b', p: start('b'), starts: 1 };
        const instances = [a, b];
        let checkpoints = 0;
        let failures = 0;
        const retire = (i: Instance) => {
          checkpoints += i.p.lines.filter((l) => l.includes('"msg":"checkpoint committed"')).length;
          failures += i.p.lines.filter((l) => l.includes('"msg":"task failed"')).length;
          if (process.env.CRASH_LOG) {
            appendFileSync(process.env.CRASH_LOG, `--- ${i.name} run ${i.starts}\n${i.p.lines.join('\n')}\n`);
          }
        };
        const settled = () => {
          const ra = running(a.p);
          const rb = running(b.p);
          // Every task runs in exactly one process, and each process runs some.
          return ra.size > 0 &&
            rb.size > 0 &&
            ra.size + rb.size === TASKS &&
            new Set([...ra, ...rb]).size === TASKS
            ? true
            : undefined;
        };
        const waitSettled = () =>
          eventually(
            async () => settled(),
            120_000,
            () =>
              `the group did not settle: a runs ${[...running(a.p)].join(',')}; b runs ${[...running(b.p)].join(',')}\n` +
              `a: ${a.p.lines.slice(-8).join('\n')}\nb: ${b.p.lines.slice(-8).join('\n')}`,
          );

        const chunk = Math.ceil(RECORDS / ROUNDS);
        let producing: Promise<void> = Promise.resolve();
        const kills = { a: 0, b: 0, both: 0, signals: 0, settled: 0, rebalancing: 0 };
        const zombieRound = Math.floor(ROUNDS / 2);
        let zombie = { name: '', stoppedMs: 0, failuresAfterWake: 0 };
        const graceful: string[] = [];
        try {
          await waitSettled();
          for (let round = 0; round < ROUNDS; round++) {
            // The next chunk of input arrives during this round (while processes are being killed).
            await producing;
            producing = input.produce(Math.min(chunk, RECORDS - input.committed.size));
            // Awaited at the next round; until then a failure must not go unhandled (and end the process).
            producing.catch(() => {});
            if (round % 10 === 5) {
              // A graceful restart (SIGTERM: final checkpoint, leave the group): the other process takes
              // every task, then hands half of them back while it still runs them, when this one rejoins.
              await waitSettled();
              const leaver = random() < 0.5 ? a : b;
              leaver.p.child.kill('SIGTERM');
              const stop = setTimeout(() => leaver.p.child.kill('SIGKILL'), 60_000);
              await leaver.p.exited;
              clearTimeout(stop);
              graceful.push(`${leaver.name} ${leaver.p.child.exitCode ?? leaver.p.child.signalCode}`);
              retire(leaver);
              leaver.p = start(leaver.name);
              leaver.starts++;
            }
            const r = random();
            const victims = r < 0.4 ? [a] : r < 0.8 ? [b] : [a, b];
            if (random() < 0.55) {
              // Once every task runs again: the kill lands in processing, a checkpoint or its commit.
              await waitSettled();
              kills.settled++;
            } else {
              // While the group may still rebalance: the kill lands in start-up, joining or restore.
              await Promise.all(victims.map((v) => v.p.waitFor(/"msg":"service running"/, 120_000)));
              kills.rebalancing++;
            }
            await new Promise((res) => setTimeout(res, Math.floor(random() * 1500)));
            for (const v of victims) v.p.child.kill('SIGKILL');
            for (const v of victims) {
              await v.p.exited;
              retire(v);
              v.p = start(v.name);
              v.starts++;
            }
            kills.signals += victims.length;
            if (victims.length === 2) kills.both++;
            else kills[victims[0]!.name as 'a' | 'b']++;

            if (round === zombieRound) {
              // A zombie: frozen while it runs tasks, past its session timeout, until the other
              // process runs every task; then it wakes up and must be fenced.
              await waitSettled();
              const [frozen, other] = random() < 0.5 ? [a, b] : [b, a];
              const before = frozen.p.lines.length;
              const t0 = performance.now();
              frozen.p.child.kill('SIGSTOP');
              await eventually(
                async () => (running(other.p).size === TASKS ? true : undefined),
                120_000,
                () => `${other.name} never took over every task while ${frozen.name} was stopped`,
              );
              zombie = {
                name: frozen.name,
                stoppedMs: Math.round(performance.now() - t0),
                failuresAfterWake: 0,
              };
              frozen.p.child.kill('SIGCONT');
              await waitSettled();
              zombie.failuresAfterWake = frozen.p.lines
                .slice(before)
                .filter(
                  (l) => l.includes('"msg":"task failed"') || l.includes('"msg":"checkpoint failed"'),
                ).length;
            }
          }
          await producing;
          assert.equal(input.committed.size, RECORDS, 'the input ledger');

          // Every committed input has its effect in the output (or the wait gives up; the checks say what is missing).
          await waitSettled();
          const deadline = Date.now() + 240_000;
          for (;;) {
            const out = await kcatRecords<UserTotal>(topics.output);
            const seen = new Set(out.map((o) => o.value.id));
            let covered = 0;
            for (const id of input.committed) if (seen.has(id)) covered++;
            if (covered === input.committed.size || Date.now() > deadline) break;
            await new Promise((res) => setTimeout(res, 1000));
          }
        } finally {
          // A graceful stop commits whatever the processes still hold (more output to check).
          for (const i of instances) {
            if (!alive(i.p)) continue;
            i.p.child.kill('SIGCONT');
            i.p.child.kill('SIGTERM');
          }
          for (const i of instances) {
            const stop = setTimeout(() => i.p.child.kill('SIGKILL'), 60_000);
            await i.p.exited;
            clearTimeout(stop);
            retire(i);
          }
          await Promise.allSettled([...transactional, plain].map((p) => p.disconnect()));
        }
        const exits = instances
          .map((i) => `${i.name} ${i.p.child.exitCode ?? i.p.child.signalCode}`)
          .join(', ');

        // The input as kcat reads it: exactly the ledger's committed records, none of the aborted ones.
        const inputIds = (await kcatRecords<Order>(topics.input)).map((r) => r.value.id);
        assert.equal(inputIds.length, input.committed.size, 'committed input records (kcat)');
        assert.ok(
          inputIds.every((id) => input.committed.has(id)),
          'kcat reads input records outside the committed ledger',
        );

        const out: Committed<UserTotal>[] = await kcatRecords<UserTotal>(topics.output);
        const effects = new Map<number, number>();
        for (const o of out) effects.set(o.value.id, (effects.get(o.value.id) ?? 0) + 1);
        let duplicates = 0;
        let abortedEffects = 0;
        let unknown = 0;
        let wrongUser = 0;
        for (const o of out) if (o.value.user !== userOf(o.value.id)) wrongUser++;
        for (const [id, times] of effects) {
          if (input.aborted.has(id)) abortedEffects += times;
          else if (!input.committed.has(id)) unknown += times;
          else duplicates += times - 1;
        }
        let missing = 0;
        for (const id of input.committed) if (!effects.has(id)) missing++;
        const sequences = checkRunningTotals(out, {
          what: 'per user, counts 1..n in offset order, sums recomputed along them',
          key: (v) => v.user,
          count: (v) => v.count,
          sum: (v) => v.sum,
          addend: (v) => amountOf(v.id),
        });
        // Final sums: the last committed record of each user against the recomputation from the input.
        const expected = new Map<string, { count: number; sum: number }>();
        for (const id of input.committed) {
          const e = expected.get(userOf(id)) ?? { count: 0, sum: 0 };
          e.count++;
          e.sum += amountOf(id);
          expected.set(userOf(id), e);
        }
        const last = new Map<string, UserTotal>();
        for (const o of [...out].sort((x, y) => x.offset - y.offset)) last.set(o.value.user, o.value);
        const wrongFinal = [...expected].filter(
          ([user, e]) => last.get(user)?.count !== e.count || last.get(user)?.sum !== e.sum,
        );
        const txns = await openTransactions(`${jobId}.`);
        const s = input.stats;
        console.log(
          `chaos test: ${RECORDS} committed input records (${s.transactional} in ${s.transactions} committed transactions of 3 kafkajs transactional producers, ${s.plain} by a kafkajs idempotent producer, ${s.kcat} by kcat) and ${input.aborted.size} records in ${s.abortedTransactions} aborted transactions, keyed by id over ${PARTITIONS} partitions, ${USERS} users; ` +
            `${kills.signals} SIGKILLs in ${ROUNDS} rounds (a ${kills.a}, b ${kills.b}, both ${kills.both}; ${kills.settled} once settled, ${kills.rebalancing} while rebalancing); ` +
            `zombie ${zombie.name} stopped ${zombie.stoppedMs} ms, ${zombie.failuresAfterWake} task/checkpoint failures after SIGCONT; ` +
            `${graceful.length} graceful restarts (exits: ${graceful.join(', ')}); ` +
            `${checkpoints} checkpoints committed, ${failures} task failures; last exits ${exits}; ` +
            `output ${out.length} records: ${duplicates} duplicated effects, ${abortedEffects} effects of aborted inputs, ${missing} committed inputs without effect, ${unknown} unknown ids, ${wrongUser} wrong users, ${wrongFinal.length} users with a wrong final count or sum; ` +
            `${describeSequences(sequences)}; ${txns.ids} transactional ids, ${txns.open.length} open; ` +
            `${Math.round((performance.now() - started) / 1000)} s`,
        );
        assert.equal(duplicates, 0, 'committed inputs with more than one effect');
        assert.equal(abortedEffects, 0, 'effects of aborted inputs');
        assert.equal(missing, 0, 'committed inputs without effect');
        assert.equal(unknown + wrongUser, 0, 'output records that match no input');
        assert.equal(sequences.broken.length, 0, describeSequences(sequences));
        assert.deepEqual(wrongFinal.slice(0, 5), [], `${wrongFinal.length} users' final count or sum`);
        assert.deepEqual(txns.open, [], `transactions left open: ${JSON.stringify(txns.open)}`);
        assert.ok(txns.ids > 0, 'the broker lists no transaction of the job');
      }),
  );
});
