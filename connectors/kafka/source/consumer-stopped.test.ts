import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import type { StreamError } from '../../../framework/index.ts';
import type { Consumer } from '../internal/kafkajs.ts';
import { onConsumerStopped } from './consumer-stopped.ts';

// kafkajs's CRASH event, as its consumer emits it (consumer/index.js onCrash). A fake emitter: this
// tests our reaction only; a real consumer stopped for good is in test/cli/startup.test.ts and
// test/crash/static-membership.test.ts.
function fakeConsumer(): {
  consumer: Pick<Consumer, 'on' | 'events'>;
  crash(error: unknown, restart: boolean): void;
} {
  const emitter = new EventEmitter();
  const consumer = {
    events: { CRASH: 'consumer.crash' },
    on: (event: string, listener: (e: unknown) => void) => {
      emitter.on(event, listener);
      return () => emitter.off(event, listener);
    },
  } as unknown as Pick<Consumer, 'on' | 'events'>;
  return {
    consumer,
    crash: (error, restart) =>
      emitter.emit('consumer.crash', { type: 'consumer.crash', payload: { error, groupId: 'g', restart } }),
  };
}

function protocolError(type: string, retriable: boolean): Error {
  return Object.assign(new Error(`${type.toLowerCase()}`), { name: 'KafkaJSProtocolError', type, retriable });
}

test('a consumer kafkajs restarts is not reported; one it stopped for good is, once, classified', () => {
  const { consumer, crash } = fakeConsumer();
  const stopped: StreamError[] = [];
  onConsumerStopped(consumer, 'the consumer of group g stopped', (e) => stopped.push(e));
  crash(protocolError('REBALANCE_IN_PROGRESS', true), true);
  assert.equal(stopped.length, 0);
  crash(protocolError('INVALID_SESSION_TIMEOUT', false), false);
  crash(protocolError('FENCED_INSTANCE_ID', false), false);
  assert.equal(stopped.length, 1);
  const e = stopped[0]!;
  assert.equal(e.code, 'CONFIG_INVALID');
  assert.match(
    e.message,
    /^the consumer of group g stopped: invalid_session_timeout \[INVALID_SESSION_TIMEOUT\]: /,
  );
  assert.match(e.message, /group\.max\.session\.timeout\.ms/);
});

test('an error kafkajs does not retry and we do not know is reported as a failed request', () => {
  const { consumer, crash } = fakeConsumer();
  const stopped: StreamError[] = [];
  onConsumerStopped(consumer, 'the consumer of broadcast topic(s) rules stopped', (e) => stopped.push(e));
  crash(new Error('thrown from eachBatch'), false);
  assert.equal(stopped.length, 1);
  assert.equal(stopped[0]!.code, 'KAFKA_REQUEST_FAILED');
  assert.match(stopped[0]!.message, /rules stopped: thrown from eachBatch/);
});
