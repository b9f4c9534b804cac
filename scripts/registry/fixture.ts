/**
 * For test files: the registry named by SCHEMA_REGISTRY_URL (checked), or one started for the file and
 * stopped by `release()`. `npm run test:kafka` sets only KAFKA_BROKERS, so each registry test file
 * starts its own (about 2 s) unless SCHEMA_REGISTRY_URL is set, e.g. by with-registry.ts.
 */
import { type RunningRegistry, requireRegistry, startRegistry } from './registry.ts';

export interface TestRegistry {
  /** Base URL of the Confluent-compatible API. */
  readonly url: string;
  /** The registry this file started, if it did. */
  readonly started: RunningRegistry | undefined;
  release(): Promise<void>;
}

export async function registryForTests(): Promise<TestRegistry> {
  const external = process.env.SCHEMA_REGISTRY_URL?.trim();
  if (external !== undefined && external !== '') {
    await requireRegistry(external);
    return { url: external.replace(/\/+$/, ''), started: undefined, release: async () => undefined };
  }
  // exit hook + watchdog clean up after a crash of the test process; signals are the runner's business.
  const started = await startRegistry({ exitOnSignal: false });
  return { url: started.url, started, release: () => started.stop() };
}
