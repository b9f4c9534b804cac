/**
 * What the AWS SDK throws, as catalogued StreamErrors that say what to do. Three kinds matter to a
 * user: the bucket is not there (CHECKPOINT_NOT_FOUND), the store refuses who we are or what we ask
 * (CHECKPOINT_STORAGE_DENIED), and everything else, after the SDK's retries (CHECKPOINT_STORAGE_FAILED):
 * an unreachable endpoint, 5xx, throttling, timeouts. None of them touches what is committed.
 */
import { StreamError } from '../../framework/index.ts';

interface SdkErrorLike {
  readonly name?: string;
  readonly code?: string;
  readonly message?: string;
  readonly Code?: string;
  readonly $metadata?: { readonly httpStatusCode?: number; readonly attempts?: number };
}

const DENIED = new Set([
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'AllAccessDisabled',
  'AccountProblem',
]);
const NETWORK = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'TimeoutError',
  'RequestTimeout',
]);

export function statusOf(e: unknown): number | undefined {
  return (e as SdkErrorLike | null)?.$metadata?.httpStatusCode;
}

export function nameOf(e: unknown): string {
  const x = e as SdkErrorLike | null;
  return x?.Code ?? x?.name ?? x?.code ?? 'Error';
}

/** True for "no such object" answers (GET, HEAD). */
export function isNotFound(e: unknown): boolean {
  const name = nameOf(e);
  return name === 'NoSuchKey' || name === 'NotFound' || (statusOf(e) === 404 && name !== 'NoSuchBucket');
}

const CHECKPOINT_OUTCOME = 'The checkpoint is not committed; the task goes on from the last good one.';

export interface S3ErrorContext {
  /** What was being done: "write s3://b/k", "check bucket b" ... */
  readonly op: string;
  readonly bucket: string;
  /** The endpoint as configured, or "AWS S3 (<region>)". */
  readonly endpoint: string;
  /** What names the bucket, for "fix the bucket in ...". Default: the checkpoint storage setting. */
  readonly setting?: string;
  /** What a failure leaves, ending the message. Default: the checkpoint's (not committed). */
  readonly outcome?: string;
}

/** The StreamError for `e`, thrown by the SDK while doing `ctx.op`. */
export function s3Error(e: unknown, ctx: S3ErrorContext): StreamError {
  if (e instanceof StreamError) return e;
  const name = nameOf(e);
  const status = statusOf(e);
  const attempts = (e as SdkErrorLike | null)?.$metadata?.attempts;
  // A HEAD has no body, so its refusal has no S3 error code: the SDK calls it 'Unknown'.
  const shown = name === 'Unknown' && status === 403 ? 'Forbidden' : name;
  const detail = `${shown}${status === undefined ? '' : ` (HTTP ${status})`}${attempts !== undefined && attempts > 1 ? ` after ${attempts} attempts` : ''}`;
  const message = (e as SdkErrorLike | null)?.message ?? String(e);
  if (name === 'NoSuchBucket' || (ctx.op.startsWith('check bucket') && status === 404)) {
    return new StreamError(
      'CHECKPOINT_NOT_FOUND',
      `cannot ${ctx.op}: bucket "${ctx.bucket}" does not exist at ${ctx.endpoint}. Create it (e.g. \`aws s3 mb s3://${ctx.bucket}\`), or fix the bucket in ${ctx.setting ?? 'the checkpoint storage setting (KSTATE_CHECKPOINT_STORAGE)'} or the endpoint (KSTATE_S3_ENDPOINT).`,
      { cause: e },
    );
  }
  if (name === 'CredentialsProviderError' || /Could not load credentials/i.test(message)) {
    return new StreamError(
      'CHECKPOINT_STORAGE_DENIED',
      `cannot ${ctx.op}: no credentials for the object store at ${ctx.endpoint} (${message}). Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or use a web identity (IRSA, workload identity): the AWS SDK's default chain.`,
      { cause: e },
    );
  }
  if (DENIED.has(name) || status === 403 || status === 401) {
    return new StreamError(
      'CHECKPOINT_STORAGE_DENIED',
      `cannot ${ctx.op}: the object store at ${ctx.endpoint} refused it: ${detail}. Check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE ...) and that they may s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket on bucket "${ctx.bucket}". Nothing committed is affected.`,
      { cause: e },
    );
  }
  const code = (e as SdkErrorLike | null)?.code;
  if (
    NETWORK.has(name) ||
    (code !== undefined && NETWORK.has(code)) ||
    /socket hang up|ECONNREFUSED|ENOTFOUND|ETIMEDOUT/.test(message)
  ) {
    return new StreamError(
      'CHECKPOINT_STORAGE_FAILED',
      `cannot ${ctx.op}: the object store at ${ctx.endpoint} cannot be reached (${code ?? name}: ${message}). Check the endpoint (KSTATE_S3_ENDPOINT) and the network. ${ctx.outcome ?? CHECKPOINT_OUTCOME}`,
      { cause: e },
    );
  }
  return new StreamError(
    'CHECKPOINT_STORAGE_FAILED',
    `cannot ${ctx.op}: the object store at ${ctx.endpoint} answered ${detail}: ${message}. ${ctx.outcome ?? CHECKPOINT_OUTCOME}`,
    { cause: e },
  );
}
