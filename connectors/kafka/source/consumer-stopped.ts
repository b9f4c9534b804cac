import type { StreamError } from '../../../framework/index.ts';
import { kafkaError } from '../errors.ts';
import type { Consumer } from '../internal/kafkajs.ts';

/**
 * Calls `onStopped` once if kafkajs stops `consumer` for good. kafkajs restarts a consumer after a
 * retriable error, but after a non-retriable one (a fenced group.instance.id, a session timeout the
 * brokers refuse, missing authorization) it emits CRASH with `restart: false` and fetches nothing more,
 * while the process lives on. Whoever reads through such a consumer must fail its tasks then, rather
 * than wait for records that will not come. The error is classified as every Kafka error is
 * (`kafkaError`), its "what failed" being `what`.
 */
export function onConsumerStopped(
  consumer: Pick<Consumer, 'on' | 'events'>,
  what: string,
  onStopped: (error: StreamError) => void,
): void {
  let stopped = false;
  consumer.on(consumer.events.CRASH, (e) => {
    if (e.payload.restart || stopped) return;
    stopped = true;
    onStopped(kafkaError(what, e.payload.error));
  });
}
