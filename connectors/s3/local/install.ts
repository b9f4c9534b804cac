/**
 * Fetches the pinned S3Proxy (one self-contained jar, `org.gaul:s3proxy:<version>:jar:jar-with-dependencies`)
 * from Maven Central with `mvn dependency:copy` into `<cache>/<version>/`, once: a marker written after a
 * complete fetch makes later runs skip mvn. The cache is `$S3PROXY_CACHE_DIR`, else `.cache/s3proxy` in a
 * clone and the user's cache directory (`~/.cache/kstate/s3proxy`) when run built, as for the Kafka broker
 * (connectors/kafka/local/install.ts, whose mvn and Java helpers this reuses).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HarnessError, lastLines } from '../../kafka/local/errors.ts';
import {
  DEPENDENCY_PLUGIN,
  harnessCacheDir,
  readMarker,
  requireJava,
  runMvn,
} from '../../kafka/local/install.ts';

/** The pinned S3Proxy; 2.x needs Java 17. */
export const S3PROXY = {
  groupId: 'org.gaul',
  artifactId: 's3proxy',
  version: '2.6.0',
  classifier: 'jar-with-dependencies',
  java: 17,
} as const;

const MARKER = 'installed.json';

export interface S3ProxyInstallOptions {
  /** Default `$S3PROXY_CACHE_DIR`, else `<repo>/.cache/s3proxy` in a clone, `~/.cache/kstate/s3proxy` built. */
  readonly cacheDir?: string;
  /** The Maven binary; default `$MVN` or `mvn`. */
  readonly mvn?: string;
  /** Extra mvn arguments (e.g. `-s settings.xml`). */
  readonly mvnArgs?: readonly string[];
  readonly log?: (line: string) => void;
}

export interface S3ProxyInstallation {
  readonly version: string;
  /** For `java -jar`. */
  readonly jar: string;
  /** True when this call ran mvn; false when the cache had the jar. */
  readonly fetched: boolean;
  readonly fetchMs: number;
}

export function defaultS3ProxyCacheDir(): string {
  return harnessCacheDir('s3proxy', 'S3PROXY_CACHE_DIR');
}

/** `S3Proxy 2.6.0`, for messages. */
export const S3PROXY_NAME = `S3Proxy ${S3PROXY.version}`;

/** Checks that java runs and is new enough for S3Proxy; returns its major version. */
export function checkJavaForS3Proxy(): number {
  return requireJava(S3PROXY.java, S3PROXY_NAME);
}

const ARTIFACT = `${S3PROXY.groupId}:${S3PROXY.artifactId}:${S3PROXY.version}:jar:${S3PROXY.classifier}`;
const JAR = `${S3PROXY.artifactId}-${S3PROXY.version}-${S3PROXY.classifier}.jar`;

/** Makes sure the pinned jar is in the cache, fetching it with mvn the first time. */
export async function ensureS3ProxyInstalled(
  options: S3ProxyInstallOptions = {},
): Promise<S3ProxyInstallation> {
  const home = join(options.cacheDir ?? defaultS3ProxyCacheDir(), S3PROXY.version);
  const jar = join(home, JAR);
  const marker = join(home, MARKER);
  const recorded = readMarker(marker) as { artifact?: unknown; bytes?: unknown } | undefined;
  if (
    existsSync(jar) &&
    recorded?.artifact === ARTIFACT &&
    recorded.bytes === statSync(jar, { throwIfNoEntry: false })?.size
  ) {
    return { version: S3PROXY.version, jar, fetched: false, fetchMs: 0 };
  }

  checkJavaForS3Proxy();
  const mvn =
    options.mvn ?? (process.env.MVN !== undefined && process.env.MVN !== '' ? process.env.MVN : 'mvn');
  const started = performance.now();
  options.log?.(`fetching ${S3PROXY_NAME} (${ARTIFACT}) from Maven Central with ${mvn} into ${home} ...`);
  mkdirSync(home, { recursive: true });
  const work = join(home, `.fetch-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(work);
  try {
    const args = [
      '-B',
      '-q',
      '-Dstyle.color=never',
      ...(options.mvnArgs ?? []),
      `${DEPENDENCY_PLUGIN}:copy`,
      `-Dartifact=${ARTIFACT}`,
      `-DoutputDirectory=${work}`,
    ];
    let result: { code: number; output: string };
    try {
      result = await runMvn(mvn, args, work);
    } catch (error) {
      throw new HarnessError(
        'MVN_MISSING',
        `mvn not found or not runnable (${mvn}: ${(error as Error).message}): install Maven 3.8 or newer (Debian: apt-get install maven) or set MVN to its path; it is needed once to fetch ${S3PROXY_NAME}`,
        { cause: error },
      );
    }
    const fetched = join(work, JAR);
    if (result.code !== 0 || !existsSync(fetched)) {
      throw new HarnessError(
        'MVN_FAILED',
        `mvn could not fetch ${S3PROXY_NAME} from Maven Central (exit ${result.code}): check the network, or configure a reachable mirror in ~/.m2/settings.xml; the end of mvn's output follows`,
        { details: lastLines(result.output, 15) },
      );
    }
    // rename is atomic: a concurrent fetch's jar is replaced by an identical one, never seen half-written.
    renameSync(fetched, jar);
    const fetchMs = Math.round(performance.now() - started);
    const bytes = statSync(jar).size;
    writeFileSync(
      marker,
      `${JSON.stringify({ artifact: ARTIFACT, jar: JAR, bytes, fetchedAt: new Date().toISOString(), fetchMs }, null, 2)}\n`,
    );
    options.log?.(`fetched ${S3PROXY_NAME} in ${fetchMs} ms (${(bytes / 1024 / 1024).toFixed(1)} MiB)`);
    return { version: S3PROXY.version, jar, fetched: true, fetchMs };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
