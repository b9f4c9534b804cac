/**
 * Issue 14: instances that share nothing but Kafka and S3. Three `kstate run` processes of the chaos
 * job (jobs/chaos-job.ts: orders re-keyed by user through a repartition topic, a per-user running
 * count and sum in level state, incremental checkpoints every second), each with its own state
 * directory and no directory in common: checkpoints go only to an S3 bucket (S3Proxy), each process
 * through its own counting proxy (connectors/s3/test/fault-proxy.ts with no faults) so the test can
 * see which objects it read. The input comes from a kafkajs transactional producer (every third
 * transaction aborted) and from kcat.
 *
 * The first process starts alone and runs every task; the others join and take their share (the
 * assignor is sticky, so the tasks the first one keeps never ran anywhere else). Once the group has
 * settled and checkpointed, the first process is SIGKILLed while it processes. The others must take
 * over its tasks and restore them from S3, with nothing of them on their disks: checked before the
 * kill (no directory of those tasks in their state directories), and after it (each such task logged
 * `task restored` from a checkpoint, and its new owner GETs that task's files from the bucket). More
 * input arrives after the kill. Read back with kcat (read_committed): every committed order has one
 * effect, aborted ones none, and per user the counts run 1..n in offset order with the sums
 * recomputed along them; every checkpoint pointer committed in Kafka names objects that exist.
 *
 * The second case does the same with each process in its own network namespace (netns.ts: its own
 * loopback, a veth to the host, only the broker's and its S3 proxy's ports relayed); it is skipped,
 * saying why, where namespaces cannot be made (not root, no `ip`).
 *
 * SHARE_NOTHING_STORAGE=local (to show that the test can fail): each process gets a checkpoint
 * directory of its own instead of the bucket; the one taking over finds nothing of the killed one's
 * checkpoints. CRASH_LOG=<file> keeps the processes' log lines.
 */
import assert from 'node:assert/strict';
import { appendFileSync, existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { S3Client } from '@aws-sdk/client-s3';
import { NO_TEST_S3, testS3Store, uniqueBucketName } from '../../../s3/local/test-store.ts';
import { type FaultProxy, startFaultProxy } from '../../../s3/test/fault-proxy.ts';
import type { Admin } from '../../internal/kafkajs.ts';
import type { UserTotal } from '../jobs/chaos-job.ts';
import { type JobProcess, startJobProcess } from '../support/crash-helpers.ts';
import { brokersFromEnv, eventually, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';
import { createNamespace, type NetNamespace, netnsUnavailable, reachableFrom } from '../support/netns.ts';
import {
  CHAOS_JOB,
  CLI,
  chaosJobEnv,
  checkCommittedPointers,
  checkTotals,
  covered,
  createBucket,
  describeTotals,
  diagnose,
  isAlive,
  logEvents,
  OrderInput,
  rawS3Client,
  runningTasks,
  stopProcess,
} from '../support/s3-job-helpers.ts';
import { kcatRecords } from '../support/sequence-check.ts';

const store = testS3Store();
const PARTITIONS = 6;
/** The input stage and the repartitioned stage, one task per partition each. */
const TASKS = 2 * PARTITIONS;
const LOCAL = process.env.SHARE_NOTHING_STORAGE === 'local';
const NETNS = await netnsUnavailable();

interface Instance {
  readonly name: string;
  readonly stateDir: string;
  readonly proxy: FaultProxy;
  readonly ns: NetNamespace | undefined;
  p: JobProcess;
}

describe('instances that share nothing but Kafka and S3', {
  skip: store === undefined ? NO_TEST_S3 : false,
}, () => {
  let admin: Admin;
  let s3: S3Client;
  let dir: string;
  before(async () => {
    admin = kafkaClient('share-nothing-admin').admin();
    await admin.connect();
    s3 = rawS3Client(store!);
    dir = await mkdtemp(join(tmpdir(), 'share-nothing-'));
  });
  after(async () => {
    await admin.disconnect();
    s3.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  async function scenario(label: string, o: { readonly instances: number; readonly netns: boolean }) {
    const started = performance.now();
    const n = names(label);
    const topics = { input: n.topic('in'), output: n.topic('out') };
    const jobId = n.group('job');
    const bucket = uniqueBucketName(label);
    const prefix = 'share-nothing';
    await Promise.all([
      createBucket(s3, bucket),
      admin.createTopics({
        topics: Object.values(topics).map((topic) => ({ topic, numPartitions: PARTITIONS })),
        waitForLeaders: true,
      }),
    ]);
    const input = await OrderInput.open(topics.input, n.transactionalId('orders'), 7);
    const brokerPort = Number(brokersFromEnv()[0]!.split(':').at(-1));
    const instances: Instance[] = [];
    const start = (i: Instance) =>
      startJobProcess(
        chaosJobEnv({
          jobId,
          input: topics.input,
          output: topics.output,
          stateDir: i.stateDir,
          storage: LOCAL ? join(dir, n.stem, i.name, 'checkpoints') : `s3://${bucket}/${prefix}`,
          // Inside a namespace, 127.0.0.1:<proxy port> is relayed to the proxy on the host.
          s3Endpoint: i.proxy.endpoint,
        }),
        CLI,
        ['run', CHAOS_JOB],
        i.ns?.exec ?? [],
      );
    const tail = (i: Instance) => `${i.name}: ${i.p.lines.slice(-10).join('\n')}`;
    try {
      for (let k = 0; k < o.instances; k++) {
        const proxy = await startFaultProxy({ upstream: store!.endpoint });
        const ns = o.netns
          ? await createNamespace([{ port: brokerPort }, { port: proxy.port }]).catch(async (e: unknown) => {
              await proxy.close();
              throw e;
            })
          : undefined;
        instances.push({
          name: String.fromCharCode(97 + k),
          stateDir: join(dir, n.stem, String.fromCharCode(97 + k), 'state'),
          proxy,
          ns,
          p: undefined as unknown as JobProcess,
        });
      }
      const [victim, ...survivors] = instances as [Instance, ...Instance[]];
      // A namespace reaches the broker and its own S3 proxy, and nothing else of the host: not the store itself.
      const storePort = Number(new URL(store!.endpoint).port);
      const leaks = [];
      for (const i of instances) {
        if (i.ns !== undefined && (await reachableFrom(i.ns, '127.0.0.1', storePort))) leaks.push(i.name);
      }
      assert.deepEqual(leaks, [], `namespaces that reach the host's S3Proxy port ${storePort} directly`);

      // The first process alone runs every task (and checkpoints them), then the others take their share.
      victim.p = start(victim);
      await input.produce(4000);
      await eventually(
        async () => (runningTasks(victim.p).size === TASKS ? true : undefined),
        120_000,
        () => `${victim.name} never ran all ${TASKS} tasks\n${tail(victim)}`,
      );
      for (const s of survivors) s.p = start(s);
      const settled = () => {
        const all = instances.map((i) => runningTasks(i.p));
        return all.every((t) => t.size > 0) &&
          all.reduce((a, t) => a + t.size, 0) === TASKS &&
          new Set(all.flatMap((t) => [...t])).size === TASKS
          ? true
          : undefined;
      };
      await input.produce(4000);
      const victimTasks = () => [...runningTasks(victim.p)].sort();
      await eventually(
        async () => settled(),
        120_000,
        () => `the group did not settle:\n${instances.map(tail).join('\n')}`,
      );
      // Input keeps arriving from here until the kill (idle tasks take no checkpoints: docs/runtime.md).
      let flowing = true;
      const flow = (async () => {
        while (flowing) await input.produce(600);
      })();
      flow.catch(() => {});
      try {
        // Every task of the victim has committed a checkpoint since the group settled: state to restore.
        const mark = victim.p.lines.length;
        await eventually(
          async () => {
            const done = new Set(
              logEvents(victim.p.lines.slice(mark), 'checkpoint committed').map((e) => e.task),
            );
            return victimTasks().every((t) => done.has(t)) ? true : undefined;
          },
          90_000,
          () =>
            `${victim.name} did not checkpoint each of its tasks ${victimTasks().join(',')}\n${tail(victim)}`,
        );
        // Kill it while it processes: some of the input that arrived since has come out already.
        const outputBefore = (await kcatRecords<UserTotal>(topics.output)).length;
        await eventually(
          async () =>
            (await kcatRecords<UserTotal>(topics.output)).length > outputBefore + 1000 ? true : undefined,
          90_000,
          () => `no output of the new input\n${tail(victim)}`,
        );
      } finally {
        flowing = false;
      }
      const killed = victimTasks();
      // Nothing of the victim's tasks is on the others' disks.
      const localCopies = survivors.flatMap((s) =>
        killed.filter((t) => existsSync(join(s.stateDir, jobId, t))).map((t) => `${s.name}:${t}`),
      );
      for (const s of survivors) s.proxy.resetCounts();
      const killedAt = survivors.map((s) => s.p.lines.length);
      victim.p.child.kill('SIGKILL');
      await victim.p.exited;
      const killMs = performance.now();
      await flow;

      // The survivors run every task; more input after the kill.
      await eventually(
        async () => {
          const all = survivors.map((s) => runningTasks(s.p));
          return new Set(all.flatMap((t) => [...t])).size === TASKS &&
            all.reduce((a, t) => a + t.size, 0) === TASKS
            ? true
            : undefined;
        },
        120_000,
        () => `the survivors did not take over every task:\n${survivors.map(tail).join('\n')}`,
      );
      const takeoverMs = Math.round(performance.now() - killMs);
      await input.produce(6000);
      const deadline = Date.now() + 120_000;
      for (;;) {
        if (covered(await kcatRecords<UserTotal>(topics.output), input) || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 1000));
      }

      // How each task of the victim got its state back: its restore line, and the GETs of its files.
      const restoredSinceKill = (s: Instance) =>
        logEvents(s.p.lines.slice(killedAt[survivors.indexOf(s)]), 'task restored');
      const takeover = killed.map((task) => {
        const by = survivors.find((s) => restoredSinceKill(s).some((e) => e.task === task));
        const restored = by === undefined ? undefined : restoredSinceKill(by).find((e) => e.task === task);
        const filesPath = `/${bucket}/${prefix}/${jobId}/${task}/files/`;
        const gets =
          by === undefined
            ? 0
            : by.proxy.history().filter((h) => h.method === 'GET' && h.path.startsWith(filesPath)).length;
        return { task, by: by?.name, checkpoint: restored?.checkpoint ?? null, ms: restored?.ms, gets };
      });
      const failures = survivors.flatMap((s) => logEvents(s.p.lines, 'task failed'));
      const exits = [];
      for (const s of survivors) exits.push(`${s.name} ${await stopProcess(s.p)}`);

      const out = await kcatRecords<UserTotal>(topics.output);
      const report = checkTotals(out, input);
      const pointers = LOCAL
        ? undefined
        : await checkCommittedPointers({ admin, groupId: jobId, client: s3, bucket, prefix });
      console.log(
        `share nothing (${label}): ${o.instances} kstate run processes${o.netns ? ` in network namespaces (${instances.map((i) => `${i.name} ${i.ns?.address}`).join(', ')})` : ''}, checkpoints in ${LOCAL ? 'a local directory each' : `s3://${bucket}/${prefix}`}; ${input.describe()}; ` +
          `${victim.name} killed running ${killed.join(',')}; local copies of them on the others: ${localCopies.length}; the others ran every task ${takeoverMs} ms after the kill; ` +
          `takeover: ${takeover.map((t) => `${t.task} by ${t.by ?? 'nobody'} from checkpoint ${t.checkpoint} in ${t.ms} ms, ${t.gets} file GETs`).join('; ')}; ` +
          `${failures.length} task failures after; exits ${exits.join(', ')}; ${describeTotals(report)}; ` +
          (pointers
            ? `${pointers.pointers} committed pointers naming ${pointers.metadata} metadata objects listing ${pointers.files} files, ${pointers.problems.length} problems; `
            : '') +
          `${Math.round((performance.now() - started) / 1000)} s`,
      );
      assert.deepEqual(localCopies, [], 'the survivors had local copies of the victim tasks');
      assert.equal(report.duplicates, 0, 'committed orders with more than one effect');
      assert.equal(report.abortedEffects, 0, 'effects of aborted orders');
      assert.equal(
        report.missing,
        0,
        report.missing === 0
          ? ''
          : `committed orders without effect; ${await diagnose(
              out,
              input,
              topics.input,
              instances.map((i) => ({ name: i.name, p: i.p })),
            )}`,
      );
      assert.equal(report.unknown, 0, 'output records that match no order');
      assert.equal(report.sequences.broken.length, 0, describeTotals(report));
      assert.equal(report.wrongFinal, 0, 'users with a wrong final count or sum');
      for (const t of takeover) {
        assert.ok(t.by !== undefined, `no survivor restored ${t.task}`);
        assert.ok(t.checkpoint !== null, `${t.task} was restored empty by ${t.by}, not from a checkpoint`);
        assert.ok(t.gets > 0, `${t.by} restored ${t.task} without reading its files from the bucket`);
      }
      assert.deepEqual(pointers?.problems ?? [], []);
      assert.ok((pointers?.pointers ?? 0) >= PARTITIONS, 'committed checkpoint pointers');
    } finally {
      for (const i of instances) if (i.p !== undefined && isAlive(i.p)) i.p.child.kill('SIGKILL');
      for (const i of instances) {
        if (i.p !== undefined) await i.p.exited;
        if (process.env.CRASH_LOG && i.p !== undefined)
          appendFileSync(process.env.CRASH_LOG, `--- ${label} ${i.name}\n${i.p.lines.join('\n')}\n`);
        await i.proxy.close();
        await i.ns?.remove();
      }
      await input.close();
    }
  }

  test(
    'three processes, state only in S3: one SIGKILLed while processing, the others restore its tasks from the bucket; per user 1..n in offset order, every effect once',
    { timeout: 6 * 60_000 },
    () => scenario('share-nothing', { instances: 3, netns: false }),
  );

  test(
    'the same with each process in its own network namespace',
    { timeout: 6 * 60_000, skip: NETNS ?? false },
    () => scenario('share-nothing-netns', { instances: 3, netns: true }),
  );
});
