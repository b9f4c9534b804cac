/**
 * What the S3 crash tests (share-nothing.test.ts, s3-crash.test.ts) share: the chaos job
 * (jobs/chaos-job.ts) run by `kstate run` with its checkpoints in an S3 bucket, an input with a
 * ledger (committed transactions, aborted ones, records from kcat), the check of its committed output
 * read back with kcat, and a look behind the service at the bucket: every checkpoint pointer committed
 * in Kafka must name a metadata object that is there, whose files are all there with their sizes.
 */
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { type S3StoreAddress, s3ClientConfig } from '../../../s3/local/test-store.ts';
import { decodePointer } from '../../admin/pointer.ts';
import type { Admin, Producer } from '../../internal/kafkajs.ts';
import type { Order, UserTotal } from '../jobs/chaos-job.ts';
import type { JobProcess } from './crash-helpers.ts';
import { kcatProducer } from './eos-helpers.ts';
import { kafkaClient } from './kafka.ts';
import {
  type Committed,
  checkRunningTotals,
  describeSequences,
  kcatRecords,
  type SequenceReport,
} from './sequence-check.ts';

export const CLI = fileURLToPath(new URL('../../cli/cli.ts', import.meta.url));
export const CHAOS_JOB = fileURLToPath(new URL('../jobs/chaos-job.ts', import.meta.url));
const USERS = 200;

/** Each input's user and amount are functions of its id: the checks need no other record of them. */
export const userOf = (id: number) => `u${(Math.imul(id, 2_654_435_761) >>> 0) % USERS}`;
export const amountOf = (id: number) => 1 + ((id * 7919) % 1000);

/**
 * The input of the chaos job and its ledger. `produce(n)` writes n more committed orders: about 60%
 * from a kafkajs transactional producer, in transactions of 50-300 records of which every third is
 * aborted (its records are in the topic, never committed), and the rest from kcat (librdkafka, its
 * own partitioner: the job re-keys by user through a repartition topic, so any partitioner will do).
 */
export class OrderInput {
  readonly committed = new Set<number>();
  readonly aborted = new Set<number>();
  readonly stats = { transactions: 0, abortedTransactions: 0, transactional: 0, kcat: 0 };
  readonly #topic: string;
  readonly #producer: Producer;
  #next = 0;
  #seed: number;

  private constructor(topic: string, producer: Producer, seed: number) {
    this.#topic = topic;
    this.#producer = producer;
    this.#seed = seed;
  }

  static async open(topic: string, transactionalId: string, seed = 1): Promise<OrderInput> {
    const producer = kafkaClient(`orders-${transactionalId}`).producer({
      transactionalId,
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    return new OrderInput(topic, producer, seed);
  }

  #random(): number {
    this.#seed = (this.#seed * 1103515245 + 12345) & 0x7fffffff;
    return this.#seed / 0x7fffffff;
  }

  #take(n: number): { key: string; value: string }[] {
    return Array.from({ length: n }, () => {
      const id = this.#next++;
      const order: Order = { id, user: userOf(id), amount: amountOf(id) };
      return { key: String(id), value: JSON.stringify(order) };
    });
  }

  async produce(n: number): Promise<void> {
    const byKcat = Math.round(n * 0.4);
    await Promise.all([this.#transactions(n - byKcat), this.#kcat(byKcat)]);
  }

  async #transactions(n: number): Promise<void> {
    let left = n;
    let i = 0;
    while (left > 0) {
      const abort = i++ % 3 === 2;
      const size = Math.min(abort ? 300 : left, 50 + Math.floor(this.#random() * 250));
      const messages = this.#take(size);
      const txn = await this.#producer.transaction();
      const half = Math.ceil(size / 2);
      // Two sends: a transaction's records span several batches.
      await txn.send({ topic: this.#topic, messages: messages.slice(0, half) });
      await txn.send({ topic: this.#topic, messages: messages.slice(half) });
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

  async #kcat(n: number): Promise<void> {
    if (n === 0) return;
    const messages = this.#take(n);
    const kcat = kcatProducer(this.#topic);
    await kcat.write(messages.map((m) => `${m.key}\t${m.value}\n`).join(''));
    await kcat.end();
    for (const m of messages) this.committed.add(Number(m.key));
    this.stats.kcat += n;
  }

  describe(): string {
    const s = this.stats;
    return `${this.committed.size} committed orders (${s.transactional} in ${s.transactions} kafkajs transactions, ${s.kcat} by kcat) and ${this.aborted.size} in ${s.abortedTransactions} aborted transactions`;
  }

  close(): Promise<void> {
    return this.#producer.disconnect();
  }
}

/** What a reader of the chaos job's committed output sees, against the input's ledger. */
export interface TotalsReport {
  readonly records: number;
  readonly duplicates: number;
  readonly abortedEffects: number;
  readonly missing: number;
  readonly unknown: number;
  /** Users whose last committed count and sum differ from the recomputation over the ledger. */
  readonly wrongFinal: number;
  readonly sequences: SequenceReport;
}

/**
 * Every committed order has exactly one effect and no aborted one has any; per user, in offset order,
 * counts run 1..n and each sum adds the order's amount; each user's last record is the recomputation.
 */
export function checkTotals(out: readonly Committed<UserTotal>[], input: OrderInput): TotalsReport {
  const effects = new Map<number, number>();
  for (const o of out) effects.set(o.value.id, (effects.get(o.value.id) ?? 0) + 1);
  let duplicates = 0;
  let abortedEffects = 0;
  let unknown = 0;
  for (const o of out) if (o.value.user !== userOf(o.value.id)) unknown++;
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
  const expected = new Map<string, { count: number; sum: number }>();
  for (const id of input.committed) {
    const e = expected.get(userOf(id)) ?? { count: 0, sum: 0 };
    e.count++;
    e.sum += amountOf(id);
    expected.set(userOf(id), e);
  }
  const last = new Map<string, UserTotal>();
  for (const o of [...out].sort((x, y) => x.offset - y.offset)) last.set(o.value.user, o.value);
  let wrongFinal = 0;
  for (const [user, e] of expected) {
    if (last.get(user)?.count !== e.count || last.get(user)?.sum !== e.sum) wrongFinal++;
  }
  return { records: out.length, duplicates, abortedEffects, missing, unknown, wrongFinal, sequences };
}

export function describeTotals(r: TotalsReport): string {
  return `output ${r.records} records: ${r.duplicates} duplicated effects, ${r.abortedEffects} effects of aborted orders, ${r.missing} committed orders without effect, ${r.unknown} unknown, ${r.wrongFinal} users with a wrong final count or sum; ${describeSequences(r.sequences)}`;
}

/** Every committed order has had its effect (the job caught up), judged by ids alone. */
export function covered(out: readonly Committed<UserTotal>[], input: OrderInput): boolean {
  const seen = new Set(out.map((o) => o.value.id));
  for (const id of input.committed) if (!seen.has(id)) return false;
  return true;
}

/**
 * For a failure message: where the committed orders without effect are (their input partitions, read
 * with kcat), and what each task of the processes did (restores, failures, checkpoints) by their logs.
 */
export async function diagnose(
  out: readonly Committed<UserTotal>[],
  input: OrderInput,
  inputTopic: string,
  processes: readonly { readonly name: string; readonly p: JobProcess }[],
): Promise<string> {
  const seen = new Set(out.map((o) => o.value.id));
  const missing = new Map<number, number>();
  for (const r of await kcatRecords<Order>(inputTopic)) {
    if (!seen.has(r.value.id)) missing.set(r.partition, (missing.get(r.partition) ?? 0) + 1);
  }
  const tasks = processes.map(({ name, p }) => {
    const by = new Map<string, { restores: number; failures: number; checkpoints: number; last: string }>();
    const of = (t: unknown) => {
      const k = String(t);
      if (!by.has(k)) by.set(k, { restores: 0, failures: 0, checkpoints: 0, last: '' });
      return by.get(k)!;
    };
    for (const e of logEvents(p.lines, 'task restored')) of(e.task).restores++;
    for (const e of logEvents(p.lines, 'checkpoint committed')) of(e.task).checkpoints++;
    for (const e of logEvents(p.lines, 'task failed')) {
      const t = of(e.task);
      t.failures++;
      t.last = `${String(e.code)}: ${String(e.err).slice(0, 200)}`;
    }
    const running = runningTasks(p);
    return `${name} (${isAlive(p) ? 'alive' : `exited ${p.child.exitCode ?? p.child.signalCode}`}): ${[...by]
      .map(
        ([t, s]) =>
          `${t}${running.has(t) ? '' : ' (not running)'} ${s.restores} restores, ${s.checkpoints} checkpoints, ${s.failures} failures${s.last ? ` (last ${s.last})` : ''}`,
      )
      .join('; ')}`;
  });
  return `committed orders without effect by input partition: ${JSON.stringify(Object.fromEntries(missing))}; ${input.describe()}\n${tasks.join('\n')}`;
}

/** A client of the test store for looking behind the service (S3Proxy's settings). */
export function rawS3Client(store: S3StoreAddress): S3Client {
  return new S3Client(s3ClientConfig(store));
}

export async function createBucket(client: S3Client, bucket: string): Promise<void> {
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
}

/** The environment of one `kstate run` of the chaos job (the service's settings from KSTATE_*). */
export function chaosJobEnv(o: {
  readonly jobId: string;
  readonly input: string;
  readonly output: string;
  readonly stateDir: string;
  /** A directory, or `s3://bucket/prefix`. */
  readonly storage: string;
  /** KSTATE_S3_ENDPOINT: the store, or a proxy in front of it. */
  readonly s3Endpoint?: string;
  readonly intervalMs?: number;
}): Record<string, string> {
  return {
    KSTATE_BACKEND: 'level',
    KSTATE_INCREMENTAL: 'true',
    KSTATE_STATE_DIR: o.stateDir,
    KSTATE_CHECKPOINT_STORAGE: o.storage,
    ...(o.s3Endpoint === undefined ? {} : { KSTATE_S3_ENDPOINT: o.s3Endpoint }),
    KSTATE_CHECKPOINT_INTERVAL_MS: String(o.intervalMs ?? 1000),
    KSTATE_SESSION_TIMEOUT_MS: '6000',
    KSTATE_HTTP_PORT: '0',
    KSTATE_LOG_LEVEL: 'debug',
    CHAOS_JOB_ID: o.jobId,
    CHAOS_INPUT: o.input,
    CHAOS_OUTPUT: o.output,
  };
}

/** The service's JSON log lines (of a process's `lines`) with message `msg` (pino: `"msg":"..."`). */
export function logEvents(lines: readonly string[], msg: string): Record<string, unknown>[] {
  const marker = `"msg":"${msg}"`;
  return lines
    .filter((l) => l.startsWith('{') && l.includes(marker))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Tasks a service process runs now, from its log: restored and not stopped or failed since. */
export function runningTasks(p: JobProcess): Set<string> {
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

export const isAlive = (p: JobProcess) => p.child.exitCode === null && p.child.signalCode === null;

/** SIGTERM (graceful: final checkpoint), SIGKILL after `ms`; resolves with the exit code or signal. */
export async function stopProcess(p: JobProcess, ms = 60_000): Promise<string> {
  if (isAlive(p)) {
    p.child.kill('SIGCONT');
    p.child.kill('SIGTERM');
    const timer = setTimeout(() => p.child.kill('SIGKILL'), ms);
    await p.exited;
    clearTimeout(timer);
  }
  return String(p.child.exitCode ?? p.child.signalCode);
}

export interface PointerReport {
  /** Partitions of the group whose committed offset carries a checkpoint pointer. */
  readonly pointers: number;
  /** Distinct metadata objects they name. */
  readonly metadata: number;
  /** Files those metadata objects list, checked. */
  readonly files: number;
  readonly problems: readonly string[];
}

/**
 * Every checkpoint pointer the job's group has committed (the offset metadata, connectors/kafka/admin/
 * pointer.ts) names a metadata object that exists in `bucket` with the pointer's size and SHA-256, and
 * every file that metadata lists exists with its listed size: read with a raw S3 client, not the storage.
 */
export async function checkCommittedPointers(o: {
  readonly admin: Admin;
  readonly groupId: string;
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
}): Promise<PointerReport> {
  const offsets = await o.admin.fetchOffsets({ groupId: o.groupId });
  const problems: string[] = [];
  const named = new Map<string, { bytes: number; sha256: string; where: string }>();
  let pointers = 0;
  for (const t of offsets) {
    for (const p of t.partitions) {
      const ptr = decodePointer(p.metadata);
      if (ptr === undefined) continue;
      pointers++;
      named.set(ptr.path, { bytes: ptr.bytes, sha256: ptr.sha256, where: `${t.topic}/${p.partition}` });
    }
  }
  const key = (path: string) => (o.prefix === '' ? path : `${o.prefix}/${path}`);
  let files = 0;
  for (const [path, want] of named) {
    let body: Uint8Array;
    try {
      const got = await o.client.send(new GetObjectCommand({ Bucket: o.bucket, Key: key(path) }));
      body = await got.Body!.transformToByteArray();
    } catch (e) {
      problems.push(`${want.where}: metadata ${path} cannot be read: ${(e as Error).name}`);
      continue;
    }
    const sha = createHash('sha256').update(body).digest('hex');
    if (body.byteLength !== want.bytes || sha !== want.sha256) {
      problems.push(
        `${want.where}: metadata ${path} is ${body.byteLength} bytes sha256 ${sha.slice(0, 12)}, the pointer says ${want.bytes} bytes ${want.sha256.slice(0, 12)}`,
      );
      continue;
    }
    // The pointer codec's envelope (framework/checkpoint/storage/pointer-codec.ts), or the bare
    // metadata of a build before it.
    const doc = JSON.parse(new TextDecoder().decode(body)) as { metadata?: unknown };
    const meta = (doc.metadata ?? doc) as { files: { path: string; bytes: number }[] };
    for (const f of meta.files) {
      files++;
      try {
        const head = await o.client.send(new HeadObjectCommand({ Bucket: o.bucket, Key: key(f.path) }));
        if (head.ContentLength !== f.bytes)
          problems.push(`${path} lists ${f.path} of ${f.bytes} bytes; the object has ${head.ContentLength}`);
      } catch (e) {
        problems.push(`${path} lists ${f.path}, which is not there (${(e as Error).name})`);
      }
    }
  }
  return { pointers, metadata: named.size, files, problems };
}
