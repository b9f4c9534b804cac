/**
 * node scripts/registry/cli.ts fetch   build (cache) the registry only
 * node scripts/registry/cli.ts start   start a registry and keep it until Ctrl-C
 */
import { formatRegistryHarnessError } from './errors.ts';
import { ensureRegistryInstalled } from './install.ts';
import { startRegistry } from './registry.ts';

const log = (line: string) => process.stderr.write(`registry harness: ${line}\n`);

async function main(argv: readonly string[]): Promise<number> {
  switch (argv[0]) {
    case 'fetch': {
      const install = await ensureRegistryInstalled({ log });
      log(
        install.fetched
          ? `Apicurio Registry ${install.version} is ready in ${install.appDir} (built in ${install.fetchMs} ms)`
          : `Apicurio Registry ${install.version} is already cached in ${install.appDir}`,
      );
      return 0;
    }
    case 'start': {
      const registry = await startRegistry({ log });
      process.stdout.write(`SCHEMA_REGISTRY_URL=${registry.url}\n`);
      log(
        `Apicurio Registry ${registry.version} answers on ${registry.url} (pid ${registry.pid}), started in ${registry.startMs} ms` +
          (registry.fetchMs > 0 ? ` including a ${registry.fetchMs} ms build` : ''),
      );
      log(`log: ${registry.logFile}; its dir is removed on exit. Ctrl-C stops it.`);
      // The signal handlers installed by startRegistry stop it and exit; keep the loop alive until then.
      setInterval(() => undefined, 1 << 30);
      return await new Promise<number>(() => undefined);
    }
    default:
      process.stderr.write('usage: node scripts/registry/cli.ts fetch|start\n');
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`${formatRegistryHarnessError(error)}\n`);
    process.exitCode = 1;
  },
);
