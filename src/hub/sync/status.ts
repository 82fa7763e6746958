import { isDeepStrictEqual } from 'node:util';
import { boundedText } from '../../api/index.js';
import type { SyncMode } from '../../api/index.js';
import type { wire } from '../../tunnel/index.js';
import type { HubStore, KubeObject } from '../store.js';

// The agent's ApplyReports land in one ClusterSyncStatus per cluster (in its
// dedicated namespace, named after it), for the deployer to aggregate into
// Subscription status. Not on the Manifests themselves: a status write there
// would be a Manifest change, sent back to the agent as a delta.
//
// A Push agent keeps no desired state: the hub's record here of how far its
// pushes were applied (status.push) is where its sync resumes, and each
// push's result (for that push's objects only) is merged into the rows.

export const clusterSyncStatusApiVersion = 'hawser.io/v1alpha1';
const maxObjects = 10_000;

/** A held prune as status shows it, with the command that releases it. */
export interface PruneHeldStatus {
  reason: string;
  incarnation: string;
  revision: number;
  command: string;
}

/** Where a Push cluster's sync stands: every push up to `revision` of `incarnation` was applied. */
export interface PushRecord {
  incarnation: string;
  revision: number;
}

export interface ClusterSyncStatusBody {
  /** The mode the agent runs (its registered mode with its feature gates applied). */
  syncMode?: SyncMode;
  revision?: number;
  appliedAt?: string;
  pruneRan?: boolean;
  objectsOmitted?: number;
  pruneHeldReason?: string;
  pruneHeld?: PruneHeldStatus;
  objects?: ReportedRow[];
  push?: PushRecord;
  /** The agent's offline cache as it last reported it (ApplyReport.offline_cache). */
  offlineCache?: OfflineCacheStatus;
}

/** The agent's offline cache: size against its limit, and how old the desired state it holds is. */
export interface OfflineCacheStatus {
  sizeBytes: number;
  desiredBytes: number;
  limitBytes: number;
  /** When the hub last confirmed the agent's desired state (ISO); absent: never. */
  confirmedAt?: string;
  maxAgeMs: number;
  /** As the agent saw it at the report; a reader compares confirmedAt + maxAge with now as well (the agent may be away). */
  stale: boolean;
  quarantinedRecords: number;
  untrustedReason?: string;
}

function offlineCacheOf(c: wire.OfflineCacheReport): OfflineCacheStatus {
  return {
    sizeBytes: Number(c.sizeBytes),
    desiredBytes: Number(c.desiredBytes),
    limitBytes: Number(c.limitBytes),
    ...(Number(c.confirmedAtUnixMs) > 0 ? { confirmedAt: new Date(Number(c.confirmedAtUnixMs)).toISOString() } : {}),
    maxAgeMs: Number(c.maxAgeMs),
    stale: c.stale,
    quarantinedRecords: c.quarantinedRecords,
    ...(c.untrustedReason ? { untrustedReason: boundedText(c.untrustedReason, 1024) } : {}),
  };
}

interface ReportedRow {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
  subscriptions: string[];
  action: string;
  exists?: boolean;
  error?: { code: string; message: string };
  status?: unknown;
}

/** The command an operator runs to release a held prune (shown by get clusters and describe). */
export function confirmPruneCommand(clusterName: string, incarnation: string, revision: number): string {
  return `hawser sync confirm-prune ${clusterName} --incarnation ${incarnation} --revision ${revision}`;
}

function rowsOf(report: wire.ApplyReport): ReportedRow[] {
  return report.objects.slice(0, maxObjects).map((o) => ({
    apiVersion: boundedText(o.key?.apiVersion ?? '', 256),
    kind: boundedText(o.key?.kind ?? '', 128),
    ...(o.key?.namespace ? { namespace: boundedText(o.key.namespace, 256) } : {}),
    name: boundedText(o.key?.name ?? '', 256),
    subscriptions: o.subscriptions.slice(0, 64).map((s) => boundedText(s, 512)),
    action: boundedText(o.action, 32),
    ...(o.exists === undefined ? {} : { exists: o.exists }),
    ...(o.errorCode ? { error: { code: boundedText(o.errorCode, 64), message: boundedText(o.errorMessage, 1024) } } : {}),
    ...(o.observedStatusJson ? { status: parseStatus(o.observedStatusJson) } : {}),
  }));
}

function rowKey(r: ReportedRow): string {
  return JSON.stringify([r.apiVersion, r.kind, r.namespace ?? '', r.name]);
}

/**
 * The status after `report`. `merge` (a Push delta's result) replaces the
 * rows of the objects it names and drops those it deleted, keeping the rest;
 * otherwise the report's rows are the whole set.
 */
export function syncStatusAfter(
  previous: ClusterSyncStatusBody | undefined,
  clusterName: string,
  report: wire.ApplyReport,
  context: { syncMode?: SyncMode; merge?: boolean; push?: PushRecord },
): ClusterSyncStatusBody {
  let objects = rowsOf(report);
  if (context.merge) {
    const byKey = new Map((previous?.objects ?? []).map((r) => [rowKey(r), r]));
    for (const r of objects) {
      if (r.action === 'deleted') byKey.delete(rowKey(r));
      else byKey.set(rowKey(r), r);
    }
    objects = [...byKey.values()].slice(0, maxObjects);
  }
  const held = report.pruneHeldReason
    ? {
        reason: boundedText(report.pruneHeldReason, 1024),
        incarnation: boundedText(report.pruneHeldIncarnation, 128),
        revision: Number(report.pruneHeldRevision),
        command: confirmPruneCommand(clusterName, boundedText(report.pruneHeldIncarnation, 128), Number(report.pruneHeldRevision)),
      }
    : undefined;
  const push = context.push ?? previous?.push;
  return {
    ...(context.syncMode ? { syncMode: context.syncMode } : previous?.syncMode ? { syncMode: previous.syncMode } : {}),
    revision: Number(report.revision),
    appliedAt: new Date(Number(report.appliedAtUnixMs)).toISOString(),
    pruneRan: report.pruneRan,
    ...(report.objectsOmitted ? { objectsOmitted: report.objectsOmitted } : {}),
    ...(held ? { pruneHeldReason: held.reason, pruneHeld: held } : {}),
    objects,
    ...(push ? { push } : {}),
    ...(report.offlineCache ? { offlineCache: offlineCacheOf(report.offlineCache) } : previous?.offlineCache ? { offlineCache: previous.offlineCache } : {}),
  };
}

function record(namespace: string, clusterName: string, status: ClusterSyncStatusBody): KubeObject {
  return { apiVersion: clusterSyncStatusApiVersion, kind: 'ClusterSyncStatus', metadata: { name: clusterName, namespace }, status: status as Record<string, unknown> };
}

export async function readSyncStatus(store: HubStore, namespace: string, clusterName: string): Promise<ClusterSyncStatusBody | undefined> {
  return (await store.get('ClusterSyncStatus', { namespace, name: clusterName }))?.status as ClusterSyncStatusBody | undefined;
}

/**
 * How stale status.appliedAt may grow: a report that changes nothing else
 * (an agent's periodic pass, every 30 s) is written only this often.
 */
export const appliedAtRefreshMs = 5 * 60_000;

/**
 * Whether `next` is worth a write over `previous`: it changes something a
 * reader sees (the rows, the revision, a held prune, the mode, a Push
 * record), or its appliedAt has moved on by appliedAtRefreshMs.
 */
export function syncStatusChanged(previous: ClusterSyncStatusBody | undefined, next: ClusterSyncStatusBody): boolean {
  if (!previous) return true;
  const { appliedAt: before, offlineCache: cacheBefore, ...rest } = previous;
  const { appliedAt: after, offlineCache: cacheAfter, ...nextRest } = next;
  if (!isDeepStrictEqual(rest, nextRest) || offlineCacheChanged(cacheBefore, cacheAfter)) return true;
  const moved = Date.parse(after ?? '') - Date.parse(before ?? '');
  return !(moved < appliedAtRefreshMs);
}

/**
 * The agent's cache size drifts with every pass (LevelDB's log grows, then
 * compacts) and confirmedAt moves whenever the hub confirms: like appliedAt,
 * that alone is refreshed only every appliedAtRefreshMs. A size that moves by
 * more than 1/16 (of the larger of the two, and at least 1 MiB), being
 * confirmed at all, staleness, quarantines, the limits: written at once.
 */
function offlineCacheChanged(before: OfflineCacheStatus | undefined, after: OfflineCacheStatus | undefined): boolean {
  if (!before || !after) return before !== after;
  const { sizeBytes: sizeBefore, confirmedAt: confirmedBefore, ...restBefore } = before;
  const { sizeBytes: sizeAfter, confirmedAt: confirmedAfter, ...restAfter } = after;
  if (!isDeepStrictEqual(restBefore, restAfter) || (confirmedBefore === undefined) !== (confirmedAfter === undefined)) return true;
  return Math.abs(sizeAfter - sizeBefore) >= Math.max(1024 * 1024, Math.max(sizeBefore, sizeAfter) / 16);
}

export async function writeApplyReport(
  store: HubStore,
  namespace: string,
  clusterName: string,
  report: wire.ApplyReport,
  context: { syncMode?: SyncMode; merge?: boolean; push?: PushRecord } = {},
): Promise<void> {
  const previous = await readSyncStatus(store, namespace, clusterName);
  // What the report builds on: the rows a Push delta merges into, a Push record, the mode when the session does not know it.
  const status = syncStatusAfter(context.merge || context.push || !context.syncMode ? previous : undefined, clusterName, report, context);
  // An agent reports every apply pass: one that changes nothing is no write (and wakes no watcher).
  if (!syncStatusChanged(previous, status)) return;
  // The next report replaces it: not worth a synchronous disk write per pass
  // (except where a Push cluster's sync resumes: that record must survive a crash).
  await store.put('ClusterSyncStatus', { namespace, name: clusterName }, record(namespace, clusterName, status), { durable: context.push !== undefined });
}

/** Records the mode a cluster's agent runs (at each session's start), keeping the rest. */
export async function writeSyncMode(store: HubStore, namespace: string, clusterName: string, syncMode: SyncMode): Promise<void> {
  const previous = await readSyncStatus(store, namespace, clusterName);
  if (previous?.syncMode === syncMode) return;
  await store.put('ClusterSyncStatus', { namespace, name: clusterName }, record(namespace, clusterName, { ...previous, syncMode }), { durable: false });
}

function parseStatus(json: string): unknown {
  try {
    return JSON.parse(json.slice(0, 64 * 1024)) as unknown;
  } catch {
    return undefined;
  }
}
