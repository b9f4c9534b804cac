/**
 * node scripts/registry/with-registry.ts <command...>
 *
 * Runs the command with SCHEMA_REGISTRY_URL naming a Confluent-compatible schema registry that answers,
 * and exits with its exit code. If SCHEMA_REGISTRY_URL is set, that registry is checked and used as is;
 * otherwise a harness registry is started for the command and stopped after it, whatever happens.
 * Combine with the broker: `node scripts/kafka/with-broker.ts node scripts/registry/with-registry.ts ...`.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { stopAll } from '../../connectors/kafka/local/processes.ts';
import { formatRegistryHarnessError } from './errors.ts';
import { requireRegistry, startRegistry } from './registry.ts';

const log = (line: string) => process.stderr.write(`registry harness: ${line}\n`);

let child: ReturnType<typeof spawn> | undefined;
let signalled: NodeJS.Signals | undefined;

function exitCodeOf(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}

function onSignal(signal: NodeJS.Signals): void {
  if (child !== undefined && child.exitCode === null && child.signalCode === null) {
    signalled ??= signal;
    child.kill(signal);
    return;
  }
  void stopAll().then(() => process.exit(exitCodeOf(signal)));
}

function run(command: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [file, ...args] = command;
  if (file === undefined) return Promise.resolve(2);
  return new Promise((resolve) => {
    child = spawn(file, args, { stdio: 'inherit', env });
    child.once('error', (error) => {
      log(`could not run ${file}: ${error.message}`);
      resolve(127);
    });
    child.once('exit', (code, signal) => resolve(code ?? (signal === null ? 1 : exitCodeOf(signal))));
  });
}

async function main(command: readonly string[]): Promise<number> {
  if (command.length === 0) {
    process.stderr.write('usage: node scripts/registry/with-registry.ts <command> [args...]\n');
    return 2;
  }
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
  const external = process.env.SCHEMA_REGISTRY_URL?.trim();
  if (external !== undefined && external !== '') {
    await requireRegistry(external);
    log(`using SCHEMA_REGISTRY_URL=${external}`);
    return await run(command, process.env);
  }
  const registry = await startRegistry({ exitOnSignal: false, log });
  log(
    `Apicurio Registry ${registry.version} started in ${registry.startMs} ms` +
      (registry.fetchMs > 0 ? ` (including a ${registry.fetchMs} ms build)` : '') +
      `: SCHEMA_REGISTRY_URL=${registry.url}`,
  );
  try {
    return await run(command, { ...process.env, SCHEMA_REGISTRY_URL: registry.url });
  } finally {
    const stopping = performance.now();
    await registry.stop();
    log(`registry stopped in ${Math.round(performance.now() - stopping)} ms`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = signalled === undefined ? code : exitCodeOf(signalled);
  },
  (error: unknown) => {
    process.stderr.write(`${formatRegistryHarnessError(error)}\n`);
    process.exitCode = 1;
  },
);
