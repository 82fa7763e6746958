import type { Logger } from 'pino';
import type { OfflineCache } from '../cache/index.js';
import { ErrorCode, type wire } from '../tunnel/index.js';

// Where the agent keeps how far its sync has got: the hub incarnation its
// revisions come from and the highest revision it has durably stored. Read
// at every hello (last_acked_revision, hub_incarnation); written by sync,
// only once what it acknowledges is durable in the same cache.

export interface SyncState {
  /** The hub incarnation (epoch) the revisions belong to; empty before the first. */
  hubIncarnation: string;
  /** Highest revision durably stored; 0: none yet. */
  lastAckedRevision: number;
}

/** What a hello says of sync: the state, and a digest of the desired set at it when the agent keeps one. */
export interface SyncResume extends SyncState, HelloSyncFields {
  /** See Hello.desired_digest; empty when not computed. */
  desiredDigest?: string;
}

export const syncStateCacheKey = 'sync/state';

/** What sync adds to a hello beside its state (feature "chunks"): the partial large object held, the agent's object limit. */
export interface HelloSyncFields {
  partialObject?: wire.SyncPartialObject;
  maxObjectBytes?: number;
}
export const emptySyncState: SyncState = Object.freeze({ hubIncarnation: '', lastAckedRevision: 0 });

/** Longest incarnation id kept (it is the hub's, but this is a file the agent trusts). */
const maxIncarnationLength = 256;

export function isSyncState(value: unknown): value is SyncState {
  const v = value as SyncState | undefined;
  return (
    typeof v?.hubIncarnation === 'string' &&
    v.hubIncarnation.length <= maxIncarnationLength &&
    Number.isSafeInteger(v.lastAckedRevision) &&
    v.lastAckedRevision >= 0
  );
}

/**
 * The stored state, or the empty one when there is none. A damaged or
 * malformed record counts as none: the hub then sends a snapshot, which
 * the agent reconciles (it never deletes because of what it lacks).
 */
export async function readSyncState(cache: OfflineCache | undefined, logger: Logger): Promise<SyncState> {
  if (!cache) return emptySyncState;
  let stored: unknown;
  try {
    stored = await cache.get<unknown>(syncStateCacheKey);
  } catch (err) {
    logger.error({ code: ErrorCode.CacheCorrupt, key: syncStateCacheKey, err: (err as Error).message }, 'sync state in the offline cache is unreadable; asking the hub for everything');
    return emptySyncState;
  }
  if (stored === undefined) return emptySyncState;
  if (!isSyncState(stored)) {
    logger.error({ code: ErrorCode.CacheCorrupt, key: syncStateCacheKey }, 'sync state in the offline cache is malformed; asking the hub for everything');
    return emptySyncState;
  }
  return { hubIncarnation: stored.hubIncarnation, lastAckedRevision: stored.lastAckedRevision };
}

/** Stores the state durably (resolves once it is on disk). */
export async function writeSyncState(cache: OfflineCache, state: SyncState): Promise<void> {
  if (!isSyncState(state)) throw new RangeError(`not a sync state: ${JSON.stringify(state).slice(0, 200)}`);
  await cache.put(syncStateCacheKey, { hubIncarnation: state.hubIncarnation, lastAckedRevision: state.lastAckedRevision });
}
