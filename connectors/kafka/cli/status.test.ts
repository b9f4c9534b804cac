/**
 * The status board and page without a broker: the board from listener events and sampled task
 * counters (rates, watermark and its lag, late records, checkpoint failures, one series per task,
 * counts across a restart), the primary's merge of its workers' boards, and the page drawn by
 * headless Chromium from such data (connectors/kafka/test/cli/service.test.ts renders it live).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { CheckpointStats } from '../../../framework/index.ts';
import { STATUS_HTML, StatusBoard, type StatusJson } from './status.ts';
import { mergeWorkerStatus } from './status-workers.ts';

const run = promisify(execFile);

/** A Task's counters as the board reads them. */
function fakeTask(taskId: string) {
  return {
    scope: { taskId },
    recordsIn: 0,
    written: 0,
    late: 0,
    marks: [] as number[],
    recordsWritten() {
      return this.written;
    },
    lateRecordsDropped() {
      return [{ uid: 'w', records: this.late }];
    },
    watermarks() {
      return this.marks.map((watermark, i) => ({ uid: `op${i}`, watermark }));
    },
  };
}

const stats = (taskId: string, checkpointId: number, ms: number, bytes: number): CheckpointStats => ({
  taskId,
  checkpointId,
  savepoint: undefined,
  final: false,
  unaligned: false,
  alignmentMs: 1,
  syncMs: 2,
  asyncMs: ms - 3,
  bytes,
  backend: 'heap',
  inflightRecords: 0,
});

/** Two tasks: p0 with a 1970 watermark and a failed checkpoint, p1 with a recent one and late drops. */
function boardWithTwoTasks() {
  const board = new StatusBoard('orders');
  const l = board.listener();
  const p0 = fakeTask('orders-p0');
  const p1 = fakeTask('orders-p1');
  for (const [i, t] of [p0, p1].entries()) {
    l.taskStarted?.({ taskId: t.scope.taskId, partition: i });
    l.restored?.({ taskId: t.scope.taskId, checkpointId: undefined, ms: 5 });
  }
  board.sample([p0, p1], 0);
  p0.recordsIn = 2000;
  p0.written = 1000;
  p0.marks = [3999, 4100];
  p1.recordsIn = 500;
  p1.written = 500;
  p1.late = 7;
  p1.marks = [Date.now() - 90_000];
  board.sample([p0, p1], 2000);
  for (let n = 1; n <= 3; n++) {
    l.checkpointCompleted?.(stats('orders-p0', n, 10 * n, 100 * n));
    l.checkpointCompleted?.(stats('orders-p1', n, 50, 400));
  }
  l.checkpointFailed?.({
    taskId: 'orders-p0',
    checkpointId: 4,
    error: new Error('checkpoint 4 of task orders-p0 timed out after 60000 ms'),
  });
  return { board, p0, p1, l };
}

describe('status board', () => {
  test('rates, watermark (lag only for wall-clock times), late drops, failures and one series per task', () => {
    const { board } = boardWithTwoTasks();
    const s = board.json();
    const [p0, p1] = s.tasks;
    assert.equal(p0?.taskId, 'orders-p0');
    assert.deepEqual(
      [p0?.inPerSec, p0?.outPerSec, p1?.inPerSec, p1?.outPerSec],
      [1000, 500, 250, 250],
      'records per second over the 2 s between samples',
    );
    assert.deepEqual(s.totals, { inPerSec: 1250, outPerSec: 750, lateDropped: 7, checkpointsFailed: 1 });
    assert.equal(p0?.watermark, 3999, 'the lowest operator watermark');
    assert.equal(p0?.watermarkLagMs, null, 'no lag behind the wall clock for a 1970 event time');
    assert.ok(
      p1?.watermarkLagMs !== null && p1!.watermarkLagMs >= 90_000 && p1!.watermarkLagMs < 120_000,
      `lag ${p1?.watermarkLagMs}`,
    );
    assert.equal(p1?.lateDropped, 7);
    assert.equal(p0?.checkpointsFailed, 1);
    assert.match(p0?.lastCheckpointFailure?.reason ?? '', /timed out after 60000 ms/);
    assert.deepEqual(Object.keys(s.checkpoints), ['orders-p0', 'orders-p1']);
    assert.deepEqual(
      s.checkpoints['orders-p0']?.map((p) => [p.id, p.durationMs, p.bytes]),
      [
        [1, 10, 100],
        [2, 20, 200],
        [3, 30, 300],
      ],
    );
    assert.deepEqual(p0?.owner, { host: hostname(), pid: process.pid });
    assert.equal(s.scope, 'instance');
  });

  test('a restarted task (a new Task object) keeps counting from its totals; a stopped one leaves the page', () => {
    const { board, p0, l } = boardWithTwoTasks();
    l.taskFailed?.({ taskId: 'orders-p0', error: new Error('boom'), restarting: true, delayMs: 0 });
    const again = fakeTask('orders-p0');
    again.recordsIn = 600;
    board.sample([again], 4000);
    const s = board.json();
    const row = s.tasks.find((t) => t.taskId === 'orders-p0');
    assert.equal(row?.recordsIn, p0.recordsIn + 600);
    assert.equal(row?.inPerSec, 300);
    assert.equal(row?.restarts, 1);
    assert.equal(row?.lastFailure, 'boom');
    l.taskStopped?.({ taskId: 'orders-p1', partition: 1 });
    assert.deepEqual(
      board.json().tasks.map((t) => t.taskId),
      ['orders-p0'],
    );
    assert.deepEqual(Object.keys(board.json().checkpoints), ['orders-p0']);
  });

  test('the primary merges its workers: their tasks with their owners, summed totals, each checkpoint once', () => {
    const a = boardWithTwoTasks().board.json();
    const worker = (s: StatusJson, n: number, tasks: string[]): StatusJson => ({
      ...s,
      tasks: s.tasks
        .filter((t) => tasks.includes(t.taskId))
        .map((t) => ({ ...t, owner: { host: 'h', pid: 100 + n, worker: n, memberId: `m${n}` } })),
      checkpoints: Object.fromEntries(Object.entries(s.checkpoints).filter(([k]) => tasks.includes(k))),
      jobTasks: 2,
    });
    const merged = mergeWorkerStatus([worker(a, 1, ['orders-p0']), worker(a, 2, ['orders-p1'])], 2);
    assert.equal(merged.scope, 'workers');
    assert.equal(merged.instance.workers, 2);
    assert.equal(merged.answered, 2);
    assert.deepEqual(
      merged.tasks.map((t) => [t.taskId, t.owner.worker, t.owner.pid]),
      [
        ['orders-p0', 1, 101],
        ['orders-p1', 2, 102],
      ],
    );
    assert.deepEqual(merged.totals, { inPerSec: 1250, outPerSec: 750, lateDropped: 7, checkpointsFailed: 1 });
    assert.deepEqual(Object.keys(merged.checkpoints).sort(), ['orders-p0', 'orders-p1']);
  });
});

describe('status page in headless Chromium (canned data)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'status-page-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function render(status: StatusJson): Promise<string> {
    const server = createServer((req, res) => {
      const json = req.url?.startsWith('/status.json');
      res.writeHead(200, { 'content-type': json ? 'application/json' : 'text/html; charset=utf-8' });
      res.end(json ? JSON.stringify(status) : STATUS_HTML);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as { port: number };
    try {
      const { stdout } = await run(
        'chromium',
        [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
          `--user-data-dir=${join(dir, 'chromium')}`,
          '--virtual-time-budget=5000',
          '--dump-dom',
          `http://127.0.0.1:${port}/status`,
        ],
        { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
      );
      return stdout;
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  }

  /** The inner markup of the element with this id. */
  const element = (dom: string, tag: string, id: string) =>
    new RegExp(`<${tag} id="${id}"[^>]*>([\\s\\S]*?)</${tag}>`).exec(dom)?.[1] ?? '';

  test('throughput, owner, watermark and lag, late drops, failures, one duration series per task', async () => {
    // Two of the job's four tasks run in this instance.
    const dom = await render({ ...boardWithTwoTasks().board.json(), jobTasks: 4 });
    assert.match(dom, /data-loaded="true"/, 'the page did not load its data');
    assert.match(element(dom, 'table', 'totals'), /class="n in-rate" data-value="1250">1,250\.0</);
    assert.match(element(dom, 'table', 'totals'), /class="n late" data-value="7">7</);
    const tasks = element(dom, 'table', 'tasks');
    assert.equal((/<tbody>([\s\S]*)<\/tbody>/.exec(tasks)?.[1]?.match(/<tr>/g) ?? []).length, 2);
    assert.ok(tasks.includes(`${hostname()}:${process.pid}`), 'the owner is shown');
    assert.match(tasks, /class="watermark" data-value="3999">/);
    assert.match(tasks, /class="n wm-lag" data-value="\d+">1\.\d min</, 'the lag of the recent watermark');
    assert.match(tasks, /class="n cp-failed" data-value="1">1</);
    assert.match(tasks, /timed out after 60000 ms/);
    const durations = element(dom, 'svg', 'durations');
    const series = [
      ...durations.matchAll(/<polyline class="series" data-task="([^"]+)" data-points="(\d+)"/g),
    ];
    assert.deepEqual(
      series.map((m) => [m[1], Number(m[2])]),
      [
        ['orders-p0', 3],
        ['orders-p1', 3],
      ],
      'one line per task, each with its own checkpoints',
    );
    assert.equal((durations.match(/class="failure"/g) ?? []).length, 1, 'the failed checkpoint is marked');
    assert.match(element(dom, 'table', 'failures'), /orders-p0[\s\S]*timed out/);
    assert.match(
      dom,
      /This page shows this instance's tasks only: 2 of the job's 4 tasks\. The others run in other members of the consumer group/,
    );
    assert.match(dom, /consumer-group member <b class="member-id">\(not joined yet\)<\/b>/);
  });

  test('the primary of --workers says so and shows each worker as owner', async () => {
    const a = boardWithTwoTasks().board.json();
    const merged = mergeWorkerStatus(
      [
        {
          ...a,
          jobTasks: 2,
          tasks: a.tasks.map((t, i) => ({
            ...t,
            owner: { host: 'h', pid: 200 + i, worker: i + 1, memberId: `member-${i + 1}` },
          })),
        },
      ],
      2,
    );
    const dom = await render(merged);
    assert.match(dom, /<b>2<\/b> workers \(1 answered\)/);
    assert.match(dom, /This page shows the tasks of all workers of this process: 2 of the job's 2 tasks\./);
    const tasks = element(dom, 'table', 'tasks');
    assert.ok(tasks.includes('h:200 worker 1') && tasks.includes('h:201 worker 2'), tasks);
    assert.ok(tasks.includes('member-2'));
  });
});
