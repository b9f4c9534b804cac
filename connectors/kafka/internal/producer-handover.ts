/**
 * A transactional producer's identity (producer id and epoch) handed from one kafkajs producer to
 * another of the same transactional id, so that the second takes it over instead of asking the
 * coordinator again. The Kafka sinks' producer thread (./producer-thread.ts) fences on the task's
 * thread, whose kafkajs is loaded when the task starts, and its thread's producer takes over the
 * fence's identity: the task reads its committed position without waiting for the thread to load.
 *
 * Why not simply InitProducerId again on the thread: each InitProducerId bumps the epoch, fencing
 * whoever holds the id, and the task reads its position between the two. A previous owner that
 * fenced the first producer and committed in between would itself be fenced by the second
 * InitProducerId, its commit already counted in the position the task read before it: the task
 * would emit that interval again. With the identity taken over, such a previous owner fences the
 * task's producer instead, whose first commit fails (KAFKA_TRANSACTION_LOST) and the task restarts.
 *
 * How: kafkajs keeps the identity in its transaction manager's closure, set only from the answer of
 * `Broker#initProducerId`. This module wraps that method (once per kafkajs, so once per thread; this
 * module is loaded by ./kafkajs.ts) to
 * - remember the answer for a transactional id that `watchIdentity` named, for `takeIdentity`;
 * - answer with the identity `handIdentity` gave for a transactional id, once, without a request.
 */
import { createRequire } from 'node:module';

/** What InitProducerId answers (kafkajs: the id as a decimal string). */
export interface ProducerIdentity {
  readonly producerId: string;
  readonly producerEpoch: number;
}

/** Transactional ids whose next answer is kept (undefined: not answered yet). */
const watched = new Map<string, ProducerIdentity | undefined>();
/** Identities to answer with instead of a request, once each. */
const handed = new Map<string, ProducerIdentity>();

/** Keep the next InitProducerId answer for `transactionalId` (on this thread), for `takeIdentity`. */
export function watchIdentity(transactionalId: string): void {
  watched.set(transactionalId, undefined);
}

/** The identity kept for `transactionalId` since `watchIdentity`, if one was answered; stops watching. */
export function takeIdentity(transactionalId: string): ProducerIdentity | undefined {
  const id = watched.get(transactionalId);
  watched.delete(transactionalId);
  return id;
}

/** The next InitProducerId for `transactionalId` on this thread answers `identity` without a request. */
export function handIdentity(transactionalId: string, identity: ProducerIdentity): void {
  handed.set(transactionalId, identity);
}

/** Forget `identity` if it is still handed for `transactionalId` (its producer disconnected first). */
export function dropIdentity(transactionalId: string, identity: ProducerIdentity): void {
  if (handed.get(transactionalId) === identity) handed.delete(transactionalId);
}

interface InitRequest {
  readonly transactionalId?: string;
  readonly transactionTimeout?: number;
}
type InitProducerId = (this: unknown, request: InitRequest) => Promise<ProducerIdentity>;

const installed = Symbol.for('kstate.producerHandover');

/** Wrap `Broker.prototype.initProducerId` of kafkajs (idempotent). Exported for the test. */
export function installHandover(Broker: { prototype: { initProducerId: InitProducerId } }): void {
  const proto = Broker.prototype as { initProducerId: InitProducerId; [installed]?: true };
  if (proto[installed]) return;
  const init = proto.initProducerId;
  proto.initProducerId = async function (request) {
    const tid = request.transactionalId;
    if (tid === undefined) return init.call(this, request);
    const given = handed.get(tid);
    if (given !== undefined) {
      handed.delete(tid);
      return { ...given, errorCode: 0, throttleTime: 0 } as ProducerIdentity;
    }
    const answer = await init.call(this, request);
    if (watched.has(tid))
      watched.set(tid, { producerId: answer.producerId, producerEpoch: answer.producerEpoch });
    return answer;
  };
  proto[installed] = true;
}

const require = createRequire(import.meta.url);
installHandover(require(require.resolve('kafkajs/src/broker/index.js')));
