import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { afterEach, test } from 'node:test';
import { ShutdownSignals } from './signals.ts';

const installed: ShutdownSignals[] = [];
afterEach(() => {
  for (const s of installed.splice(0)) s.uninstall();
});

/** Signals come from a stand-in for `process` (emitting on the real one would reach the test runner). */
const proc = new EventEmitter();

function signals() {
  const exits: number[] = [];
  const s = new ShutdownSignals({
    exit: (code) => exits.push(code),
    process: proc as unknown as NodeJS.Process,
  }).install();
  installed.push(s);
  return { s, exits };
}

test('a signal before the stop is attached is remembered and runs the stop once attached', () => {
  const { s, exits } = signals();
  assert.equal(s.requested, undefined);
  proc.emit('SIGTERM', 'SIGTERM');
  assert.equal(s.requested, 'SIGTERM');
  const stops: string[] = [];
  s.onStop((sig) => stops.push(sig));
  assert.deepEqual(stops, ['SIGTERM']);
  assert.deepEqual(exits, []);
});

test('the second signal, before or after the stop is attached, exits 130 at once', () => {
  const early = signals();
  proc.emit('SIGTERM', 'SIGTERM');
  proc.emit('SIGINT', 'SIGINT');
  assert.deepEqual(early.exits, [130]);
  early.s.uninstall();

  const late = signals();
  const said: string[] = [];
  late.s.onStop(
    (sig) => said.push(`stop ${sig}`),
    (sig) => said.push(`second ${sig}`),
  );
  proc.emit('SIGINT', 'SIGINT');
  proc.emit('SIGTERM', 'SIGTERM');
  assert.deepEqual(said, ['stop SIGINT', 'second SIGTERM']);
  assert.deepEqual(late.exits, [130]);
});

test("a worker's stop request and one group-wide signal count once; a further signal forces", () => {
  const { s, exits } = signals();
  const stops: string[] = [];
  s.onStop((sig) => stops.push(sig));
  proc.emit('message', { kstate: 'stop' }); // the primary's message
  proc.emit('SIGTERM', 'SIGTERM'); // the same SIGTERM, sent to the process group
  assert.deepEqual([stops, exits], [['SIGTERM'], []]);
  proc.emit('SIGTERM', 'SIGTERM');
  assert.deepEqual(exits, [130]);
});

test('the deadline runs after the first signal, from when it is set if the signal came first', async () => {
  const { s } = signals();
  let fired = false;
  proc.emit('SIGTERM', 'SIGTERM');
  await new Promise<void>((resolve) => {
    s.deadline(5, () => {
      fired = true;
      resolve();
    });
  });
  assert.ok(fired);
});
