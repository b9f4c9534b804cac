import { type AdminLease, leaseAdmin } from '../admin/shared-admin.ts';
import { createKafka } from '../client.ts';
import { classifyKafkaError } from '../errors.ts';
import { type Admin, ConfigResourceTypes, ConfigSource } from '../internal/kafkajs.ts';
import { CommandError } from './command-error.ts';
import type { ServiceConfig } from './config.ts';
import { EXIT } from './exit-codes.ts';

/**
 * `kstate topics create | describe`: the topics a job reads and writes, created and described through
 * the client and the configuration `kstate run` uses (the brokers of --config file, KSTATE_BROKERS or
 * KAFKA_BROKERS; connectors/kafka/client.ts, one admin client from admin/shared-admin.ts). A job
 * never creates its topics (its start fails with "create them first"), so this is how a new user
 * makes them, with the partition count that fixes the job's parallelism and configs such as
 * `retention.ms=-1`.
 *
 * Failures are CommandErrors with an exit code (exit-codes.ts; docs/service.md):
 *
 * | exit | when |
 * | --- | --- |
 * | 64 | a missing or malformed argument: no --partitions, a count that is not an integer in range (--partitions 0), a --config that is not name=value, a name given twice |
 * | 65 | the topic exists (without --if-not-exists); a partition count, replication factor, topic config or topic name the brokers refuse |
 * | 69 | no broker answers (the message names the addresses tried); `describe`: a topic that does not exist |
 * | 77 | authentication failed, or the credentials lack the ACL the request needs |
 *
 * 65 rather than 78: 78 says the service's own configuration (its file, its KSTATE_* variables) is
 * wrong, which a supervisor acts on differently; here the request's data is refused by the cluster,
 * sysexits' EX_DATAERR.
 */

export interface CreateTopicRequest {
  readonly topic: string;
  /** --partitions, as typed (required). */
  readonly partitions: string | undefined;
  /** --replication-factor, as typed; the brokers' default.replication.factor when absent. */
  readonly replicationFactor: string | undefined;
  /** --config name=value, as typed. */
  readonly configs: readonly string[];
  /** An existing topic is accepted as it is (differences are warned about on stderr). */
  readonly ifNotExists: boolean;
}

export interface PartitionDescription {
  readonly partition: number;
  /** Broker id of the leader; -1 when the partition has none. */
  readonly leader: number;
  readonly replicas: readonly number[];
  readonly isr: readonly number[];
  readonly offline: readonly number[];
}

export interface TopicDescription {
  readonly topic: string;
  readonly partitions: readonly PartitionDescription[];
  readonly replicationFactor: number;
  /** The configs set on the topic itself (not the brokers' defaults); a sensitive value is null. */
  readonly configs: Readonly<Record<string, string | null>>;
}

/** Where a command's lines go: stdout for results, stderr for warnings. */
export interface Output {
  out(line: string): void;
  warn(line: string): void;
}

const MAX_PARTITIONS = 2 ** 31 - 1;
const MAX_REPLICATION_FACTOR = 2 ** 15 - 1;
/** How long a created topic may take until every partition has a leader. */
const READY_TIMEOUT_MS = 60_000;

/** The topic configs of `--config name=value` arguments; throws 64 for a malformed or repeated one. */
export function parseTopicConfigs(args: readonly string[]): { name: string; value: string }[] {
  const seen = new Set<string>();
  return args.map((arg) => {
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq).trim() : '';
    if (name === '')
      throw new CommandError(
        EXIT.USAGE,
        `--config ${JSON.stringify(arg)}: a topic config is name=value (e.g. --config retention.ms=-1)`,
      );
    if (seen.has(name)) throw new CommandError(EXIT.USAGE, `--config ${name} is given twice`);
    seen.add(name);
    return { name, value: arg.slice(eq + 1) };
  });
}

/** An integer option in 1..max; throws 65 naming the option and the allowed values. */
export function parseCount(option: string, raw: string, max: number): number {
  const n = /^\s*\d+\s*$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > max)
    throw new CommandError(EXIT.USAGE, `${option} is ${JSON.stringify(raw)}; allowed: an integer 1..${max}`);
  return n;
}

/** `kstate topics create`: prints the topic as it is afterwards (`describe`'s form plus `created`). */
export async function createTopic(
  config: ServiceConfig,
  req: CreateTopicRequest,
  json: boolean,
  io: Output,
): Promise<void> {
  if (req.partitions === undefined)
    throw new CommandError(EXIT.USAGE, 'topics create needs --partitions n; see kstate topics --help');
  const configEntries = parseTopicConfigs(req.configs);
  const numPartitions = parseCount('--partitions', req.partitions, MAX_PARTITIONS);
  const replicationFactor =
    req.replicationFactor === undefined
      ? undefined
      : parseCount('--replication-factor', req.replicationFactor, MAX_REPLICATION_FACTOR);
  const spec = {
    topic: req.topic,
    numPartitions,
    ...(replicationFactor === undefined ? {} : { replicationFactor }),
    configEntries,
  };
  await withAdmin(config, `creating topic ${req.topic}`, async (admin) => {
    let created: boolean;
    try {
      // The wait for leaders is ours (waitUntilReady): kafkajs's retries only LEADER_NOT_AVAILABLE,
      // and a topic just created can first be UNKNOWN_TOPIC_OR_PARTITION.
      created = await admin.createTopics({ topics: [spec], waitForLeaders: false });
    } catch (e) {
      throw await createFailure(admin, spec, e, config.brokers);
    }
    if (!created) {
      const [existing] = await describe(admin, [req.topic], config.brokers);
      if (!req.ifNotExists)
        throw new CommandError(
          EXIT.DATA_ERROR,
          `topic ${req.topic} exists already (${summary(existing!)}): add --if-not-exists to accept it as it is, or choose another name`,
        );
      for (const line of differences(existing!, numPartitions, replicationFactor, configEntries))
        io.warn(`kstate: warning: topic ${req.topic} exists ${line}; it is left as it is`);
      printCreated(io, json, existing!, false);
      return;
    }
    await waitUntilReady(admin, req.topic, numPartitions, config.brokers);
    const [now] = await describe(admin, [req.topic], config.brokers);
    printCreated(io, json, now!, true);
  });
}

/** `kstate topics describe`: every existing topic asked for, then 69 naming the missing ones. */
export async function describeTopics(
  config: ServiceConfig,
  topics: readonly string[],
  json: boolean,
  io: Output,
): Promise<void> {
  const asked = [...new Set(topics)];
  await withAdmin(config, `describing ${asked.join(', ')}`, async (admin) => {
    const existing = new Set(
      await admin.listTopics().catch((e: unknown) => {
        throw failure('listing the topics', e, config.brokers);
      }),
    );
    const found = asked.filter((t) => existing.has(t));
    if (found.length > 0) for (const d of await describe(admin, found, config.brokers)) print(io, json, d);
    const missing = asked.filter((t) => !existing.has(t));
    if (missing.length > 0)
      throw new CommandError(
        EXIT.UNAVAILABLE,
        `${missing.length === 1 ? 'topic' : 'topics'} ${missing.join(', ')} ${missing.length === 1 ? 'does' : 'do'} not exist: create with kstate topics create <topic> --partitions n`,
      );
  });
}

/**
 * Runs `f` with an admin client of the service's brokers (the connection `kstate run` uses, with its
 * retries: a broker still starting is waited for, about 15 s).
 */
async function withAdmin(
  config: ServiceConfig,
  what: string,
  f: (admin: Admin) => Promise<void>,
): Promise<void> {
  const kafka = createKafka({ brokers: config.brokers }, '-topics');
  const started = Date.now();
  let lease: AdminLease;
  try {
    lease = await leaseAdmin(kafka);
  } catch (e) {
    throw failure(what, e, config.brokers, Date.now() - started);
  }
  try {
    await f(lease.admin);
  } finally {
    await lease.release();
  }
}

async function describe(
  admin: Admin,
  topics: readonly string[],
  brokers: readonly string[],
): Promise<TopicDescription[]> {
  try {
    const meta = await admin.fetchTopicMetadata({ topics: [...topics] });
    const configs = await admin.describeConfigs({
      resources: topics.map((name) => ({ type: ConfigResourceTypes.TOPIC, name })),
      includeSynonyms: false,
    });
    return topics.map((topic) => {
      const partitions = (meta.topics.find((t) => t.name === topic)?.partitions ?? [])
        .map((p) => ({
          partition: p.partitionId,
          leader: p.leader,
          replicas: p.replicas,
          isr: p.isr,
          offline: p.offlineReplicas ?? [],
        }))
        .sort((a, b) => a.partition - b.partition);
      const entries = configs.resources.find((r) => r.resourceName === topic)?.configEntries ?? [];
      return {
        topic,
        partitions,
        replicationFactor: Math.max(0, ...partitions.map((p) => p.replicas.length)),
        configs: Object.fromEntries(
          entries
            .filter((c) => c.configSource === ConfigSource.TOPIC_CONFIG)
            .map((c) => [c.configName, c.isSensitive ? null : c.configValue])
            .sort(([a], [b]) => String(a).localeCompare(String(b))),
        ),
      };
    });
  } catch (e) {
    throw failure(`describing ${topics.join(', ')}`, e, brokers);
  }
}

/**
 * Polls the topic's metadata until it has every partition and each a leader (producing to it works
 * then); answers that it does not exist yet or has no leader yet are waited out, up to
 * READY_TIMEOUT_MS.
 */
async function waitUntilReady(
  admin: Admin,
  topic: string,
  partitions: number,
  brokers: readonly string[],
): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let delay = 50;
  let last = 'no metadata yet';
  for (;;) {
    try {
      const meta = await admin.fetchTopicMetadata({ topics: [topic] });
      const ps = meta.topics[0]?.partitions ?? [];
      if (ps.length === partitions && ps.every((p) => p.leader >= 0 && p.partitionErrorCode === 0)) return;
      last = `${ps.filter((p) => p.leader >= 0).length} of ${partitions} partitions have a leader`;
    } catch (e) {
      const types = kafkaTypes(e);
      if (!types.includes('UNKNOWN_TOPIC_OR_PARTITION') && !types.includes('LEADER_NOT_AVAILABLE'))
        throw failure(`reading the metadata of the new topic ${topic}`, e, brokers);
      last = types.join(', ');
    }
    if (Date.now() > deadline)
      throw new CommandError(
        EXIT.UNAVAILABLE,
        `topic ${topic} was created, but after ${READY_TIMEOUT_MS / 1000} s it is not ready (${last}): see kstate topics describe ${topic}`,
      );
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 1000);
  }
}

/**
 * Why a create request failed. The brokers' own reason text does not reach us (kafkajs keeps only
 * the error code), so for INVALID_CONFIG each config is tried alone (validateOnly: nothing is
 * created) to name the ones refused.
 */
async function createFailure(
  admin: Admin,
  spec: {
    topic: string;
    numPartitions: number;
    replicationFactor?: number;
    configEntries: { name: string; value: string }[];
  },
  e: unknown,
  brokers: readonly string[],
): Promise<CommandError> {
  const types = kafkaTypes(e);
  const what = `creating topic ${spec.topic}`;
  if (types.includes('INVALID_CONFIG')) {
    const refused: string[] = [];
    for (const entry of spec.configEntries) {
      const alone = { ...spec, configEntries: [entry] };
      const ok = await admin
        .createTopics({ topics: [alone], validateOnly: true, waitForLeaders: false })
        .then(() => true)
        .catch((x: unknown) => !kafkaTypes(x).includes('INVALID_CONFIG'));
      if (!ok) refused.push(`${entry.name}=${entry.value}`);
    }
    const which = refused.length > 0 ? refused : spec.configEntries.map((c) => `${c.name}=${c.value}`);
    return new CommandError(
      EXIT.DATA_ERROR,
      `${what}: the brokers refuse the topic config ${which.join(', ')} [INVALID_CONFIG]: an unknown config name or a value it does not take (topic configs: https://kafka.apache.org/documentation/#topicconfigs)`,
      { cause: e },
    );
  }
  if (types.includes('INVALID_REPLICATION_FACTOR')) {
    const count = await admin
      .describeCluster()
      .then((c) => c.brokers.length)
      .catch(() => undefined);
    return new CommandError(
      EXIT.DATA_ERROR,
      `${what}: the brokers refuse replication factor ${spec.replicationFactor ?? '(their default)'} [INVALID_REPLICATION_FACTOR]: it must be at least 1 and at most the number of brokers${count === undefined ? '' : ` (${count})`}`,
      { cause: e },
    );
  }
  return failure(what, e, brokers);
}

/** Requests refused for what they ask: exit 65, with what to do. */
const REFUSED: Readonly<Record<string, string>> = {
  INVALID_PARTITIONS: 'the brokers refuse that partition count',
  INVALID_TOPIC_EXCEPTION:
    'a topic name is 1 to 249 characters of a-z, A-Z, 0-9, ".", "_" and "-", and not "." or ".."',
  POLICY_VIOLATION:
    "a policy of the brokers refuses the request: a create.topic.policy.class.name, or a limit such as KRaft's 10,000 partitions per request",
  INVALID_REPLICA_ASSIGNMENT: 'the brokers refuse the replica assignment',
  INVALID_REQUEST: 'the brokers refuse the request as malformed',
};

/** Credentials refused or lacking an ACL: exit 77. */
const DENIED: Readonly<Record<string, string>> = {
  TOPIC_AUTHORIZATION_FAILED:
    'the credentials may not do this with the topic: grant the ACL (CREATE to create, DESCRIBE and DESCRIBE_CONFIGS to describe)',
  CLUSTER_AUTHORIZATION_FAILED: 'the credentials lack a cluster permission this request needs',
  SASL_AUTHENTICATION_FAILED: 'the brokers refused the credentials (SASL): check the user name and password',
};

/** The CommandError for a failed Kafka request, by the error's Kafka type and kafkajs class. */
export function failure(
  what: string,
  e: unknown,
  brokers: readonly string[],
  triedMs?: number,
): CommandError {
  const types = kafkaTypes(e);
  const message = messageOf(e);
  const denied = types.find((t) => DENIED[t] !== undefined);
  if (denied !== undefined || types.includes('KafkaJSSASLAuthenticationError'))
    return new CommandError(
      EXIT.NO_PERMISSION,
      `${what}: ${messageOf((denied && find(e, denied)) ?? e)} [${denied ?? 'SASL_AUTHENTICATION_FAILED'}]: ${DENIED[denied ?? 'SASL_AUTHENTICATION_FAILED']}`,
      { cause: e },
    );
  if (types.includes('TOPIC_ALREADY_EXISTS'))
    return new CommandError(
      EXIT.DATA_ERROR,
      `${what}: the topic exists already [TOPIC_ALREADY_EXISTS]: add --if-not-exists to accept it`,
      {
        cause: e,
      },
    );
  const refused = types.find((t) => REFUSED[t] !== undefined);
  if (refused !== undefined)
    return new CommandError(
      EXIT.DATA_ERROR,
      `${what}: ${messageOf(find(e, refused) ?? e)} [${refused}]: ${REFUSED[refused]}`,
      { cause: e },
    );
  if (classifyKafkaError(e).code === 'KAFKA_UNAVAILABLE')
    return new CommandError(
      EXIT.UNAVAILABLE,
      `${what}: no Kafka broker answers at ${brokers.join(',')} (${triedMs === undefined ? '' : `tried for ${Math.round(triedMs / 1000)} s; `}${message}): is Kafka running there? The brokers come from KSTATE_BROKERS (or KAFKA_BROKERS), else 'brokers' in the --config file`,
      { cause: e },
    );
  return new CommandError(EXIT.JOB_FAILED, `${what}: ${message}${types[0] ? ` [${types[0]}]` : ''}`, {
    cause: e,
  });
}

interface ErrorLike {
  name?: unknown;
  type?: unknown;
  message?: unknown;
  cause?: unknown;
  errors?: unknown;
}

/** The Kafka error types and kafkajs error class names in `e`, its causes and aggregated errors. */
function kafkaTypes(e: unknown, depth = 0): string[] {
  if (e === null || typeof e !== 'object' || depth > 8) return [];
  const err = e as ErrorLike;
  const own = [err.type, err.name].filter((x): x is string => typeof x === 'string');
  const nested = [...(Array.isArray(err.errors) ? err.errors : []), err.cause].flatMap((x) =>
    kafkaTypes(x, depth + 1),
  );
  return [...new Set([...own, ...nested])];
}

/** The error of Kafka type `type` in `e`, its causes or aggregated errors. */
function find(e: unknown, type: string, depth = 0): unknown {
  if (e === null || typeof e !== 'object' || depth > 8) return undefined;
  const err = e as ErrorLike;
  if (err.type === type) return e;
  for (const x of [...(Array.isArray(err.errors) ? err.errors : []), err.cause]) {
    const hit = find(x, type, depth + 1);
    if (hit !== undefined) return hit;
  }
  return undefined;
}

/** The innermost Kafka error: what a StreamError from the admin lease wraps. */
function rootOf(e: unknown): unknown {
  let x = e;
  while (x instanceof Error && (x.name === 'StreamError' || x.name === 'KafkaJSNumberOfRetriesExceeded')) {
    if (x.cause === undefined || x.cause === x) break;
    x = x.cause;
  }
  return x;
}

function messageOf(e: unknown): string {
  const root = rootOf(e);
  return root instanceof Error ? root.message : String(root);
}

function summary(d: TopicDescription): string {
  const configs = Object.entries(d.configs).map(([k, v]) => `${k}=${v ?? '(sensitive)'}`);
  return `${plural(d.partitions.length, 'partition')}, replication factor ${d.replicationFactor}${configs.length > 0 ? `, ${configs.join(', ')}` : ''}`;
}

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

/** How an existing topic differs from what `create` asked for. */
function differences(
  d: TopicDescription,
  partitions: number,
  replicationFactor: number | undefined,
  configs: readonly { name: string; value: string }[],
): string[] {
  const out: string[] = [];
  if (d.partitions.length !== partitions)
    out.push(`with ${plural(d.partitions.length, 'partition')}, not ${partitions}`);
  if (replicationFactor !== undefined && d.replicationFactor !== replicationFactor)
    out.push(`with replication factor ${d.replicationFactor}, not ${replicationFactor}`);
  for (const { name, value } of configs) {
    const have = d.configs[name];
    if (have !== value)
      out.push(
        have === undefined
          ? `without ${name} (the brokers' default applies), not ${name}=${value}`
          : `with ${name}=${have ?? '(sensitive)'}, not ${value}`,
      );
  }
  return out;
}

/** `describe`: one JSON line per topic, or kafka-topics.sh's layout (a topic line, a line per partition). */
function print(io: Output, json: boolean, d: TopicDescription): void {
  if (json) {
    io.out(JSON.stringify(d));
    return;
  }
  const configs = Object.entries(d.configs)
    .map(([k, v]) => `${k}=${v ?? '(sensitive)'}`)
    .join(',');
  io.out(
    `Topic: ${d.topic}\tPartitionCount: ${d.partitions.length}\tReplicationFactor: ${d.replicationFactor}\tConfigs: ${configs}`,
  );
  for (const p of d.partitions)
    io.out(
      `\tPartition: ${p.partition}\tLeader: ${p.leader < 0 ? 'none' : p.leader}\tReplicas: ${p.replicas.join(',')}\tIsr: ${p.isr.join(',')}${p.offline.length > 0 ? `\tOffline: ${p.offline.join(',')}` : ''}`,
    );
}

/** `create`: `describe`'s JSON with `created`, or one line. */
function printCreated(io: Output, json: boolean, d: TopicDescription, created: boolean): void {
  if (json) io.out(JSON.stringify({ ...d, created }));
  else if (created) io.out(`created topic ${d.topic}: ${summary(d)}`);
  else io.out(`topic ${d.topic} exists: ${summary(d)} (left as it is)`);
}
