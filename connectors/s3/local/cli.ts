/**
 * node connectors/s3/local/cli.ts fetch                              fetch (cache) S3Proxy only
 * node connectors/s3/local/cli.ts start [--port N] [--data-dir DIR]   start S3Proxy and keep it until Ctrl-C
 *
 * `start` prints the endpoint and credentials as `NAME=value` lines on stdout (for `export`), progress on
 * stderr. Without --data-dir the buckets live in a temp dir that is removed on exit.
 */
import { parseArgs } from 'node:util';
import { formatHarnessError } from '../../kafka/local/errors.ts';
import { ensureS3ProxyInstalled, S3PROXY_NAME } from './install.ts';
import { type RunningS3Proxy, startS3Proxy } from './s3proxy.ts';

const log = (line: string) => process.stderr.write(`s3 harness: ${line}\n`);
const USAGE = 'usage: node connectors/s3/local/cli.ts fetch | start [--port N] [--data-dir DIR]\n';

async function start(args: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    options: { port: { type: 'string' }, 'data-dir': { type: 'string' } },
  });
  const port = values.port === undefined ? 0 : Number(values.port);
  let server: RunningS3Proxy | undefined;
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    log(`${signal}, stopping ${S3PROXY_NAME}`);
    void (server?.stop() ?? Promise.resolve()).then(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
  server = await startS3Proxy({
    port,
    ...(values['data-dir'] === undefined ? {} : { dataDir: values['data-dir'] }),
    exitOnSignal: false,
    log,
  });
  process.stdout.write(
    [
      `KSTATE_TEST_S3_ENDPOINT=${server.endpoint}`,
      `KSTATE_S3_ENDPOINT=${server.endpoint}`,
      `AWS_ACCESS_KEY_ID=${server.accessKeyId}`,
      `AWS_SECRET_ACCESS_KEY=${server.secretAccessKey}`,
      `AWS_REGION=${server.region}`,
      '',
    ].join('\n'),
  );
  log(
    `${S3PROXY_NAME} answers on ${server.endpoint} (pid ${server.pid}), started in ${server.startMs} ms` +
      (server.fetchMs > 0 ? ` including a ${server.fetchMs} ms fetch` : ''),
  );
  log(`data: ${server.dataDir}; log: ${server.logFile}. Ctrl-C stops it.`);
  setInterval(() => undefined, 1 << 30);
  return await new Promise<number>(() => undefined);
}

async function main(argv: readonly string[]): Promise<number> {
  switch (argv[0]) {
    case 'fetch': {
      const install = await ensureS3ProxyInstalled({ log });
      log(
        install.fetched
          ? `${S3PROXY_NAME} is ready: ${install.jar} (fetched in ${install.fetchMs} ms)`
          : `${S3PROXY_NAME} is already cached: ${install.jar}`,
      );
      return 0;
    }
    case 'start':
      return await start(argv.slice(1));
    default:
      process.stderr.write(USAGE);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`${formatHarnessError(error, 's3 harness')}\n`);
    process.exitCode = 1;
  },
);
