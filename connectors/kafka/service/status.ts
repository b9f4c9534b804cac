import type { CheckpointStats, JobListener } from '../../../framework/index.ts';
import type { KafkaRunningJob } from '../service.ts';
import type { PartitionLag } from '../source/hub.ts';

interface TaskRow {
  taskId: string;
  state: 'starting' | 'running' | 'failed' | 'stopped';
  restoredFrom: number | null;
  lastCheckpoint: number | null;
  restarts: number;
}

interface CheckpointRow {
  readonly taskId: string;
  readonly checkpointId: number;
  readonly at: string;
  readonly durationMs: number;
  readonly bytes: number;
}

/**
 * What the status page shows: task assignment and state, recent checkpoints (duration and size),
 * consumer lag. Fed by a JobListener; `json()` is served as /status.json and drawn by STATUS_HTML.
 */
export class StatusBoard {
  readonly jobId: string;
  readonly #tasks = new Map<string, TaskRow>();
  readonly #checkpoints: CheckpointRow[] = [];
  #lag: PartitionLag[] = [];
  #job: KafkaRunningJob | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(jobId: string) {
    this.jobId = jobId;
  }

  listener(): JobListener {
    const row = (taskId: string): TaskRow => {
      let r = this.#tasks.get(taskId);
      if (!r) {
        r = { taskId, state: 'starting', restoredFrom: null, lastCheckpoint: null, restarts: 0 };
        this.#tasks.set(taskId, r);
      }
      return r;
    };
    return {
      taskStarted: (t) => {
        row(t.taskId).state = 'starting';
      },
      restored: (r) => {
        const t = row(r.taskId);
        t.state = 'running';
        t.restoredFrom = r.checkpointId ?? null;
      },
      taskFailed: (f) => {
        const t = row(f.taskId);
        t.state = 'failed';
        if (f.restarting) t.restarts++;
      },
      taskStopped: (t) => {
        row(t.taskId).state = 'stopped';
      },
      checkpointCompleted: (s: CheckpointStats) => {
        row(s.taskId).lastCheckpoint = s.checkpointId;
        this.#checkpoints.push({
          taskId: s.taskId,
          checkpointId: s.checkpointId,
          at: new Date().toISOString(),
          durationMs: Math.round((s.syncMs + s.asyncMs) * 10) / 10,
          bytes: s.bytes,
        });
        if (this.#checkpoints.length > 120) this.#checkpoints.shift();
      },
    };
  }

  /** Poll the job's consumer lag every `everyMs`. */
  watch(job: KafkaRunningJob, everyMs = 2000): void {
    this.#job = job;
    const poll = () => {
      job.lag().then(
        (l) => {
          this.#lag = l;
        },
        () => {},
      );
    };
    poll();
    this.#timer = setInterval(poll, everyMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  json(): unknown {
    const records = new Map((this.#job?.tasks() ?? []).map((t) => [t.scope.taskId, t.recordsIn]));
    return {
      job: this.jobId,
      at: new Date().toISOString(),
      tasks: [...this.#tasks.values()]
        .filter((t) => t.state !== 'stopped')
        .map((t) => ({ ...t, recordsIn: records.get(t.taskId) ?? 0 })),
      checkpoints: this.#checkpoints.slice(-60),
      lag: this.#lag,
    };
  }
}

/** The status page: one HTML file, no dependencies; it polls /status.json every 2 s. */
export const STATUS_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kstate status</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#222}h1{font-size:20px}h2{font-size:16px;margin-top:24px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.running{color:#070}.failed{color:#b00}.starting{color:#a60}svg{background:#fafafa;border:1px solid #ddd}
</style></head><body>
<h1>Job <span id="job">…</span></h1><div id="at"></div>
<h2>Tasks</h2><table id="tasks"><thead><tr><th>task</th><th>state</th><th>restored from</th><th>last checkpoint</th><th>records in</th><th>restarts</th></tr></thead><tbody></tbody></table>
<h2>Recent checkpoints: duration (ms, bars) and size (bytes, line)</h2><svg id="chart" width="720" height="200"></svg>
<h2>Consumer lag</h2><table id="lag"><thead><tr><th>topic</th><th>partition</th><th>position</th><th>end</th><th>lag</th></tr></thead><tbody></tbody></table>
<script>
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
function rows(id, items, cells) {
  document.querySelector('#' + id + ' tbody').innerHTML = items.map((i) => '<tr>' + cells(i).map((c) => '<td>' + c + '</td>').join('') + '</tr>').join('');
}
function chart(cps) {
  const svg = document.getElementById('chart'); const W = 720, H = 200, n = Math.max(cps.length, 1), bw = W / n;
  const maxD = Math.max(1, ...cps.map((c) => c.durationMs)), maxB = Math.max(1, ...cps.map((c) => c.bytes));
  const bars = cps.map((c, i) => { const h = (c.durationMs / maxD) * (H - 20);
    return '<rect class="cp" x="' + (i * bw + 1) + '" y="' + (H - h) + '" width="' + Math.max(1, bw - 2) + '" height="' + h + '" fill="#69c"><title>' + esc(c.taskId + ' #' + c.checkpointId + ': ' + c.durationMs + ' ms, ' + c.bytes + ' B') + '</title></rect>'; });
  const line = cps.map((c, i) => (i * bw + bw / 2) + ',' + (H - (c.bytes / maxB) * (H - 20))).join(' ');
  svg.innerHTML = bars.join('') + '<polyline points="' + line + '" fill="none" stroke="#c60" stroke-width="2"/>' +
    '<text x="4" y="14" font-size="11">max ' + maxD + ' ms / ' + maxB + ' B</text>';
}
async function refresh() {
  try {
    const s = await (await fetch('status.json', { cache: 'no-store' })).json();
    document.getElementById('job').textContent = s.job; document.getElementById('at').textContent = 'updated ' + s.at;
    rows('tasks', s.tasks, (t) => [esc(t.taskId), '<span class="' + esc(t.state) + '">' + esc(t.state) + '</span>', esc(t.restoredFrom ?? '-'), esc(t.lastCheckpoint ?? '-'), esc(t.recordsIn), esc(t.restarts)]);
    rows('lag', s.lag, (l) => [esc(l.topic), esc(l.partition), esc(l.position), esc(l.end), esc(l.lag)]);
    chart(s.checkpoints);
    document.body.dataset.loaded = 'true';
  } catch (e) { document.getElementById('at').textContent = 'cannot reach the service: ' + e; }
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
`;
