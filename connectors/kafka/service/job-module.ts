import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { StreamError, StreamJob } from '../../../framework/index.ts';
import type { ServiceConfig } from './config.ts';

/**
 * A job module exports, as `default` (or as `job`), a StreamJob or a function of the service
 * configuration returning one (possibly async).
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
  if (!(job instanceof StreamJob)) {
    throw new StreamError(
      'CONFIG_INVALID',
      `job module ${path} does not export a job: export default a StreamJob, or a function (config) => StreamJob`,
    );
  }
  return job;
}
