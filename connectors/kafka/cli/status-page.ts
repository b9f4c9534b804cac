/**
 * The status page: one self-contained HTML file (no CDN, no library); it polls status.json (see
 * StatusJson in ./status.ts) every 2 s and draws:
 * - who answers (host, pid, worker, consumer-group member) and what the page covers: this
 *   instance's tasks of the job's, or, on the primary of `--workers n`, every worker's;
 * - totals: records in and out per second, late records dropped, failed checkpoints;
 * - one row per task: state, owner, records in/out per second and in all, watermark and its lag
 *   behind the wall clock, late records dropped, restore, checkpoints and their failures;
 * - checkpoint duration and size over time, one line per task (a task's own checkpoints only, so
 *   tasks checkpointing at different phases do not interleave into one zig-zag), failures marked;
 * - recent checkpoint failures with their reason, and consumer lag per partition.
 * Elements carry classes and data attributes the service test reads in headless Chromium.
 */
export const STATUS_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kstate status</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#222}h1{font-size:20px;margin-bottom:4px}h2{font-size:16px;margin-top:24px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}td.task,td.watermark{white-space:nowrap}.muted{color:#777}.why{max-width:360px;font-size:12px}
.running{color:#070}.failed{color:#b00}.starting{color:#a60}svg{background:#fafafa;border:1px solid #ddd}
.legend{display:flex;flex-wrap:wrap;gap:4px 12px;font-size:12px;max-width:900px;margin:4px 0}.legend i{display:inline-block;width:12px;height:3px;margin-right:4px;vertical-align:middle}
#instance,#scope{margin:2px 0}
</style></head><body>
<h1>Job <span id="job">…</span></h1>
<p id="instance"></p><p id="scope"></p><div id="at" class="muted"></div>
<h2>Throughput</h2>
<table id="totals"><thead><tr><th>records in/s</th><th>records out/s</th><th>late records dropped</th><th>failed checkpoints</th><th>tasks</th></tr></thead><tbody></tbody></table>
<h2>Tasks</h2>
<table id="tasks"><thead><tr><th>task</th><th>state</th><th>owner</th><th>in/s</th><th>out/s</th><th>records in</th><th>records out</th><th>watermark</th><th>watermark lag</th><th>late dropped</th><th>restored from</th><th>last checkpoint</th><th>failed checkpoints</th><th>last checkpoint failure</th><th>restarts</th></tr></thead><tbody></tbody></table>
<h2>Checkpoint duration per task (ms; red marks: failed checkpoints)</h2>
<div id="legend" class="legend"></div><svg id="durations" width="900" height="220"></svg>
<h2>Checkpoint size per task (bytes)</h2><svg id="sizes" width="900" height="160"></svg>
<h2>Recent checkpoint failures</h2>
<table id="failures"><thead><tr><th>time</th><th>task</th><th>checkpoint</th><th>reason</th></tr></thead><tbody></tbody></table>
<h2>Consumer lag</h2><table id="lag"><thead><tr><th>topic</th><th>partition</th><th>position</th><th>end</th><th>lag</th></tr></thead><tbody></tbody></table>
<script>
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
const num = (x, d = 0) => Number(x).toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const time = (ms) => new Date(ms).toISOString().slice(11, 19);
function span(ms) {
  if (ms < 1000) return num(ms) + ' ms';
  for (const [unit, size] of [['d', 86400000], ['h', 3600000], ['min', 60000], ['s', 1000]]) if (ms >= size) return num(ms / size, 1) + ' ' + unit;
}
const WALL_CLOCK_EPOCH = 946684800000;
function watermark(t) {
  if (t.watermark === null) return '<span class="muted">none yet</span>';
  if (t.watermark >= WALL_CLOCK_EPOCH) return esc(new Date(t.watermark).toISOString());
  return '<span title="event time before 2000: not a wall-clock time, so no lag is shown">' + esc(num(t.watermark)) + '</span>';
}
function owner(o) {
  const where = o.host + ':' + o.pid + (o.worker !== undefined ? ' worker ' + o.worker : '');
  return '<span class="owner" title="' + esc('member ' + (o.memberId ?? '(not joined yet)')) + '">' + esc(where) + '</span>' +
    '<br><span class="member muted">' + esc(o.memberId ?? 'not joined yet') + '</span>';
}
function rows(id, items, cells) {
  document.querySelector('#' + id + ' tbody').innerHTML = items.map((i) => '<tr>' + cells(i).join('') + '</tr>').join('');
}
const td = (v, cls = '', data) => '<td' + (cls ? ' class="' + cls + '"' : '') + (data !== undefined ? ' data-value="' + esc(data) + '"' : '') + '>' + v + '</td>';
const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const color = (i, n) => n <= PALETTE.length ? PALETTE[i] : 'hsl(' + Math.round((i * 360) / n) + ',65%,45%)';
/** One polyline per task over a shared time axis; value(p) is the y of a checkpoint. */
function chart(id, series, value, unit, failures) {
  const svg = document.getElementById(id); const W = +svg.getAttribute('width'), H = +svg.getAttribute('height');
  const L = 56, R = 8, T = 14, B = 18;
  const all = series.flatMap(([, ps]) => ps);
  const ats = [...all.map((p) => p.at), ...failures.map((f) => f.at)];
  if (ats.length === 0) { svg.innerHTML = '<text x="8" y="20" font-size="12">no checkpoint yet</text>'; return; }
  let t0 = Math.min(...ats), t1 = Math.max(...ats); if (t1 - t0 < 2000) { t0 -= 1000; t1 += 1000; }
  const max = Math.max(1, ...all.map(value));
  const x = (at) => L + ((at - t0) / (t1 - t0)) * (W - L - R), y = (v) => H - B - (v / max) * (H - T - B);
  let out = '<line x1="' + L + '" y1="' + (H - B) + '" x2="' + (W - R) + '" y2="' + (H - B) + '" stroke="#999"/>' +
    '<text x="4" y="' + (T + 4) + '" font-size="11">' + esc(num(max, max < 10 ? 1 : 0) + ' ' + unit) + '</text>' +
    '<text x="4" y="' + (H - B) + '" font-size="11">0</text>' +
    '<text x="' + L + '" y="' + (H - 4) + '" font-size="11">' + time(t0) + '</text>' +
    '<text x="' + (W - R - 50) + '" y="' + (H - 4) + '" font-size="11">' + time(t1) + '</text>';
  series.forEach(([task, ps], i) => {
    const c = color(i, series.length);
    out += '<polyline class="series" data-task="' + esc(task) + '" data-points="' + ps.length + '" fill="none" stroke="' + c + '" stroke-width="1.5" points="' +
      ps.map((p) => x(p.at).toFixed(1) + ',' + y(value(p)).toFixed(1)).join(' ') + '"/>';
    for (const p of ps) out += '<circle class="pt" cx="' + x(p.at).toFixed(1) + '" cy="' + y(value(p)).toFixed(1) + '" r="2.5" fill="' + c + '"><title>' +
      esc(task + ' #' + p.id + (p.savepoint ? ' (savepoint ' + p.savepoint + ')' : '') + ' at ' + time(p.at) + ': ' + num(p.durationMs, 1) + ' ms, ' + num(p.bytes) + ' B') + '</title></circle>';
  });
  for (const f of failures) out += '<text class="failure" x="' + (x(f.at) - 4).toFixed(1) + '" y="' + (T + 2) + '" fill="#c00" font-size="13" font-weight="bold">×<title>' +
    esc(f.taskId + ' checkpoint ' + f.checkpointId + ' failed at ' + time(f.at) + ': ' + f.reason) + '</title></text>';
  svg.innerHTML = out;
}
function render(s) {
  document.getElementById('job').textContent = s.job || '(no worker answered)';
  const me = s.instance;
  document.getElementById('instance').innerHTML = s.scope === 'workers'
    ? 'Primary process <b>' + esc(me.host + ':' + me.pid) + '</b> of <b>' + esc(me.workers) + '</b> workers (' + esc(s.answered ?? 0) + ' answered); each worker is a member of consumer group <b>' + esc(s.job) + '</b>.'
    : 'Instance <b>' + esc(me.host + ':' + me.pid) + '</b>' + (me.worker !== undefined ? ', worker ' + esc(me.worker) : '') + ', consumer-group member <b class="member-id">' + esc(me.memberId ?? '(not joined yet)') + '</b>.';
  const all = s.tasks.length >= s.jobTasks;
  document.getElementById('scope').innerHTML = '<span id="scope-text">' + (s.scope === 'workers'
    ? 'This page shows the tasks of all workers of this process: ' + s.tasks.length + ' of the job\\'s ' + s.jobTasks + ' tasks' + (all ? '.' : '; the others run in other instances of the job, each with its own page.')
    : all ? 'This page shows this instance\\'s tasks: all ' + s.jobTasks + ' tasks of the job run here.'
      : 'This page shows this instance\\'s tasks only: ' + s.tasks.length + ' of the job\\'s ' + s.jobTasks + ' tasks. The others run in other members of the consumer group, each with its own status page.') + '</span>';
  document.getElementById('at').textContent = 'updated ' + s.at;
  const running = s.tasks.filter((t) => t.state === 'running').length;
  rows('totals', [s.totals], (t) => [td(num(t.inPerSec, 1), 'n in-rate', t.inPerSec), td(num(t.outPerSec, 1), 'n out-rate', t.outPerSec),
    td(num(t.lateDropped), 'n late', t.lateDropped), td(num(t.checkpointsFailed), 'n cp-failed', t.checkpointsFailed), td(running + ' running of ' + s.tasks.length, 'n')]);
  const tasks = [...s.tasks].sort((a, b) => a.taskId.localeCompare(b.taskId, 'en', { numeric: true }));
  rows('tasks', tasks, (t) => [td(esc(t.taskId), 'task'), td('<span class="' + esc(t.state) + '">' + esc(t.state) + '</span>'), td(owner(t.owner)),
    td(num(t.inPerSec, 1), 'n in-rate', t.inPerSec), td(num(t.outPerSec, 1), 'n out-rate', t.outPerSec), td(num(t.recordsIn), 'n'), td(num(t.recordsOut), 'n'),
    td(watermark(t), 'watermark', t.watermark ?? ''), td(t.watermarkLagMs === null ? '<span class="muted">-</span>' : esc(span(t.watermarkLagMs)), 'n wm-lag', t.watermarkLagMs ?? ''),
    td(num(t.lateDropped), 'n late', t.lateDropped), td(esc(t.restoredFrom ?? '-'), 'n'), td(esc(t.lastCheckpoint ?? '-'), 'n'),
    td(num(t.checkpointsFailed), 'n cp-failed', t.checkpointsFailed),
    td(t.lastCheckpointFailure ? esc('#' + t.lastCheckpointFailure.checkpointId + ' at ' + time(t.lastCheckpointFailure.at) + ': ' + t.lastCheckpointFailure.reason) : '-', 'why'),
    td(esc(t.restarts) + (t.lastFailure ? '<br><span class="why muted">' + esc(t.lastFailure) + '</span>' : ''), 'n')]);
  const series = Object.entries(s.checkpoints).sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }));
  document.getElementById('legend').innerHTML = series.map(([task], i) => '<span class="legend-item"><i style="background:' + color(i, series.length) + '"></i>' + esc(task) + '</span>').join('');
  chart('durations', series, (p) => p.durationMs, 'ms', s.failures);
  chart('sizes', series, (p) => p.bytes, 'B', []);
  rows('failures', [...s.failures].reverse(), (f) => [td(time(f.at)), td(esc(f.taskId)), td(esc(f.checkpointId), 'n'), td(esc(f.reason), 'why')]);
  rows('lag', s.lag, (l) => [td(esc(l.topic)), td(esc(l.partition), 'n'), td(esc(l.position), 'n'), td(esc(l.end), 'n'), td(esc(l.lag), 'n')]);
}
async function refresh() {
  try {
    render(await (await fetch('status.json', { cache: 'no-store' })).json());
    document.body.dataset.loaded = 'true';
  } catch (e) { document.getElementById('at').textContent = 'cannot reach the service: ' + e; }
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
`;
