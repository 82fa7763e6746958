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

export function clustersTable(clusters: ManagedCluster[], nowMs: number): string {
  const header = ['NAME', 'CLUSTER ID', 'SYNC MODE', 'KUBERNETES', 'READYZ', 'READY', 'AGE'];
  const rows = clusters
    .slice()
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))
    .map((c) => [
      c.metadata.name,
      c.spec.clusterId,
      c.spec.syncMode,
      c.status.k8sVersion || '<unknown>',
      health(c.status.readyz),
      readyCondition(c)?.status ?? 'Unknown',
      c.metadata.creationTimestamp ? formatDuration(Math.max(0, nowMs - Date.parse(c.metadata.creationTimestamp))) : '<unknown>',
    ]);
  return renderTable(header, rows);
}

export function renderObjects(items: unknown[], format: 'json' | 'yaml'): string {
  const list = { apiVersion: 'v1', kind: 'List', items };
  return format === 'json' ? JSON.stringify(list, null, 2) : stringify(list);
}

export function renderObject(item: unknown, format: 'json' | 'yaml'): string {
  return format === 'json' ? JSON.stringify(item, null, 2) : stringify(item);
}
