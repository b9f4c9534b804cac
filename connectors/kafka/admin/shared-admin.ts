import { kafkaError } from '../errors.ts';
import type { Admin, Kafka } from '../internal/kafkajs.ts';

/** A use of the shared admin client; `release` once when done (later calls do nothing). */
export interface AdminLease {
  readonly admin: Admin;
  release(): Promise<void>;
}

interface Entry {
  readonly admin: Admin;
  readonly connected: Promise<void>;
  refs: number;
}

const shared = new WeakMap<Kafka, Entry>();

/**
 * One connected admin client per `Kafka` object (one per instance: runKafkaJob creates one), shared by
 * whoever leases it, so that 128 tasks reading their committed checkpoints open one admin connection,
 * not 128. Created and connected on the first lease, disconnected when the last lease is released; a
 * failed connect is not cached (the next lease tries again).
 */
export async function leaseAdmin(kafka: Kafka): Promise<AdminLease> {
  let entry = shared.get(kafka);
  if (!entry) {
    const admin = kafka.admin();
    const created: Entry = { admin, connected: admin.connect(), refs: 0 };
    shared.set(kafka, created);
    entry = created;
    created.connected.catch(() => {
      if (shared.get(kafka) === created) shared.delete(kafka);
    });
  }
  const e = entry;
  e.refs++;
  try {
    await e.connected;
  } catch (err) {
    e.refs--;
    throw kafkaError('connecting the admin client', err);
  }
  let released = false;
  return {
    admin: e.admin,
    async release() {
      if (released) return;
      released = true;
      if (--e.refs > 0) return;
      if (shared.get(kafka) === e) shared.delete(kafka);
      await e.admin.disconnect().catch(() => {});
    },
  };
}
