/**
 * Checks of deploy/ (docs/deploy.md) that need no Docker engine and no Kubernetes cluster, neither of
 * which this machine has: each check is a function from the parsed files to a list of problems (empty:
 * it holds), so that deploy.test.ts can run it on the real files and on broken copies of them.
 *
 * - Kubernetes manifests: parsed with `yaml` (duplicate keys and YAML errors refused), validated against
 *   the Kubernetes OpenAPI schema of `kubernetes-models` (KUBERNETES_SCHEMA), and type-checked against its
 *   declarations so that an unknown field (a typo such as `readinesProbe`), which the JSON schema lets
 *   through and the API server's strict field validation (kubectl's default) refuses, is one too; then
 *   what kstate needs of them (probes, scrape annotations, grace period, configuration names, secrets).
 * - The Dockerfile: parsed with `dockerfile-ast`, linted with `dockerfile-utils` (the Dockerfile language
 *   server's validator), and what the image must be (non-root, health check on /livez, exec form ...).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DockerfileParser, Env, From, type Instruction, JSONInstruction } from 'dockerfile-ast';
import { validate as lintDockerfile } from 'dockerfile-utils';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Secret } from 'kubernetes-models/v1/Secret';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { CONFIG_DEFAULTS, CONFIG_FIELDS } from '../../cli/config.ts';
import { REPO_ROOT } from '../../local/install.ts';

/** The Kubernetes release whose OpenAPI schema the pinned `kubernetes-models` was generated from. */
export const KUBERNETES_SCHEMA = 'Kubernetes 1.36 (kubernetes-models 5.1.0)';

export const DEPLOY_DIR = join(REPO_ROOT, 'deploy');
export const MANIFEST_DIR = join(DEPLOY_DIR, 'kubernetes');
export const DOCKERFILE = join(DEPLOY_DIR, 'Dockerfile');
export const EXAMPLE_DIR = join(DEPLOY_DIR, 'example');

// ---------------------------------------------------------------------------------------------------
// What the service is, read from its code and docs (so a change there shows up here).

/** The paths the service's HTTP server answers itself (framework/service/http.ts). */
export function servedPaths(): Set<string> {
  const http = readFileSync(join(REPO_ROOT, 'framework/service/http.ts'), 'utf8');
  return new Set([...http.matchAll(/path === '(\/[a-z]+)'/g)].map((m) => m[1]!));
}

/** The paths docs/service.md's endpoint table documents (`| \`GET /livez\` |`). */
export function documentedPaths(): Set<string> {
  const doc = readFileSync(join(REPO_ROOT, 'docs/service.md'), 'utf8');
  return new Set([...doc.matchAll(/^\| `(?:GET|POST) (\/[a-z.]+)/gm)].map((m) => m[1]!));
}

/**
 * How long after shutdownTimeoutMs the service exits at once (serve.ts: `signals.deadline(
 * config.shutdownTimeoutMs + 5_000, ...)`), so the longest a graceful stop takes.
 */
export function shutdownDeadlineMarginMs(): number {
  const serve = readFileSync(join(REPO_ROOT, 'connectors/kafka/cli/serve.ts'), 'utf8');
  const margin = /signals\.deadline\(config\.shutdownTimeoutMs \+ ([\d_]+)/.exec(serve)?.[1];
  if (margin === undefined)
    throw new Error('serve.ts no longer has `signals.deadline(config.shutdownTimeoutMs + n`');
  return Number(margin.replaceAll('_', ''));
}

/** The service's configuration variables (CONFIG_FIELDS), plus KAFKA_BROKERS, which it also reads. */
export function configVariables(): Set<string> {
  return new Set([...Object.values(CONFIG_FIELDS).map((f) => f.env), 'KAFKA_BROKERS']);
}

/** The variables the example job reads (`env.JOB_...` in deploy/example/job.ts). */
export function jobVariables(): Set<string> {
  const job = readFileSync(join(EXAMPLE_DIR, 'job.ts'), 'utf8');
  return new Set([...job.matchAll(/env\.([A-Z][A-Z0-9_]*)/g)].map((m) => m[1]!));
}

/** Variables of the AWS SDK's default credential and region chain, and Node's own. */
export const PLATFORM_VARIABLES = new Set([
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_REGION',
  'AWS_PROFILE',
  'AWS_ROLE_ARN',
  'AWS_WEB_IDENTITY_TOKEN_FILE',
  'NODE_ENV',
  'NODE_OPTIONS',
  'PATH',
]);

/** The variables that hold credentials: never a literal value in a manifest. */
export const CREDENTIAL_VARIABLES = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'];

/** Problems with variable names: a KSTATE_* one the service does not know, or one nobody reads. */
export function variableNameProblems(where: string, names: Iterable<string>): string[] {
  const config = configVariables();
  const job = jobVariables();
  const problems: string[] = [];
  for (const name of names) {
    if (name.startsWith('KSTATE_')) {
      if (!config.has(name))
        problems.push(
          `${where}: ${name} is no kstate setting (connectors/kafka/cli/config.ts CONFIG_FIELDS)`,
        );
    } else if (!PLATFORM_VARIABLES.has(name) && !job.has(name)) {
      problems.push(`${where}: ${name} is read by nobody (not kstate's, the AWS SDK's, Node's or the job's)`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------------
// Kubernetes manifests.

export interface K8sObject {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly metadata?: { readonly name?: string; readonly labels?: Record<string, string> };
  readonly [field: string]: unknown;
}

export interface Manifest {
  /** File name under deploy/kubernetes. */
  readonly file: string;
  readonly object: K8sObject;
}

/** Every YAML document of every `*.yaml` file, in apply order (file name order, as `kubectl apply -f dir`). */
export function readManifests(dir = MANIFEST_DIR): Manifest[] {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
    .sort();
  return files.flatMap((file) => parseManifests(file, readFileSync(join(dir, file), 'utf8')));
}

/** The documents of one file; a YAML error, a warning or a duplicate key throws, naming the file and line. */
export function parseManifests(file: string, text: string): Manifest[] {
  const out: Manifest[] = [];
  for (const doc of parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true, strict: true })) {
    const issues = [...doc.errors, ...doc.warnings];
    if (issues.length > 0) throw new Error(`${file}: ${issues.map((e) => e.message).join('; ')}`);
    const object: unknown = doc.toJS();
    if (object === null || object === undefined) continue;
    if (typeof object !== 'object' || Array.isArray(object))
      throw new Error(`${file}: a document that is no object`);
    out.push({ file, object: object as K8sObject });
  }
  return out;
}

/** The models of the kinds deploy/kubernetes may hold, by `apiVersion/kind`, with their declaration. */
const MODELS: Record<
  string,
  { model: new (data: never) => { validate(): void }; module: string; type: string }
> = {
  'v1/Secret': { model: Secret, module: 'kubernetes-models/v1/Secret', type: 'ISecret' },
  'v1/ConfigMap': { model: ConfigMap, module: 'kubernetes-models/v1/ConfigMap', type: 'IConfigMap' },
  'apps/v1/Deployment': {
    model: Deployment,
    module: 'kubernetes-models/apps/v1/Deployment',
    type: 'IDeployment',
  },
  'batch/v1/Job': { model: Job, module: 'kubernetes-models/batch/v1/Job', type: 'IJob' },
  'policy/v1/PodDisruptionBudget': {
    model: PodDisruptionBudget,
    module: 'kubernetes-models/policy/v1/PodDisruptionBudget',
    type: 'IPodDisruptionBudget',
  },
};

const nameOf = (m: Manifest) => `${m.file}: ${m.object.kind ?? '?'}/${m.object.metadata?.name ?? '?'}`;

/** Each object against the OpenAPI schema of its kind (types, required fields, formats, enums). */
export function schemaProblems(manifests: readonly Manifest[]): string[] {
  const problems: string[] = [];
  for (const m of manifests) {
    const spec = MODELS[`${m.object.apiVersion}/${m.object.kind}`];
    if (spec === undefined) {
      problems.push(`${nameOf(m)}: kind ${m.object.apiVersion}/${m.object.kind} is not one this check knows`);
      continue;
    }
    if (!m.object.metadata?.name) problems.push(`${nameOf(m)}: metadata.name is required`);
    try {
      new spec.model(m.object as never).validate();
    } catch (e) {
      problems.push(`${nameOf(m)}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return problems;
}

/**
 * Fields the kind does not have: the objects, written as TypeScript object literals typed with the
 * models' declarations, are type-checked (excess property checks reach every nested literal).
 */
export function unknownFieldProblems(manifests: readonly Manifest[]): string[] {
  const known = manifests.filter((m) => MODELS[`${m.object.apiVersion}/${m.object.kind}`] !== undefined);
  const imports = new Set<string>();
  const objects: string[] = [];
  for (const [i, m] of known.entries()) {
    const spec = MODELS[`${m.object.apiVersion}/${m.object.kind}`]!;
    imports.add(`import type { ${spec.type} } from '${spec.module}';`);
    objects.push(`export const o${i}: ${spec.type} = ${JSON.stringify(m.object, null, 2)};`);
  }
  // Which object each line of the source belongs to, to name it in a diagnostic.
  const owner: string[] = [...imports].map(() => 'imports');
  for (const [i, text] of objects.entries()) owner.push(...text.split('\n').map(() => nameOf(known[i]!)));
  const source = [...imports, ...objects].join('\n');
  const fileName = join(REPO_ROOT, 'connectors/kafka/test/__deploy-manifests__.ts');
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2023,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, language, ...rest) =>
    name === fileName ? ts.createSourceFile(name, source, language) : getSourceFile(name, language, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === fileName || fileExists(name);
  const program = ts.createProgram([fileName], options, host);
  const diagnostics = ts.getPreEmitDiagnostics(program).filter((d) => d.file?.fileName === fileName);
  return diagnostics.map((d) => {
    const line = d.file!.getLineAndCharacterOfPosition(d.start ?? 0).line;
    const what = ts.flattenDiagnosticMessageText(d.messageText, ' ');
    return `${owner[line] ?? 'manifests'}: ${what}`;
  });
}

// The shapes of the objects read below (as the schema checks have it; fields are optional there).
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    secretKeyRef?: { name?: string; key?: string };
    configMapKeyRef?: { name?: string; key?: string };
    fieldRef?: { fieldPath?: string };
  };
}
interface Probe {
  httpGet?: { path?: string; port?: number | string };
}
interface Container {
  name?: string;
  image?: string;
  ports?: { name?: string; containerPort?: number }[];
  env?: EnvVar[];
  envFrom?: { configMapRef?: { name?: string }; secretRef?: { name?: string } }[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> };
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; readOnlyRootFilesystem?: boolean };
  volumeMounts?: { name?: string; mountPath?: string }[];
}
interface PodSpec {
  containers?: Container[];
  terminationGracePeriodSeconds?: number;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
  volumes?: { name?: string; emptyDir?: unknown }[];
}
interface PodTemplate {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: PodSpec;
}
interface Workload {
  replicas?: number;
  selector?: { matchLabels?: Record<string, string> };
  template?: PodTemplate;
}

const spec = (m: Manifest) => (m.object.spec ?? {}) as Workload;
const of = (manifests: readonly Manifest[], kind: string) => manifests.filter((m) => m.object.kind === kind);

/** What the image provides (the Dockerfile's final stage), which the manifests build on. */
export interface ImageFacts {
  /** ENV of the final stage. */
  readonly env: ReadonlyMap<string, string>;
  /** USER of the final stage, as written. */
  readonly user: string | undefined;
  readonly exposed: readonly number[];
  readonly volumes: readonly string[];
}

/** The environment a container sees: the image's ENV, then envFrom ConfigMaps, then env (valueFrom as `<from ...>`). */
export function containerEnv(
  container: Container,
  manifests: readonly Manifest[],
  image: ImageFacts,
): Map<string, string> {
  const env = new Map(image.env);
  for (const source of container.envFrom ?? []) {
    const name = source.configMapRef?.name;
    const map = of(manifests, 'ConfigMap').find((m) => m.object.metadata?.name === name);
    for (const [k, v] of Object.entries((map?.object.data ?? {}) as Record<string, string>)) env.set(k, v);
  }
  for (const e of container.env ?? []) env.set(e.name, e.value ?? `<from ${JSON.stringify(e.valueFrom)}>`);
  return env;
}

const matches = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined) =>
  selector !== undefined &&
  Object.keys(selector).length > 0 &&
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);

const isWildcard = (host: string | undefined) => host === '0.0.0.0' || host === '::';

/** A container port by number or by name. */
function resolvePort(container: Container, port: number | string | undefined): number | undefined {
  if (typeof port === 'number') return port;
  return container.ports?.find((p) => p.name === port)?.containerPort;
}

/** The kstate container of a pod template: the one that runs the image (all of them, checked). */
const containersOf = (m: Manifest) => spec(m).template?.spec?.containers ?? [];

/**
 * What kstate needs of its Deployment: several replicas of one job, probes on the paths the service
 * serves and on its port, the scrape annotations, a grace period longer than a graceful stop, known
 * configuration names, shared (S3) checkpoint storage, credentials only from a Secret, a state volume,
 * a non-root user that matches the image, resources, and a PodDisruptionBudget over its pods.
 */
export function deploymentProblems(manifests: readonly Manifest[], image: ImageFacts): string[] {
  const problems: string[] = [];
  const deployments = of(manifests, 'Deployment');
  if (deployments.length !== 1) problems.push(`one Deployment expected, found ${deployments.length}`);
  const served = servedPaths();
  const margin = shutdownDeadlineMarginMs();
  for (const d of deployments) {
    const where = nameOf(d);
    const s = spec(d);
    const pod = s.template?.spec ?? {};
    const labels = s.template?.metadata?.labels;
    if ((s.replicas ?? 1) < 2)
      problems.push(`${where}: replicas ${s.replicas ?? 1}: a job of N instances needs N > 1`);
    if (!matches(s.selector?.matchLabels, labels))
      problems.push(`${where}: spec.selector.matchLabels does not select the pod template's labels`);
    const containers = pod.containers ?? [];
    if (containers.length !== 1)
      problems.push(`${where}: one container expected, found ${containers.length}`);
    for (const c of containers) {
      const env = containerEnv(c, manifests, image);
      const port = Number(env.get('KSTATE_HTTP_PORT') ?? CONFIG_DEFAULTS.httpPort);
      problems.push(...imageReferenceProblems(where, c.image));
      if (!isWildcard(env.get('KSTATE_HTTP_HOST')))
        problems.push(
          `${where}: KSTATE_HTTP_HOST is ${env.get('KSTATE_HTTP_HOST') ?? `the default ${CONFIG_DEFAULTS.httpHost}`}: the kubelet's probes and Prometheus come from outside the pod, so it must be 0.0.0.0 or ::`,
        );
      if (!c.ports?.some((p) => p.containerPort === port))
        problems.push(`${where}: no containerPort ${port} (KSTATE_HTTP_PORT)`);
      for (const [probe, path] of [
        ['readinessProbe', '/readyz'],
        ['livenessProbe', '/livez'],
      ] as const) {
        const get = c[probe]?.httpGet;
        if (get === undefined) {
          problems.push(`${where}: no ${probe} (httpGet ${path})`);
          continue;
        }
        if (get.path !== path) problems.push(`${where}: ${probe} asks ${get.path}, not ${path}`);
        if (!served.has(get.path ?? ''))
          problems.push(`${where}: ${probe} path ${get.path} is not served by kstate`);
        const probePort = resolvePort(c, get.port);
        if (probePort !== port)
          problems.push(
            `${where}: ${probe} port ${String(get.port)} is ${probePort}, not KSTATE_HTTP_PORT ${port}`,
          );
      }
      const annotations = s.template?.metadata?.annotations ?? {};
      if (annotations['prometheus.io/scrape'] !== 'true')
        problems.push(`${where}: pod annotation prometheus.io/scrape is not "true"`);
      if (annotations['prometheus.io/port'] !== String(port))
        problems.push(
          `${where}: pod annotation prometheus.io/port is ${annotations['prometheus.io/port']}, not ${port}`,
        );
      const metricsPath = annotations['prometheus.io/path'] ?? '/metrics';
      if (metricsPath !== '/metrics' || !served.has(metricsPath))
        problems.push(`${where}: prometheus.io/path ${metricsPath} is not the service's /metrics`);
      const shutdownMs = Number(env.get('KSTATE_SHUTDOWN_TIMEOUT_MS') ?? CONFIG_DEFAULTS.shutdownTimeoutMs);
      const graceS = pod.terminationGracePeriodSeconds ?? 30;
      if (graceS * 1000 <= shutdownMs + margin)
        problems.push(
          `${where}: terminationGracePeriodSeconds ${graceS} does not exceed a graceful stop: KSTATE_SHUTDOWN_TIMEOUT_MS ${shutdownMs} + kstate's ${margin} ms deadline margin`,
        );
      problems.push(...variableNameProblems(where, env.keys()));
      problems.push(...credentialProblems(where, c, manifests));
      const storage = env.get('KSTATE_CHECKPOINT_STORAGE') ?? env.get('KSTATE_CHECKPOINT_DIR');
      if (!storage?.startsWith('s3://'))
        problems.push(
          `${where}: KSTATE_CHECKPOINT_STORAGE is ${storage ?? 'unset'}: replicas share nothing but Kafka and the object store, so it must be s3://bucket/prefix`,
        );
      const stateDir = env.get('KSTATE_STATE_DIR') ?? CONFIG_DEFAULTS.stateDir;
      const mount = c.volumeMounts?.find((v) => v.mountPath === stateDir);
      const volume = pod.volumes?.find((v) => v.name === mount?.name);
      if (volume?.emptyDir === undefined)
        problems.push(
          `${where}: no emptyDir volume mounted at the state directory ${stateDir} (KSTATE_STATE_DIR)`,
        );
      problems.push(...userProblems(where, pod, c, image));
      for (const kind of ['requests', 'limits'] as const)
        for (const resource of ['cpu', 'memory'])
          if (c.resources?.[kind]?.[resource] === undefined)
            problems.push(`${where}: no resources.${kind}.${resource}`);
    }
    const pdbs = of(manifests, 'PodDisruptionBudget').filter((p) =>
      matches((p.object.spec as Workload | undefined)?.selector?.matchLabels, labels),
    );
    if (pdbs.length !== 1)
      problems.push(`${where}: ${pdbs.length} PodDisruptionBudgets select its pods; one expected`);
    for (const job of of(manifests, 'Job'))
      if (matches(s.selector?.matchLabels, spec(job).template?.metadata?.labels))
        problems.push(`${where}: its selector also selects the pods of ${nameOf(job)}`);
  }
  return problems;
}

/** An image reference with a tag that is not `latest` (or a digest). */
export function imageReferenceProblems(where: string, image: string | undefined): string[] {
  if (image === undefined) return [`${where}: no image`];
  if (image.includes('@sha256:')) return [];
  const tag = /:([^/:]+)$/.exec(image)?.[1];
  if (tag === undefined) return [`${where}: image ${image} has no tag (that is :latest)`];
  if (tag === 'latest') return [`${where}: image ${image} is :latest: pin a version`];
  return [];
}

/** Credentials come from a Secret of these manifests (by key), never as a literal, anywhere. */
export function credentialProblems(where: string, c: Container, manifests: readonly Manifest[]): string[] {
  const problems: string[] = [];
  const secrets = of(manifests, 'Secret');
  for (const e of c.env ?? []) {
    const secretLike =
      CREDENTIAL_VARIABLES.includes(e.name) || /SECRET|PASSWORD|TOKEN|ACCESS_KEY/.test(e.name);
    if (!secretLike) continue;
    if (e.value !== undefined) {
      problems.push(`${where}: ${e.name} is written inline; take it from a Secret (valueFrom.secretKeyRef)`);
      continue;
    }
    const ref = e.valueFrom?.secretKeyRef;
    if (ref === undefined) {
      problems.push(`${where}: ${e.name} is not from a Secret (valueFrom.secretKeyRef)`);
      continue;
    }
    const secret = secrets.find((s) => s.object.metadata?.name === ref.name);
    const keys = Object.keys({
      ...((secret?.object.data ?? {}) as object),
      ...((secret?.object.stringData ?? {}) as object),
    });
    if (secret === undefined)
      problems.push(`${where}: ${e.name} refers to Secret ${ref.name}, which is not here`);
    else if (!keys.includes(ref.key ?? ''))
      problems.push(
        `${where}: ${e.name} refers to key ${ref.key} of Secret ${ref.name}, which has ${keys.join(', ')}`,
      );
  }
  const fromEnv = new Set((c.env ?? []).map((e) => e.name));
  for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'])
    if (!fromEnv.has(name)) problems.push(`${where}: ${name} is not taken from the Secret`);
  for (const map of of(manifests, 'ConfigMap'))
    for (const key of Object.keys((map.object.data ?? {}) as object))
      if (CREDENTIAL_VARIABLES.includes(key) || /SECRET|PASSWORD|TOKEN/.test(key))
        problems.push(`${nameOf(map)}: ${key} is a credential in a ConfigMap; put it in a Secret`);
  // The Secret in the repository is a placeholder: a real credential never lands in it.
  for (const s of secrets)
    for (const [key, value] of Object.entries({
      ...((s.object.data ?? {}) as Record<string, string>),
      ...((s.object.stringData ?? {}) as Record<string, string>),
    }))
      if (value !== 'replace-me') problems.push(`${nameOf(s)}: ${key} is not the placeholder replace-me`);
  return problems;
}

/** runAsNonRoot, and a runAsUser (if any) equal to the image's numeric non-root USER. */
function userProblems(where: string, pod: PodSpec, c: Container, image: ImageFacts): string[] {
  const problems: string[] = [];
  const nonRoot = c.securityContext?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot;
  if (nonRoot !== true) problems.push(`${where}: securityContext.runAsNonRoot is not true`);
  const uid = c.securityContext?.runAsUser ?? pod.securityContext?.runAsUser;
  const imageUid = image.user?.split(':')[0];
  if (uid === 0) problems.push(`${where}: runAsUser 0 is root`);
  if (uid !== undefined && imageUid !== undefined && String(uid) !== imageUid)
    problems.push(`${where}: runAsUser ${uid} is not the image's USER ${image.user}`);
  if (uid === undefined && !/^\d+$/.test(imageUid ?? ''))
    problems.push(
      `${where}: no runAsUser and the image's USER ${image.user} is not numeric: the kubelet cannot verify runAsNonRoot`,
    );
  return problems;
}

/** The topics Job: the Deployment's image and configuration, so it creates the topics the job reads. */
export function topicsJobProblems(manifests: readonly Manifest[]): string[] {
  const problems: string[] = [];
  const deployment = of(manifests, 'Deployment')[0];
  const image = deployment === undefined ? undefined : containersOf(deployment)[0]?.image;
  for (const job of of(manifests, 'Job')) {
    for (const c of containersOf(job)) {
      if (c.image !== image)
        problems.push(`${nameOf(job)}: image ${c.image} is not the Deployment's ${image}`);
      problems.push(...imageReferenceProblems(nameOf(job), c.image));
      const configMaps = (c.envFrom ?? []).map((e) => e.configMapRef?.name);
      const deploymentMaps = (
        deployment === undefined ? [] : (containersOf(deployment)[0]?.envFrom ?? [])
      ).map((e) => e.configMapRef?.name);
      if (JSON.stringify(configMaps) !== JSON.stringify(deploymentMaps))
        problems.push(`${nameOf(job)}: envFrom ${configMaps.join(', ')} is not the Deployment's`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------------
// The Dockerfile.

export interface Stage {
  readonly from: From;
  readonly image: string;
  readonly name: string | undefined;
  readonly instructions: readonly Instruction[];
}

export interface ParsedDockerfile {
  readonly text: string;
  readonly stages: readonly Stage[];
  /** The last stage: the image. */
  readonly final: Stage;
}

export function parseDockerfile(text: string): ParsedDockerfile {
  const parsed = DockerfileParser.parse(text);
  const stages: Stage[] = [];
  for (const instruction of parsed.getInstructions()) {
    if (instruction instanceof From) {
      const name = instruction.getBuildStage() ?? undefined;
      stages.push({ from: instruction, image: instruction.getImage() ?? '', name, instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (stage === undefined)
      throw new Error(`line ${instruction.getRange().start.line + 1}: an instruction before FROM`);
    (stage.instructions as Instruction[]).push(instruction);
  }
  const final = stages.at(-1);
  if (final === undefined) throw new Error('the Dockerfile has no FROM');
  return { text, stages, final };
}

const keyword = (stage: Stage, k: string) => stage.instructions.filter((i) => i.getKeyword() === k);

/** The strings of an exec-form (JSON array) instruction, or undefined for shell form. */
export function execForm(instruction: Instruction | undefined): string[] | undefined {
  if (!(instruction instanceof JSONInstruction)) return undefined;
  const strings = instruction.getJSONStrings();
  return strings.length === 0 ? undefined : strings.map((s) => s.getJSONValue());
}

/** ENV of a stage, in order (`ENV a=b c=d` and the legacy `ENV a b`). */
export function stageEnv(stage: Stage): Map<string, string> {
  const env = new Map<string, string>();
  for (const i of stage.instructions) {
    if (!(i instanceof Env)) continue;
    for (const p of i.getProperties()) {
      const value = (p.getValue() ?? '').replace(
        /\$\{?([A-Z_]+)\}?/g,
        (all, name: string) => env.get(name) ?? all,
      );
      env.set(p.getName(), value);
    }
  }
  return env;
}

/**
 * The HEALTHCHECK's command in exec form (`HEALTHCHECK [--flag=v ...] CMD ["node", "-e", ...]`), or
 * undefined when there is none or it is in shell form.
 */
export function healthcheckCommand(stage: Stage): string[] | undefined {
  const text = keyword(stage, 'HEALTHCHECK').at(-1)?.getArgumentsContent() ?? '';
  const json = /^(?:--\S+\s+)*CMD\s+(\[.*\])\s*$/s.exec(text.replace(/\\\n/g, ' '))?.[1];
  if (json === undefined) return undefined;
  try {
    const command: unknown = JSON.parse(json);
    return Array.isArray(command) && command.every((c) => typeof c === 'string') ? command : undefined;
  } catch {
    return undefined;
  }
}

export function imageFacts(df: ParsedDockerfile): ImageFacts {
  const users = keyword(df.final, 'USER');
  return {
    env: stageEnv(df.final),
    user: users.at(-1)?.getArgumentsContent() ?? undefined,
    exposed: keyword(df.final, 'EXPOSE').flatMap((i) =>
      i.getArguments().map((a) => Number.parseInt(a.getValue(), 10)),
    ),
    volumes: keyword(df.final, 'VOLUME').flatMap(
      (i) => execForm(i) ?? i.getArguments().map((a) => a.getValue()),
    ),
  };
}

/** Whether framework/node/support.js (the rule every entry point applies) accepts a Node version. */
export function nodeVersionSupported(version: string): boolean {
  const known = supported.get(version);
  if (known !== undefined) return known;
  const probe = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { nodeSupported } from './framework/node/support.js'; process.exit(nodeSupported(${JSON.stringify(version)}) ? 0 : 1)`,
    ],
    { cwd: REPO_ROOT },
  );
  supported.set(version, probe.status === 0);
  return probe.status === 0;
}
const supported = new Map<string, boolean>();

/** Build tools and package managers: none of them runs in the final stage. */
const BUILD_TOOLS = /\b(apt-get|apt|apk|yum|dnf|npm|npx|yarn|pnpm|gcc|g\+\+|make|python3?|node-gyp)\b/;

export function dockerfileProblems(df: ParsedDockerfile): string[] {
  const problems: string[] = [];
  for (const d of lintDockerfile(df.text))
    problems.push(`line ${d.range.start.line + 1}: ${d.message} (dockerfile-utils)`);
  const stageNames = new Set(df.stages.map((s) => s.name).filter((n) => n !== undefined));
  for (const stage of df.stages) {
    if (stageNames.has(stage.image)) continue;
    problems.push(...imageReferenceProblems(`FROM ${stage.image}`, stage.image));
    const node = /^(?:docker\.io\/(?:library\/)?)?node:(\d+\.\d+\.\d+)-(\w+)/.exec(stage.image);
    if (node === null) problems.push(`FROM ${stage.image}: not an official node image with a full version`);
    else {
      if (!nodeVersionSupported(node[1]!))
        problems.push(`FROM ${stage.image}: Node ${node[1]} is not one kstate supports`);
      if (!node[2]!.startsWith('slim')) problems.push(`FROM ${stage.image}: not a -slim image`);
    }
  }
  const build = df.stages.slice(0, -1);
  if (
    !build.some((s) =>
      keyword(s, 'RUN').some((r) => /\bnpm ci\b.*--omit=dev/.test(r.getArgumentsContent() ?? '')),
    )
  )
    problems.push(
      'no build stage runs `npm ci --omit=dev`: the image would hold devDependencies or an unlocked tree',
    );
  const final = df.final;
  for (const r of keyword(final, 'RUN'))
    if (BUILD_TOOLS.test(r.getArgumentsContent() ?? ''))
      problems.push(
        `final stage: RUN ${r.getArgumentsContent()} uses a build tool or package manager; do that in the build stage`,
      );
  const facts = imageFacts(df);
  const uid = facts.user?.split(':')[0];
  if (uid === undefined) problems.push('final stage: no USER: the image would run as root');
  else if (uid === '0' || uid === 'root') problems.push(`final stage: USER ${facts.user} is root`);
  else if (!/^\d+$/.test(uid))
    problems.push(`final stage: USER ${facts.user} is not numeric (runAsNonRoot cannot verify it)`);
  const healthcheck = keyword(final, 'HEALTHCHECK').at(-1);
  const check = healthcheck?.getArgumentsContent() ?? '';
  if (healthcheck === undefined) problems.push('final stage: no HEALTHCHECK');
  else {
    if (healthcheckCommand(final) === undefined)
      problems.push('HEALTHCHECK: not CMD in exec form (a JSON array)');
    if (!check.includes('/livez')) problems.push('HEALTHCHECK: does not ask /livez');
  }
  const entrypoint = execForm(keyword(final, 'ENTRYPOINT').at(-1));
  const cmd = execForm(keyword(final, 'CMD').at(-1));
  if (keyword(final, 'ENTRYPOINT').length > 0 && entrypoint === undefined)
    problems.push('ENTRYPOINT: shell form: SIGTERM would reach /bin/sh, not node');
  if (keyword(final, 'CMD').length > 0 && cmd === undefined)
    problems.push('CMD: shell form: SIGTERM would reach /bin/sh, not node');
  const command = [...(entrypoint ?? []), ...(cmd ?? [])];
  if (command[0] !== 'kstate' || command[1] !== 'run' || command.length !== 3)
    problems.push(`the command is ${JSON.stringify(command)}, not ["kstate", "run", <job module>]`);
  const stopSignal = keyword(final, 'STOPSIGNAL').at(-1)?.getArgumentsContent();
  if (stopSignal !== 'SIGTERM' && stopSignal !== 'SIGINT')
    problems.push(`STOPSIGNAL is ${stopSignal ?? 'unset'}: kstate stops gracefully on SIGTERM (or SIGINT)`);
  const env = facts.env;
  const port = Number(env.get('KSTATE_HTTP_PORT') ?? CONFIG_DEFAULTS.httpPort);
  if (!facts.exposed.includes(port))
    problems.push(`EXPOSE ${facts.exposed.join(' ')} lacks KSTATE_HTTP_PORT ${port}`);
  if (!isWildcard(env.get('KSTATE_HTTP_HOST')))
    problems.push(
      `ENV KSTATE_HTTP_HOST is ${env.get('KSTATE_HTTP_HOST')}: the health check and probes need 0.0.0.0`,
    );
  const stateDir = env.get('KSTATE_STATE_DIR');
  if (stateDir === undefined || !facts.volumes.includes(stateDir))
    problems.push(`KSTATE_STATE_DIR ${stateDir} is not a VOLUME (${facts.volumes.join(', ')})`);
  problems.push(...variableNameProblems('Dockerfile ENV', env.keys()));
  return problems;
}
