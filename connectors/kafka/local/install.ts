/**
 * Fetches a pinned Kafka broker from Maven Central with `mvn` into `<cache>/<version>/libs` and
 * checks the Java it will run on. A marker file written after a complete fetch makes later runs skip mvn.
 * The cache is `.cache/kafka` in the repository, and the user's cache directory when kstate runs from
 * an installed package (`kstate demo`), never a directory under node_modules.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HarnessError, lastLines } from './errors.ts';
import { type KafkaVersionSpec, knownVersionNames, resolveKafkaVersion } from './versions.ts';

/** The repository when this module runs from a clone (in a built package it is dist/: see INSTALLED). */
export const REPO_ROOT = resolve(fileURLToPath(new URL('../../../', import.meta.url)));
/**
 * True when this module runs built (install.js: from an installed package, or dist/ of a clone) rather
 * than from the sources (install.ts): its cache is then the user's, never inside the package.
 */
const INSTALLED = import.meta.url.endsWith('.js');

/** Pinned so that the fetch does not depend on whatever plugin version Maven would pick. */
export const DEPENDENCY_PLUGIN = 'org.apache.maven.plugins:maven-dependency-plugin:3.8.1';
const MARKER = 'installed.json';

export interface InstallOptions {
  /**
   * Where versions are cached; default `$KAFKA_CACHE_DIR`, else `<repo>/.cache/kafka` in a clone and
   * `$XDG_CACHE_HOME/kstate/kafka` (`~/.cache/kstate/kafka`) from an installed package.
   */
  readonly cacheDir?: string;
  /** The Maven binary; default `$MVN` or `mvn`. */
  readonly mvn?: string;
  /** Extra mvn arguments (e.g. `-s settings.xml`). */
  readonly mvnArgs?: readonly string[];
  /** Progress lines (the fetch takes a while the first time). */
  readonly log?: (line: string) => void;
}

export interface KafkaInstallation {
  readonly spec: KafkaVersionSpec;
  readonly version: string;
  readonly libsDir: string;
  /** For `java -cp`. */
  readonly classpath: string;
  /** True when this call ran mvn; false when the cache already had the version. */
  readonly fetched: boolean;
  readonly fetchMs: number;
}

export function defaultCacheDir(): string {
  return harnessCacheDir('kafka', 'KAFKA_CACHE_DIR');
}

/**
 * The cache of one harness download (`name`: kafka, s3proxy): `$<envVar>` when set, else
 * `<repo>/.cache/<name>` in a clone and `$XDG_CACHE_HOME/kstate/<name>` (`~/.cache/kstate/<name>`) built.
 */
export function harnessCacheDir(name: string, envVar: string): string {
  const fromEnv = process.env[envVar];
  if (fromEnv !== undefined && fromEnv !== '') return resolve(fromEnv);
  if (!INSTALLED) return join(REPO_ROOT, '.cache', name);
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg !== undefined && xdg !== '' ? xdg : join(homedir(), '.cache'), 'kstate', name);
}

export function specFor(version: string | undefined): KafkaVersionSpec {
  const spec = resolveKafkaVersion(version);
  if (spec === undefined) {
    throw new HarnessError(
      'UNKNOWN_VERSION',
      `Kafka version "${version}" is not pinned in connectors/kafka/local/versions.ts: use one of ${knownVersionNames().join(', ')}, or add it there with its logging backend`,
    );
  }
  return spec;
}

/** The java binary the harness runs: `$JAVA_HOME/bin/java` when JAVA_HOME is set, else `java` on PATH. */
export function javaBinary(): string {
  const home = process.env.JAVA_HOME;
  return home !== undefined && home !== '' ? join(home, 'bin', 'java') : 'java';
}

/** Checks that java runs and is new enough for the version's broker; returns its major version. */
export function checkJava(spec: KafkaVersionSpec): number {
  return requireJava(Number(spec.version.split('.')[0]) >= 4 ? 17 : 11, `Kafka ${spec.version}`);
}

/** Checks that java runs and is at least Java `needed` (for `what`, e.g. "S3Proxy 2.6.0"); returns its major version. */
export function requireJava(needed: number, what: string): number {
  const java = javaBinary();
  const result = spawnSync(java, ['-version'], { encoding: 'utf8', timeout: 30_000 });
  if (result.error !== undefined || result.status !== 0) {
    throw new HarnessError(
      'JAVA_MISSING',
      `java not found or not runnable (${java}${result.error === undefined ? `, exit ${result.status}` : `: ${result.error.message}`}): install a JDK ${needed} or newer (Debian: apt-get install openjdk-17-jdk-headless) or set JAVA_HOME to one`,
      { cause: result.error },
    );
  }
  const match = /version "(\d+)(?:\.(\d+))?/.exec(`${result.stderr}${result.stdout}`);
  const first = Number(match?.[1] ?? '0');
  const major = first === 1 ? Number(match?.[2] ?? '0') : first;
  if (major < needed) {
    throw new HarnessError(
      'JAVA_TOO_OLD',
      `${what} needs Java ${needed} or newer, but ${java} is Java ${major}: install a newer JDK or point JAVA_HOME at one`,
    );
  }
  return major;
}

function pom(spec: KafkaVersionSpec): string {
  const dependencies = spec.artifacts
    .map(
      (a) =>
        `    <dependency><groupId>${a.groupId}</groupId><artifactId>${a.artifactId}</artifactId><version>${a.version}</version></dependency>`,
    )
    .join('\n');
  return `<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by kstate's connectors/kafka/local/install.ts to fetch Kafka ${spec.version}; not a build. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.kstate</groupId>
  <artifactId>kafka-broker-${spec.version}</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
${dependencies}
  </dependencies>
</project>
`;
}

export function readMarker(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
}

function installation(spec: KafkaVersionSpec, libsDir: string, fetched: boolean, fetchMs: number) {
  return {
    spec,
    version: spec.version,
    libsDir,
    classpath: join(libsDir, '*'),
    fetched,
    fetchMs,
  } satisfies KafkaInstallation;
}

/** Runs mvn in `cwd`; resolves with its exit code and the end of its output; rejects when it cannot run. */
export function runMvn(
  mvn: string,
  args: readonly string[],
  cwd: string,
): Promise<{ code: number; output: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(mvn, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (output.length > 200_000) output = output.slice(-100_000);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.once('error', reject);
    child.once('close', (code) => resolvePromise({ code: code ?? 1, output }));
  });
}

/**
 * Makes sure the pinned jars of `version` (default 4.x, or a line name like "3.9") are in the cache,
 * fetching them with mvn the first time.
 */
export async function ensureKafkaInstalled(
  version?: string,
  options: InstallOptions = {},
): Promise<KafkaInstallation> {
  const spec = specFor(version);
  const home = join(options.cacheDir ?? defaultCacheDir(), spec.version);
  const libsDir = join(home, 'libs');
  const marker = join(home, MARKER);
  const wanted = { version: spec.version, artifacts: spec.artifacts };
  if (
    existsSync(libsDir) &&
    JSON.stringify((readMarker(marker) as { pinned?: unknown } | undefined)?.pinned) ===
      JSON.stringify(wanted)
  ) {
    return installation(spec, libsDir, false, 0);
  }

  checkJava(spec);
  const mvn =
    options.mvn ?? (process.env.MVN !== undefined && process.env.MVN !== '' ? process.env.MVN : 'mvn');
  const started = performance.now();
  options.log?.(`fetching Kafka ${spec.version} from Maven Central with ${mvn} into ${libsDir} ...`);
  mkdirSync(home, { recursive: true });
  const work = join(home, `.fetch-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(work);
  try {
    writeFileSync(join(work, 'pom.xml'), pom(spec));
    const args = [
      '-B',
      '-q',
      '-Dstyle.color=never',
      ...(options.mvnArgs ?? []),
      `${DEPENDENCY_PLUGIN}:copy-dependencies`,
      '-DincludeScope=runtime',
      `-DoutputDirectory=${join(work, 'libs')}`,
    ];
    let result: { code: number; output: string };
    try {
      result = await runMvn(mvn, args, work);
    } catch (error) {
      throw new HarnessError(
        'MVN_MISSING',
        `mvn not found or not runnable (${mvn}: ${(error as Error).message}): install Maven 3.8 or newer (Debian: apt-get install maven) or set MVN to its path; it is needed once per Kafka version`,
        { cause: error },
      );
    }
    const jar = `kafka_2.13-${spec.version}.jar`;
    if (result.code !== 0 || !existsSync(join(work, 'libs', jar))) {
      throw new HarnessError(
        'MVN_FAILED',
        `mvn could not fetch Kafka ${spec.version} from Maven Central (exit ${result.code}): check the network, or configure a reachable mirror in ~/.m2/settings.xml; the end of mvn's output follows`,
        { details: lastLines(result.output, 15) },
      );
    }
    rmSync(libsDir, { recursive: true, force: true });
    try {
      renameSync(join(work, 'libs'), libsDir);
    } catch (error) {
      // Another process finished the same fetch first; its libs are as good as ours.
      if (!existsSync(join(libsDir, jar))) throw error;
    }
    const fetchMs = Math.round(performance.now() - started);
    writeFileSync(
      marker,
      `${JSON.stringify({ pinned: wanted, jars: readdirSync(libsDir).sort(), fetchedAt: new Date().toISOString(), fetchMs }, null, 2)}\n`,
    );
    options.log?.(`fetched Kafka ${spec.version} in ${fetchMs} ms`);
    return installation(spec, libsDir, true, fetchMs);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
