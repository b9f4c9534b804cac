import { readFileSync } from 'node:fs';
import { StreamError } from '../../../framework/index.ts';
import { isS3Uri, parseS3Uri } from '../../s3/uri.ts';
import { validGroupInstanceId } from '../internal/static-membership.ts';

/**
 * The service's configuration: a JSON file (`--config`), then environment variables, then defaults.
 * Every setting has one documented environment name (docs/service.md); validation names the field
 * and the allowed values.
 */
export interface ServiceConfig {
  readonly brokers: readonly string[];
  readonly backend: 'heap' | 'level';
  readonly stateDir: string;
  /**
   * Where checkpoints and savepoints go: a directory path, or `s3://bucket/prefix` (an S3-compatible
   * object store; docs/checkpoint-storage.md). `checkpointDir` / KSTATE_CHECKPOINT_DIR, its older
   * name, is still read.
   */
  readonly checkpointStorage: string;
  /** The object store's `http(s)://host:port` (S3Proxy, MinIO, Ceph, R2 ...); unset: AWS S3. */
  readonly s3Endpoint: string | undefined;
  /** Default: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1. */
  readonly s3Region: string | undefined;
  /** Path-style addressing; default true when s3Endpoint is set. */
  readonly s3ForcePathStyle: boolean | undefined;
  /** Requests to the object store in flight at once. */
  readonly s3Concurrency: number;
  /** Files above this many MiB are uploaded and read in parts of this size (>= 5). */
  readonly s3PartSizeMb: number;
  readonly checkpointIntervalMs: number;
  readonly checkpointTimeoutMs: number;
  readonly incremental: boolean;
  readonly retainCheckpoints: number;
  /** HTTP port for /metrics, /livez, /readyz; 0 disables the server. */
  readonly httpPort: number;
  /** Address the HTTP server binds: 127.0.0.1 (default), or 0.0.0.0 / :: to be reached from other hosts. */
  readonly httpHost: string;
  /**
   * Host other instances use to forward state queries here (interactive queries). Default: the
   * bound address, or this machine's host name when bound to every interface.
   */
  readonly advertisedHost: string | undefined;
  /**
   * A file holding the admin token that turns the HTTP actions (POST /savepoint) on; the token itself
   * comes only from the environment (KSTATE_ADMIN_TOKEN), never the config file. Neither set: actions
   * are off (404). Read by ./http-access.ts.
   */
  readonly adminTokenFile: string | undefined;
  /** More `host` or `host:port` names requests for actions may carry in Host and Origin (a proxy's). */
  readonly httpAllowedHosts: readonly string[];
  /** PEM certificate and key files: the HTTP server serves HTTPS (both or neither). */
  readonly httpTlsCert: string | undefined;
  readonly httpTlsKey: string | undefined;
  /**
   * /readyz turns 503 when no broker has answered the instance for longer than this (ms), and 200
   * again once one does (connectors/kafka/broker-watch.ts); 0: not watched.
   */
  readonly brokerLossTimeoutMs: number;
  readonly shutdownTimeoutMs: number;
  /**
   * The consumer-group session timeout: how long the group waits for a member that stopped
   * heartbeating (a killed instance) before its partitions move, and so how long a replacement of a
   * killed instance waits to join (docs/kafka.md, "Restart time").
   */
  readonly sessionTimeoutMs: number;
  /**
   * The instance's `group.instance.id` (static membership, KIP-345): a restart with the same id after
   * a crash takes over the old membership at once instead of waiting out its session (docs/kafka.md,
   * "Restart time"). Unique per instance; under --workers each worker adds `-<slot>`. Unset: dynamic.
   */
  readonly groupInstanceId: string | undefined;
  /**
   * When the job changed and state of its last run (or of its --from-savepoint) has no operator in
   * it any more: false (default) refuses the start with STATE_NOT_RESTORED; true drops that state with
   * one warning (docs/savepoints.md, "Job changes"). `kstate run --allow-non-restored-state` sets it.
   */
  readonly allowNonRestoredState: boolean;
  /**
   * The failure policy (docs/service.md "Failure policy"): a task restarts after a failure the restart
   * strategy counts with a delay of restartDelayMs, doubling up to restartMaxDelayMs; past
   * restartAttempts restarts without restartResetMs of running in between, the job fails and the
   * service exits 1. With restartStrategy 'failure-rate': a delay of restartDelayMs, and the job fails
   * once a task failed more than restartAttempts times within restartResetMs. Transient failures
   * (broker, registry, object store unreachable) are not counted; permanent ones exit at once.
   */
  readonly restartStrategy: 'exponential-backoff' | 'failure-rate';
  readonly restartAttempts: number;
  readonly restartDelayMs: number;
  readonly restartMaxDelayMs: number;
  readonly restartResetMs: number;
  /** The job's default policy for records a user function throws on: 'fail', 'skip', 'dead-letter'. */
  readonly onUserFunctionError: 'fail' | 'skip' | 'dead-letter';
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
}

type Field = keyof ServiceConfig;

interface FieldSpec {
  readonly env: string;
  readonly allowed: string;
  readonly parse: (raw: unknown) => unknown;
}

const int = (min: number) => (raw: unknown) => {
  const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
  return typeof n === 'number' && Number.isInteger(n) && n >= min ? n : undefined;
};
const oneOf =
  <T extends string>(...values: T[]) =>
  (raw: unknown) =>
    values.includes(raw as T) ? raw : undefined;
const bool = (raw: unknown) =>
  raw === true || raw === 'true' ? true : raw === false || raw === 'false' ? false : undefined;
const text = (raw: unknown) => (typeof raw === 'string' && raw.trim() !== '' ? raw : undefined);
const host = (raw: unknown) =>
  typeof raw === 'string' && /^[A-Za-z0-9.:_-]{1,253}$/.test(raw.trim()) ? raw.trim() : undefined;
/** An http(s) URL of a host (and port); credentials never (they come from the SDK's chain). */
const endpoint = (raw: unknown) => {
  const t = text(raw)?.trim();
  if (t === undefined || !/^https?:\/\/[^\s/]+(\/\S*)?$/i.test(t)) return undefined;
  try {
    const url = new URL(t);
    return url.hostname !== '' && url.username === '' && url.password === '' ? t : undefined;
  } catch {
    return undefined; // a port out of range or not a number, a malformed host
  }
};
const list = (raw: unknown) => {
  const items = typeof raw === 'string' ? raw.split(',') : Array.isArray(raw) ? raw : undefined;
  const clean = items?.map((b) => String(b).trim()).filter((b) => b !== '');
  return clean && clean.length > 0 && clean.every((b) => /^[^\s:]+:\d+$/.test(b)) ? clean : undefined;
};

export const CONFIG_FIELDS: Readonly<Record<Field, FieldSpec>> = {
  brokers: { env: 'KSTATE_BROKERS', allowed: 'host:port[,host:port...]', parse: list },
  backend: { env: 'KSTATE_BACKEND', allowed: "'heap' | 'level'", parse: oneOf('heap', 'level') },
  stateDir: { env: 'KSTATE_STATE_DIR', allowed: 'a directory path', parse: text },
  checkpointStorage: {
    env: 'KSTATE_CHECKPOINT_STORAGE',
    allowed:
      "a directory path, or s3://<bucket>/<prefix> (bucket: 3-63 characters: lower-case letters, digits, '.' and '-')",
    parse: (raw) => {
      const t = text(raw);
      if (t === undefined) return t;
      // `s3:/bucket` or `s3:bucket` (a slash short) would otherwise be a local directory named so.
      if (/^s3:(?!\/\/)/i.test(t.trim())) return undefined;
      if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(t)) return t;
      if (!isS3Uri(t)) return undefined; // another scheme: s3:// is the only object store
      try {
        parseS3Uri(t);
        return t;
      } catch {
        return undefined;
      }
    },
  },
  s3Endpoint: {
    env: 'KSTATE_S3_ENDPOINT',
    allowed: 'an http(s):// URL with a host and an optional port, no credentials, e.g. http://127.0.0.1:9000',
    parse: endpoint,
  },
  s3Region: { env: 'KSTATE_S3_REGION', allowed: 'an AWS region name, e.g. eu-west-1', parse: host },
  s3ForcePathStyle: { env: 'KSTATE_S3_FORCE_PATH_STYLE', allowed: 'true | false', parse: bool },
  s3Concurrency: { env: 'KSTATE_S3_CONCURRENCY', allowed: 'an integer >= 1', parse: int(1) },
  s3PartSizeMb: { env: 'KSTATE_S3_PART_SIZE_MB', allowed: 'an integer >= 5', parse: int(5) },
  checkpointIntervalMs: { env: 'KSTATE_CHECKPOINT_INTERVAL_MS', allowed: 'an integer >= 0', parse: int(0) },
  checkpointTimeoutMs: { env: 'KSTATE_CHECKPOINT_TIMEOUT_MS', allowed: 'an integer >= 1', parse: int(1) },
  incremental: { env: 'KSTATE_INCREMENTAL', allowed: 'true | false', parse: bool },
  retainCheckpoints: { env: 'KSTATE_RETAIN_CHECKPOINTS', allowed: 'an integer >= 1', parse: int(1) },
  httpPort: {
    env: 'KSTATE_HTTP_PORT',
    allowed: 'an integer 0..65535 (0: no HTTP server)',
    parse: (r) => {
      const n = int(0)(r);
      return n !== undefined && (n as number) <= 65535 ? n : undefined;
    },
  },
  httpHost: { env: 'KSTATE_HTTP_HOST', allowed: 'an IP address or host name to bind', parse: host },
  advertisedHost: {
    env: 'KSTATE_ADVERTISED_HOST',
    allowed: 'a host name or IP address other instances can reach',
    parse: host,
  },
  adminTokenFile: {
    env: 'KSTATE_ADMIN_TOKEN_FILE',
    allowed: 'the path of a file holding the admin token',
    parse: text,
  },
  httpAllowedHosts: {
    env: 'KSTATE_HTTP_ALLOWED_HOSTS',
    allowed: 'host or host:port names, comma-separated',
    parse: (raw) => {
      const items = typeof raw === 'string' ? raw.split(',') : Array.isArray(raw) ? raw : undefined;
      const clean = items?.map((h) => String(h).trim()).filter((h) => h !== '');
      return clean?.every((h) => /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(:\d{1,5})?$/.test(h))
        ? clean
        : undefined;
    },
  },
  httpTlsCert: { env: 'KSTATE_HTTP_TLS_CERT', allowed: 'the path of a PEM certificate file', parse: text },
  httpTlsKey: { env: 'KSTATE_HTTP_TLS_KEY', allowed: 'the path of a PEM private key file', parse: text },
  brokerLossTimeoutMs: {
    env: 'KSTATE_BROKER_LOSS_TIMEOUT_MS',
    allowed: 'an integer >= 1000, or 0 (not watched)',
    parse: (r) => {
      const n = int(0)(r);
      return n === 0 || (n !== undefined && (n as number) >= 1000) ? n : undefined;
    },
  },
  shutdownTimeoutMs: { env: 'KSTATE_SHUTDOWN_TIMEOUT_MS', allowed: 'an integer >= 0', parse: int(0) },
  sessionTimeoutMs: {
    env: 'KSTATE_SESSION_TIMEOUT_MS',
    allowed: "an integer >= 1000 (and within the brokers' group.min/max.session.timeout.ms)",
    parse: int(1000),
  },
  groupInstanceId: {
    env: 'KSTATE_GROUP_INSTANCE_ID',
    allowed: '1-249 of the characters a-z A-Z 0-9 . _ -, one per instance',
    parse: (r) => {
      const t = text(r);
      return t !== undefined && validGroupInstanceId(t) ? t : undefined;
    },
  },
  allowNonRestoredState: {
    env: 'KSTATE_ALLOW_NON_RESTORED_STATE',
    allowed: 'true | false',
    parse: bool,
  },
  restartStrategy: {
    env: 'KSTATE_RESTART_STRATEGY',
    allowed: "'exponential-backoff' | 'failure-rate'",
    parse: oneOf('exponential-backoff', 'failure-rate'),
  },
  restartAttempts: { env: 'KSTATE_RESTART_ATTEMPTS', allowed: 'an integer >= 0', parse: int(0) },
  restartDelayMs: { env: 'KSTATE_RESTART_DELAY_MS', allowed: 'an integer >= 0', parse: int(0) },
  restartMaxDelayMs: { env: 'KSTATE_RESTART_MAX_DELAY_MS', allowed: 'an integer >= 0', parse: int(0) },
  restartResetMs: { env: 'KSTATE_RESTART_RESET_MS', allowed: 'an integer >= 0', parse: int(0) },
  onUserFunctionError: {
    env: 'KSTATE_ON_USER_FUNCTION_ERROR',
    allowed: "'fail' | 'skip' | 'dead-letter'",
    parse: oneOf('fail', 'skip', 'dead-letter'),
  },
  logLevel: {
    env: 'KSTATE_LOG_LEVEL',
    allowed: "'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace'",
    parse: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace'),
  },
};

/** Older names still read (file field -> the field it is now, and its environment variable). */
const OLD_NAMES: Readonly<Record<string, { readonly field: Field; readonly env: string }>> = {
  checkpointDir: { field: 'checkpointStorage', env: 'KSTATE_CHECKPOINT_DIR' },
};

/** Fields that look like credentials: refused with where credentials go instead. */
const CREDENTIAL = /access.?key|secret|session.?token|credential|password/i;
/** A field that looks like the admin token: refused with where the token goes instead. */
const TOKEN = /token/i;
const TOKEN_HINT =
  'The admin token is never read from the config file: set KSTATE_ADMIN_TOKEN, or adminTokenFile / KSTATE_ADMIN_TOKEN_FILE naming a file that holds it; docs/service.md';
const CREDENTIALS_HINT =
  'Object-store credentials are never read from the config file: the AWS SDK default chain reads them (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE, a web identity such as IRSA); docs/service.md';

export const CONFIG_DEFAULTS: Omit<ServiceConfig, 'brokers'> = {
  backend: 'level',
  stateDir: './state',
  checkpointStorage: './checkpoints',
  s3Endpoint: undefined,
  s3Region: undefined,
  s3ForcePathStyle: undefined,
  s3Concurrency: 8,
  s3PartSizeMb: 8,
  checkpointIntervalMs: 1000,
  checkpointTimeoutMs: 60_000,
  incremental: false,
  retainCheckpoints: 3,
  httpPort: 9464,
  httpHost: '127.0.0.1',
  advertisedHost: undefined,
  adminTokenFile: undefined,
  httpAllowedHosts: [],
  httpTlsCert: undefined,
  httpTlsKey: undefined,
  brokerLossTimeoutMs: 15_000,
  shutdownTimeoutMs: 30_000,
  sessionTimeoutMs: 10_000,
  groupInstanceId: undefined,
  allowNonRestoredState: false,
  restartStrategy: 'exponential-backoff',
  restartAttempts: 10,
  restartDelayMs: 200,
  restartMaxDelayMs: 30_000,
  restartResetMs: 60_000,
  onUserFunctionError: 'fail',
  logLevel: 'info',
};

/**
 * Load and validate; throws CONFIG_INVALID naming the field (and its file or variable). Brokers are
 * required unless `o.brokers` is 'optional' (the offline commands, which read only checkpoint storage:
 * then `brokers` is empty when none is configured).
 */
export function loadConfig(
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  o: { readonly brokers?: 'required' | 'optional' } = {},
): ServiceConfig {
  let fromFile: Record<string, unknown> = {};
  if (file !== undefined) {
    let raw: string;
    try {
      raw = readFileSync(file, 'utf8');
    } catch (e) {
      throw new StreamError('CONFIG_INVALID', `config file ${file} cannot be read: ${(e as Error).message}`, {
        cause: e,
      });
    }
    try {
      fromFile = JSON.parse(raw) as Record<string, unknown>;
    } catch (e) {
      throw new StreamError(
        'CONFIG_INVALID',
        `config file ${file} is not valid JSON: ${(e as Error).message}`,
        { cause: e },
      );
    }
    if (typeof fromFile !== 'object' || fromFile === null || Array.isArray(fromFile)) {
      throw new StreamError('CONFIG_INVALID', `config file ${file} must hold a JSON object`);
    }
    const unknown = Object.keys(fromFile).filter((k) => !(k in CONFIG_FIELDS) && !(k in OLD_NAMES));
    if (unknown.length > 0) {
      throw new StreamError(
        'CONFIG_INVALID',
        `config file ${file}: unknown field ${unknown.map((k) => `'${k}'`).join(', ')}; known fields: ${Object.keys(CONFIG_FIELDS).join(', ')}${unknown.some((k) => CREDENTIAL.test(k)) ? `. ${CREDENTIALS_HINT}` : ''}${unknown.some((k) => TOKEN.test(k) && !CREDENTIAL.test(k)) ? `. ${TOKEN_HINT}` : ''}`,
      );
    }
  }
  const out: Record<string, unknown> = { ...CONFIG_DEFAULTS };
  for (const [field, spec] of Object.entries(CONFIG_FIELDS) as [Field, FieldSpec][]) {
    // Where the value comes from: the environment (new name, then old) over the file (new, then old).
    const oldName = Object.entries(OLD_NAMES).find(([, o]) => o.field === field);
    const envNames = [
      spec.env,
      ...(field === 'brokers' ? ['KAFKA_BROKERS'] : []),
      ...(oldName ? [oldName[1].env] : []),
    ];
    const fileNames = [field, ...(oldName ? [oldName[0]] : [])];
    const envName = envNames.find((name) => env[name] !== undefined);
    const fileName = fileNames.find((name) => name in fromFile);
    const [raw, where] =
      envName !== undefined
        ? [env[envName], `environment variable ${envName}`]
        : fileName !== undefined
          ? [fromFile[fileName], `field '${fileName}' of ${file}`]
          : [undefined, ''];
    if (raw === undefined) continue;
    const value = spec.parse(raw);
    if (value === undefined) {
      throw new StreamError('CONFIG_INVALID', `${where} is ${JSON.stringify(raw)}; allowed: ${spec.allowed}`);
    }
    out[field] = value;
  }
  if (out.brokers === undefined && o.brokers === 'optional') out.brokers = [];
  if (out.brokers === undefined) {
    throw new StreamError(
      'CONFIG_INVALID',
      `no Kafka brokers configured: set KSTATE_BROKERS (or KAFKA_BROKERS), or 'brokers' in the config file`,
    );
  }
  return out as unknown as ServiceConfig;
}
