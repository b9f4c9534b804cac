import { StreamError } from '../api/errors.ts';
import type { Serializer } from '../api/serializer.ts';
import type { StateDescriptor, StateTtlConfig } from '../api/state.ts';
import type { KeyedStateSnapshot, StateMeta } from './backend.ts';
import { builtinSerializer, checkSerializerCompatible, defaultSerializer } from './serializers.ts';

/**
 * State registration rules shared by every keyed backend: what a descriptor records (its meta),
 * when two registrations conflict, and when a snapshot's state may be read by the current one.
 */

export const KEYED_SNAPSHOT_FORMAT_VERSION = 1;

/** The meta and serializer of a descriptor, with TTL defaults filled in and checked. */
export function describeState(d: StateDescriptor): { meta: StateMeta; serializer: Serializer<unknown> } {
  if (typeof d.name !== 'string' || d.name.length === 0) {
    throw new StreamError(
      'CONFIG_INVALID',
      `a ${d.kind} state descriptor has no name; give every state a unique name`,
    );
  }
  if (d.kind === 'timeIndexed' && (d as { ttl?: unknown }).ttl !== undefined) {
    throw new StreamError('CONFIG_INVALID', `time-indexed state '${d.name}' takes retentionMs, not a ttl`);
  }
  const serializer = (d.serializer ?? defaultSerializer()) as Serializer<unknown>;
  const meta: StateMeta = {
    name: d.name,
    kind: d.kind,
    serializerId: serializer.id,
    serializerVersion: serializer.version,
    ...(d.ttl === undefined ? {} : { ttl: normalizeTtl(d.name, d.ttl) }),
  };
  return { meta, serializer };
}

function normalizeTtl(name: string, ttl: StateTtlConfig): StateTtlConfig {
  if (!(typeof ttl.ttlMs === 'number' && ttl.ttlMs > 0 && Number.isFinite(ttl.ttlMs))) {
    throw new StreamError(
      'CONFIG_INVALID',
      `state '${name}': ttl.ttlMs must be a positive number of milliseconds, got ${ttl.ttlMs}`,
    );
  }
  if (ttl.time !== 'processing' && ttl.time !== 'event') {
    throw new StreamError(
      'CONFIG_INVALID',
      `state '${name}': ttl.time must be 'processing' or 'event', got ${String(ttl.time)}`,
    );
  }
  const update = ttl.update ?? 'onCreateAndWrite';
  if (update !== 'onCreateAndWrite' && update !== 'onReadAndWrite') {
    throw new StreamError(
      'CONFIG_INVALID',
      `state '${name}': ttl.update must be 'onCreateAndWrite' or 'onReadAndWrite', got ${String(update)}`,
    );
  }
  const visibility = ttl.visibility ?? 'neverReturnExpired';
  if (visibility !== 'neverReturnExpired' && visibility !== 'returnExpiredIfNotCleanedUp') {
    throw new StreamError(
      'CONFIG_INVALID',
      `state '${name}': ttl.visibility must be 'neverReturnExpired' or 'returnExpiredIfNotCleanedUp', got ${String(visibility)}`,
    );
  }
  return { ttlMs: ttl.ttlMs, time: ttl.time, update, visibility };
}

/**
 * The serializer a backend uses for `meta`: the one passed to `register`, else the built-in with the
 * meta's id. Throws CONFIG_INVALID when neither fits.
 */
export function resolveSerializer(meta: StateMeta, serializer?: Serializer<unknown>): Serializer<unknown> {
  const s = serializer ?? builtinSerializer(meta.serializerId);
  if (s === undefined) {
    throw new StreamError(
      'CONFIG_INVALID',
      `state '${meta.name}' uses serializer '${meta.serializerId}', which is not built in: pass it to register()`,
    );
  }
  if (s.id !== meta.serializerId || s.version !== meta.serializerVersion) {
    throw new StreamError(
      'CONFIG_INVALID',
      `state '${meta.name}': the serializer passed to register() is '${s.id}' v${s.version} ` +
        `but the meta names '${meta.serializerId}' v${meta.serializerVersion}`,
    );
  }
  return s;
}

/** Throws STATE_DESCRIPTOR_CONFLICT when `next` re-registers `existing`'s name differently. */
export function checkSameRegistration(existing: StateMeta, next: StateMeta): void {
  const what =
    existing.kind !== next.kind
      ? `as a ${existing.kind} state and now as a ${next.kind} state`
      : existing.serializerId !== next.serializerId || existing.serializerVersion !== next.serializerVersion
        ? `with serializer '${existing.serializerId}' v${existing.serializerVersion} and now with ` +
          `'${next.serializerId}' v${next.serializerVersion}`
        : !sameTtl(existing.ttl, next.ttl)
          ? `with TTL ${describeTtl(existing.ttl)} and now with TTL ${describeTtl(next.ttl)}`
          : undefined;
  if (what !== undefined) {
    throw new StreamError(
      'STATE_DESCRIPTOR_CONFLICT',
      `state '${next.name}' was registered ${what}: each state name needs one descriptor`,
    );
  }
}

/**
 * Whether the state `current` may read the entries that a snapshot recorded under `inSnapshot`:
 * the same kind (else STATE_DESCRIPTOR_CONFLICT), a compatible serializer (else SERIALIZER_MISMATCH)
 * and TTL on or off in both (the stored values are wrapped with timestamps only with TTL). The TTL
 * duration, time domain, update type and visibility may change.
 */
export function checkRestoredCompatible(inSnapshot: StateMeta, current: StateMeta, where?: string): void {
  const at = where === undefined ? '' : ` in ${where}`;
  if (inSnapshot.kind !== current.kind) {
    throw new StreamError(
      'STATE_DESCRIPTOR_CONFLICT',
      `state '${current.name}'${at} is a ${inSnapshot.kind} state but is now declared as a ${current.kind} state`,
    );
  }
  checkSerializerCompatible(
    inSnapshot,
    { id: current.serializerId, version: current.serializerVersion },
    where,
  );
  if ((inSnapshot.ttl === undefined) !== (current.ttl === undefined)) {
    throw new StreamError(
      'STATE_DESCRIPTOR_CONFLICT',
      `state '${current.name}'${at} was written ${inSnapshot.ttl ? 'with' : 'without'} a TTL and is now declared ` +
        `${current.ttl ? 'with' : 'without'} one: turning TTL on or off needs a state migration`,
    );
  }
}

/** Throws SNAPSHOT_FORMAT_UNSUPPORTED unless this build reads the snapshot's format version. */
export function checkKeyedSnapshotFormat(snapshot: KeyedStateSnapshot, where?: string): void {
  if (snapshot.formatVersion !== KEYED_SNAPSHOT_FORMAT_VERSION) {
    throw new StreamError(
      'SNAPSHOT_FORMAT_UNSUPPORTED',
      `keyed state snapshot${where === undefined ? '' : ` ${where}`} has format version ${String(snapshot.formatVersion)}; ` +
        `this build reads version ${KEYED_SNAPSHOT_FORMAT_VERSION}`,
    );
  }
}

function sameTtl(a: StateTtlConfig | undefined, b: StateTtlConfig | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return (
    a.ttlMs === b.ttlMs &&
    a.time === b.time &&
    (a.update ?? 'onCreateAndWrite') === (b.update ?? 'onCreateAndWrite') &&
    (a.visibility ?? 'neverReturnExpired') === (b.visibility ?? 'neverReturnExpired')
  );
}

function describeTtl(t: StateTtlConfig | undefined): string {
  return t === undefined ? 'off' : `${t.ttlMs} ms (${t.time} time, ${t.update}, ${t.visibility})`;
}
