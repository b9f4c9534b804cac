import cluster, { type Worker } from 'node:cluster';

/**
 * Requests from the primary of `kstate run --workers n` to its workers, over the cluster's IPC
 * channel, and their answers (the status page, status-workers.ts; savepoints, savepoint-workers.ts;
 * interactive queries, query-workers.ts).
 *
 * Protocol: primary -> worker `{ kstate: '<kind>?', id, ...request }`; worker -> primary
 * `{ kstate: '<kind>', id, ...answer }`. Only the workers connected when asked are waited for.
 */

/** Worker side: answer every request of `kind` with `answer(request)` (its fields). */
export function answerPrimary(
  kind: string,
  answer: (request: Record<string, unknown>) => Record<string, unknown> | Promise<Record<string, unknown>>,
): void {
  if (!cluster.isWorker) return;
  process.on('message', (m: unknown) => {
    const msg = m as ({ kstate?: unknown; id?: unknown } & Record<string, unknown>) | null;
    if (msg?.kstate !== `${kind}?`) return;
    const id = msg.id;
    void Promise.resolve()
      .then(() => answer(msg))
      .then(
        (a) => process.send?.({ ...a, kstate: kind, id }),
        (e: unknown) => process.send?.({ error: String(e), kstate: kind, id }),
      );
  });
}

let nextRequest = 0;
let nextOne = 0;

/**
 * Primary side: send `request` of `kind` to every connected worker (or, with `one`, to one of them,
 * taking turns among those `prefer` takes, if any) and collect the answers that `accept` takes
 * (undefined: not one) within `timeoutMs`. `asked`: how many workers were asked.
 */
export function askWorkers<A>(
  kind: string,
  request: Record<string, unknown>,
  timeoutMs: number,
  accept: (answer: Record<string, unknown>) => A | undefined,
  o: { one?: boolean; prefer?: (worker: Worker) => boolean } = {},
): Promise<{ answers: A[]; asked: number }> {
  const connected = Object.values(cluster.workers ?? {}).filter(
    (w): w is Worker => w?.isConnected() === true,
  );
  let workers = connected;
  if (o.one === true && connected.length > 0) {
    const preferred = o.prefer === undefined ? [] : connected.filter(o.prefer);
    const from = preferred.length > 0 ? preferred : connected;
    workers = [from[nextOne++ % from.length]!];
  }
  if (workers.length === 0) return Promise.resolve({ answers: [], asked: 0 });
  const id = ++nextRequest;
  const answers = new Map<number, A>();
  const asked = new Set(workers.map((w) => w.id));
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      cluster.off('message', onMessage);
      resolve({ answers: [...answers.values()], asked: workers.length });
    };
    const onMessage = (
      worker: Worker,
      msg: ({ kstate?: unknown; id?: unknown } & Record<string, unknown>) | null,
    ) => {
      if (msg?.kstate !== kind || msg.id !== id || !asked.has(worker.id)) return;
      const a = accept(msg);
      if (a === undefined) return;
      answers.set(worker.id, a);
      if (answers.size === workers.length) done();
    };
    const timer = setTimeout(done, timeoutMs);
    cluster.on('message', onMessage);
    for (const w of workers) w.send({ ...request, kstate: `${kind}?`, id });
  });
}
