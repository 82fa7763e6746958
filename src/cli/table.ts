import { stringify } from 'yaml';
import { formatDuration } from '../tunnel/index.js';
import { type ManagedCluster, readyCondition } from '../api/index.js';

export function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]! + 3))).join('').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

function health(v: boolean | undefined): string {
  return v === undefined ? '<unknown>' : v ? 'ok' : 'failed';
}

/** What the hub API adds to a cluster's status: its agent's sync, as last reported (src/hub/http.ts). */
interface ClusterSyncView {
  syncMode?: string;
  pruneHeld?: { reason: string; incarnation: string; revision: number; command: string };
  offlineCache?: { sizeBytes: number; limitBytes: number; confirmedAt?: string; maxAgeMs: number; stale: boolean; untrustedReason?: string };
}

/** Why a cluster's cached desired state is worth a line: stale (reported, or its max age passed since it was confirmed), or untrusted. */
function offlineCacheNotes(c: ManagedCluster, nowMs: number): string[] {
  const cache = syncOf(c)?.offlineCache;
  if (!cache) return [];
  const confirmed = cache.confirmedAt ? Date.parse(cache.confirmedAt) : undefined;
  const stale = cache.stale || (cache.maxAgeMs > 0 && confirmed !== undefined && nowMs - confirmed > cache.maxAgeMs);
  const notes: string[] = [];
  if (stale) {
    const age = confirmed === undefined ? 'unknown' : formatDuration(Math.max(0, nowMs - confirmed));
    notes.push(`${c.metadata.name}: offline cache stale: desired state last confirmed by the hub ${age} ago (max age ${formatDuration(cache.maxAgeMs)}); still reconciled`);
  }
  if (cache.untrustedReason) notes.push(`${c.metadata.name}: offline cache untrusted (no prune until the hub's snapshot): ${cache.untrustedReason}`);
  return notes;
}

function syncOf(c: ManagedCluster): ClusterSyncView | undefined {
  return (c.status as { sync?: ClusterSyncView }).sync;
}

/** The mode the agent runs; "Pull (Push asked)" when its feature gates made it Pull. */
function syncModeShown(c: ManagedCluster): string {
  const running = syncOf(c)?.syncMode;
  if (!running) return c.spec.syncMode;
  return running === c.spec.syncMode ? running : `${running} (${c.spec.syncMode} asked)`;
}

export function clustersTable(clusters: ManagedCluster[], nowMs: number): string {
  const header = ['NAME', 'CLUSTER ID', 'SYNC MODE', 'KUBERNETES', 'READYZ', 'READY', 'AGE', 'PRUNE'];
  const sorted = clusters.slice().sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  const rows = sorted
    .map((c) => [
      c.metadata.name,
      c.spec.clusterId,
      syncModeShown(c),
      c.status.k8sVersion || '<unknown>',
      health(c.status.readyz),
      readyCondition(c)?.status ?? 'Unknown',
      c.metadata.creationTimestamp ? formatDuration(Math.max(0, nowMs - Date.parse(c.metadata.creationTimestamp))) : '<unknown>',
      syncOf(c)?.pruneHeld ? 'held' : '-',
    ]);
  const held = sorted.flatMap((c) => {
    const h = syncOf(c)?.pruneHeld;
    return h ? [`${c.metadata.name}: prune held: ${h.reason}\n  release with: ${h.command}`] : [];
  });
  const notes = [...held, ...sorted.flatMap((c) => offlineCacheNotes(c, nowMs))];
  return [renderTable(header, rows), ...(notes.length > 0 ? ['', ...notes] : [])].join('\n');
}

export function renderObjects(items: unknown[], format: 'json' | 'yaml'): string {
  const list = { apiVersion: 'v1', kind: 'List', items };
  return format === 'json' ? JSON.stringify(list, null, 2) : stringify(list);
}

export function renderObject(item: unknown, format: 'json' | 'yaml'): string {
  return format === 'json' ? JSON.stringify(item, null, 2) : stringify(item);
}
