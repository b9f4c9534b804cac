/**
 * Does a Kafka cluster really answer? A kafkajs admin that fetches cluster metadata (which lists only
 * brokers that have registered and been unfenced) is the check, so "answers" means a client can use it.
 */
import { Kafka, logLevel } from '../internal/kafkajs.ts';
import { HarnessError } from './errors.ts';

export type ProbeResult =
  | { readonly ok: true; readonly brokerCount: number; readonly controller: number | null }
  | { readonly ok: false; readonly reason: string };

/** One attempt, bounded by `timeoutMs`; never throws. */
export async function probeBrokers(brokers: string, timeoutMs = 5_000): Promise<ProbeResult> {
  const list = brokers
    .split(',')
    .map((b) => b.trim())
    .filter((b) => b !== '');
  if (list.length === 0) return { ok: false, reason: 'no broker address given' };
  const kafka = new Kafka({
    clientId: 'kstate-harness-probe',
    brokers: list,
    logLevel: logLevel.NOTHING,
    connectionTimeout: Math.min(timeoutMs, 3_000),
    requestTimeout: timeoutMs,
    retry: { retries: 0 },
  });
  const admin = kafka.admin();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<ProbeResult>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, reason: `no answer within ${timeoutMs} ms` }), timeoutMs);
  });
  const attempt = (async (): Promise<ProbeResult> => {
    try {
      await admin.connect();
      const cluster = await admin.describeCluster();
      if (cluster.brokers.length === 0) return { ok: false, reason: 'cluster metadata lists no broker yet' };
      return { ok: true, brokerCount: cluster.brokers.length, controller: cluster.controller };
    } catch (error) {
      return { ok: false, reason: error instanceof Error ? error.message : String(error) };
    }
  })();
  try {
    return await Promise.race([attempt, timeout]);
  } finally {
    clearTimeout(timer);
    await admin.disconnect().catch(() => undefined);
  }
}

/** Polls until the cluster answers or `deadline` (a `performance.now()` value) passes. */
export async function waitForBrokers(
  brokers: string,
  deadline: number,
  shouldStop: () => string | undefined = () => undefined,
): Promise<ProbeResult> {
  let last: ProbeResult = { ok: false, reason: 'not tried' };
  for (;;) {
    const stop = shouldStop();
    if (stop !== undefined) return { ok: false, reason: stop };
    const left = deadline - performance.now();
    if (left <= 0) return last;
    last = await probeBrokers(brokers, Math.max(200, Math.min(3_000, left)));
    if (last.ok) return last;
    await new Promise((resolve) =>
      setTimeout(resolve, Math.min(200, Math.max(0, deadline - performance.now()))),
    );
  }
}

/** For a cluster the user named in KAFKA_BROKERS: resolves if it answers, else one clear line. */
export async function requireAnswer(brokers: string): Promise<{ brokerCount: number }> {
  const answer = await probeBrokers(brokers, 10_000);
  if (!answer.ok) {
    throw new HarnessError(
      'BROKERS_UNREACHABLE',
      `KAFKA_BROKERS=${brokers} does not answer: ${answer.reason}. Unset it to let the harness start a broker, or start your cluster`,
    );
  }
  return { brokerCount: answer.brokerCount };
}
