import {
  type ManagedCluster,
  readyCondition,
  setCondition,
  type Taint,
  unreachableTaintKey,
} from '../api/index.js';
import type { wire } from '../tunnel/index.js';

// Pure updates of a ManagedCluster: from an agent's status report, on lease
// expiry, and on lease renewal after expiry.

export function applyStatusReport(cluster: ManagedCluster, report: wire.ClusterStatus, now: Date): ManagedCluster {
  const status = {
    ...cluster.status,
    lastObservedTime: now.toISOString(),
    k8sVersion: report.k8sVersion,
    platform: report.platform,
    apiserverURL: report.apiServerUrl,
    healthz: report.healthz === 'ok',
    livez: report.livez === 'ok',
    readyz: report.readyz === 'ok',
    allocatable: report.allocatable,
    capacity: report.capacity,
    nodeStatistics: {
      readyNodes: report.nodeStatistics?.readyNodes ?? 0,
      notReadyNodes: report.nodeStatistics?.notReadyNodes ?? 0,
      unknownNodes: report.nodeStatistics?.unknownNodes ?? 0,
    },
    ...(report.clusterCidr ? { clusterCIDR: report.clusterCidr } : {}),
    ...(report.serviceCidr ? { serviceCIDR: report.serviceCidr } : {}),
  };
  return withReadyFromHealth({ ...cluster, status }, now);
}

/** Ready follows the cluster's readyz while its lease holds. */
export function withReadyFromHealth(cluster: ManagedCluster, now: Date): ManagedCluster {
  const healthy = cluster.status.readyz === true;
  const conditions = setCondition(
    cluster.status.conditions,
    healthy
      ? { type: 'Ready', status: 'True', reason: 'ClusterReady', message: 'cluster is reachable and its API server is ready' }
      : { type: 'Ready', status: 'False', reason: 'ClusterNotReady', message: 'cluster API server readyz is not ok' },
    now,
  );
  return { ...cluster, status: { ...cluster.status, conditions } };
}

export function markUnreachable(cluster: ManagedCluster, leaseDurationMs: number, now: Date): ManagedCluster {
  const conditions = setCondition(
    cluster.status.conditions,
    {
      type: 'Ready',
      status: 'Unknown',
      reason: 'ClusterStatusUnknown',
      message: `no heartbeat within the lease duration of ${Math.round(leaseDurationMs / 1000)}s`,
    },
    now,
  );
  const taints: Taint[] = cluster.spec.taints.some((t) => t.key === unreachableTaintKey)
    ? cluster.spec.taints
    : [...cluster.spec.taints, { key: unreachableTaintKey, effect: 'NoSchedule', timeAdded: now.toISOString() }];
  return { ...cluster, spec: { ...cluster.spec, taints }, status: { ...cluster.status, conditions } };
}

export function markReachable(cluster: ManagedCluster, now: Date): ManagedCluster {
  const taints = cluster.spec.taints.filter((t) => t.key !== unreachableTaintKey);
  return withReadyFromHealth({ ...cluster, spec: { ...cluster.spec, taints } }, now);
}

export function readyValue(cluster: ManagedCluster): 1 | 0 | -1 {
  const s = readyCondition(cluster)?.status;
  return s === 'True' ? 1 : s === 'False' ? 0 : -1;
}
