import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  isStreamJob,
  JOB_GRAPH_VERSION,
  STREAM_JOB_BRAND,
  StreamError,
  type StreamJob,
} from '../../../framework/index.ts';
import type { ServiceConfig } from './config.ts';

/**
 * A job module exports, as `default` (or as `job`), a StreamJob or a function of the service
 * configuration returning one (possibly async). The StreamJob may come from another copy of kstate
 * (recognised by its brand).
 */
export async function loadJobModule(path: string, config: ServiceConfig): Promise<StreamJob> {
  const url = pathToFileURL(isAbsolute(path) ? path : resolve(path)).href;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (e) {
    throw new StreamError('CONFIG_INVALID', `job module ${path} cannot be loaded: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const exported = mod.default ?? mod.job;
  const job =
    typeof exported === 'function' ? await (exported as (c: ServiceConfig) => unknown)(config) : exported;
  if (!isStreamJob(job)) {
    throw new StreamError(
      'CONFIG_INVALID',
      `job module ${path} does not export a job: export default a StreamJob, or a function (config) => StreamJob`,
    );
  }
  // Recognised by its brand, not instanceof: the module may use another copy of kstate than this
  // runner (framework/datastream/stream-job.ts STREAM_JOB_BRAND), as long as the job-graph contract matches.
  const version = job[STREAM_JOB_BRAND];
  if (version !== JOB_GRAPH_VERSION) {
    throw new StreamError(
      'CONFIG_INVALID',
      `job module ${path} was built with a kstate whose job graph is version ${String(version)}, and this kstate runs version ${JOB_GRAPH_VERSION}: make the job module and the kstate that runs it the same release (npm ls kstate shows the copies)`,
    );
  }
  return job;
}
