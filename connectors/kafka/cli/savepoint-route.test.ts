/**
 * POST /savepoint's answers by cause (./savepoint-route.ts), on a fake running job and storage: 400 a
 * bad name, 409 taken or being taken, 503 not running / declined / failed, and no body carries the
 * error's message (a checkpoint path). No broker.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StreamError } from '../../../framework/index.ts';
import type { KafkaRunningJob } from '../run-kafka-job.ts';
import { savepointRoute } from './savepoint-route.ts';

const PATH = '/srv/kstate/checkpoints/job/t-p0/savepoints/sp.json';

function fakeJob(savepoint: (name: string) => Promise<unknown[]>, tasks = ['t-p0', 't-p1']) {
  return {
    tasks: () => tasks.map((taskId) => ({ scope: { jobId: 'job', taskId } })),
    savepoint,
  } as unknown as KafkaRunningJob;
}

const ask = (route: ReturnType<typeof savepointRoute>, name: string | undefined) =>
  route({
    method: 'POST',
    query: new URLSearchParams(name === undefined ? {} : { name }),
  });

test('answers by cause; bodies hold no error message', async () => {
  const taken = new Set<string>(['old']);
  const failures: string[] = [];
  let next: () => Promise<unknown[]> = async () => [{ taskId: 't-p0' }, { taskId: 't-p1' }];
  let release: () => void = () => {};
  const route = savepointRoute({
    jobId: 'job',
    running: () => fakeJob(() => next()),
    storage: () => ({
      listSavepoints: async ({ taskId }) =>
        taken.has('old') && taskId === 't-p1' ? [{ savepoint: 'old' } as never] : [],
    }),
    onFailed: (name) => failures.push(name),
  });
  const bodies: string[] = [];
  const check = async (name: string | undefined, status: number, error?: RegExp) => {
    const a = await ask(route, name);
    bodies.push(a.body);
    assert.equal(a.status, status, a.body);
    if (error) assert.match(JSON.parse(a.body).error, error);
    return a;
  };

  await check(undefined, 400, /needs a name/);
  await check('../etc/passwd', 400, /is not a savepoint name/);
  await check('.hidden', 400, /not starting with "."/);
  await check('x'.repeat(201), 400, /1-200 characters/);
  await check('old', 409, /savepoint 'old' exists already \(task t-p1\)/);
  const ok = await check('sp', 200);
  assert.deepEqual(JSON.parse(ok.body), { savepoint: 'sp', tasks: ['t-p0', 't-p1'] });

  // One being taken: a second request for the name is 409 until the first ends.
  next = () =>
    new Promise((r) => {
      release = () => r([{ taskId: 't-p0' }]);
    });
  const first = ask(route, 'slow');
  await check('slow', 409, /is being taken now/);
  release();
  assert.equal((await first).status, 200);

  next = () =>
    Promise.reject(
      new StreamError('CHECKPOINT_DECLINED', `savepoint 'd': task t-p0 waits to restart (${PATH})`),
    );
  const declined = await check('d', 503, /declined: a task waits to restart/);
  assert.equal(declined.headers?.['retry-after'], '5');
  assert.equal(JSON.parse(declined.body).code, 'CHECKPOINT_DECLINED');
  next = () => Promise.reject(new StreamError('CHECKPOINT_STORAGE_FAILED', `cannot write ${PATH}: EIO`));
  await check(
    'e',
    503,
    /savepoint 'e' failed \(CHECKPOINT_STORAGE_FAILED, docs\/errors\.md\): the service log/,
  );
  next = () => Promise.reject(new Error(`ENOSPC writing ${PATH}`));
  await check('f', 503, /savepoint 'f' failed: the service log has the details/);
  assert.deepEqual(failures, ['d', 'e', 'f']);
  for (const b of bodies) assert.ok(!b.includes('/srv'), `a body names a server path: ${b}`);
});

test('503 while the job starts or no task runs here', async () => {
  const starting = savepointRoute({ jobId: 'job', running: () => undefined, storage: () => undefined });
  const a = await ask(starting, 'sp');
  assert.equal(a.status, 503);
  assert.match(JSON.parse(a.body).error, /still starting/);
  const idle = savepointRoute({
    jobId: 'job',
    running: () => fakeJob(async () => [], []),
    storage: () => ({ listSavepoints: async () => [] }),
  });
  const b = await ask(idle, 'sp');
  assert.equal(b.status, 503);
  assert.match(JSON.parse(b.body).error, /no task runs on this instance/);
});
