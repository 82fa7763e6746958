import type { KubeObject } from '../store/types.js';

// What agents report back (their ClusterSyncStatus, one per cluster) folded
// into a subscription's per-cluster rows and its Applied and Healthy
// conditions, as Clusternet's aggregated status does.

interface ReportedObject {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
  subscriptions?: string[];
  action?: string;
  exists?: boolean;
  error?: { code: string; message: string };
  status?: { replicas?: number; readyReplicas?: number; generation?: number; observedGeneration?: number };
}

/** One cluster's share of a subscription, as its agent last reported it. */
export interface ClusterHealth {
  /** Objects of this subscription the agent applied and found present. */
  applied: number;
  /** Objects it reported at all (0: no report yet). */
  reported: number;
  /** Workloads whose ready replicas reach what was asked; undefined when none are workloads. */
  ready?: { ready: number; workloads: number };
  errors: Array<{ object: string; code: string; message: string }>;
  pruneHeld?: string;
}

const maxErrorsPerCluster = 5;

function objectName(o: ReportedObject): string {
  return `${o.kind}/${o.namespace ? `${o.namespace}/` : ''}${o.name}`;
}

/** A workload is ready when its controller has seen the current spec and every asked replica is ready. */
function workloadReady(o: ReportedObject, desiredReplicas: number | undefined): boolean | undefined {
  const s = o.status;
  if (!s || (s.replicas === undefined && desiredReplicas === undefined)) return undefined;
  if (s.generation !== undefined && s.observedGeneration !== undefined && s.observedGeneration < s.generation) return false;
  return (s.readyReplicas ?? 0) >= (desiredReplicas ?? s.replicas ?? 0);
}

/**
 * The health of `subscription` ("namespace/name") in one cluster, from its
 * ClusterSyncStatus. `desiredReplicas` gives a workload's asked replicas by
 * "Kind/namespace/name" (from the Manifests), so a scale-up is not ready until
 * the new pods are.
 */
export function clusterHealth(syncStatus: KubeObject | undefined, subscription: string, desiredReplicas: ReadonlyMap<string, number>): ClusterHealth {
  const status = (syncStatus?.status ?? {}) as { objects?: ReportedObject[]; pruneHeldReason?: string; pruneHeld?: { command?: string } };
  const mine = (status.objects ?? []).filter((o) => o.subscriptions?.includes(subscription));
  const health: ClusterHealth = { applied: 0, reported: mine.length, errors: [] };
  if (status.pruneHeldReason) health.pruneHeld = status.pruneHeld?.command ? `${status.pruneHeldReason}; release with: ${status.pruneHeld.command}` : status.pruneHeldReason;
  let workloads = 0;
  let ready = 0;
  for (const o of mine) {
    if (o.error) {
      if (health.errors.length < maxErrorsPerCluster) health.errors.push({ object: objectName(o), code: o.error.code, message: o.error.message });
      continue;
    }
    if (o.exists !== false && o.action !== 'deleted') health.applied++;
    const r = workloadReady(o, desiredReplicas.get(objectName(o)));
    if (r !== undefined) {
      workloads++;
      if (r) ready++;
    }
  }
  if (workloads > 0) health.ready = { ready, workloads };
  return health;
}

export type HealthCondition = { type: 'Applied' | 'Healthy'; status: 'True' | 'False' | 'Unknown'; reason: string; message: string };

/** Applied and Healthy over every cluster of the placement (held clusters count as they last reported). */
export function healthConditions(rows: ReadonlyArray<{ cluster: string; manifests: number; health?: ClusterHealth }>): HealthCondition[] {
  if (rows.length === 0) {
    return [
      { type: 'Applied', status: 'Unknown', reason: 'NoClusters', message: 'placed on no cluster' },
      { type: 'Healthy', status: 'Unknown', reason: 'NoClusters', message: 'placed on no cluster' },
    ];
  }
  const failing = rows.filter((r) => (r.health?.errors.length ?? 0) > 0);
  const pending = rows.filter((r) => !r.health || r.health.applied + r.health.errors.length < r.manifests);
  const applied: HealthCondition =
    failing.length > 0
      ? { type: 'Applied', status: 'False', reason: 'ApplyFailed', message: `apply failed in ${failing.map((r) => r.cluster).join(', ')}: ${failing[0]!.health!.errors[0]!.code} ${failing[0]!.health!.errors[0]!.object}` }
      : pending.length > 0
        ? { type: 'Applied', status: 'Unknown', reason: 'Pending', message: `waiting for ${pending.length} of ${rows.length} cluster(s) to report` }
        : { type: 'Applied', status: 'True', reason: 'Applied', message: `applied in ${rows.length} cluster(s)` };
  const notReady = rows.filter((r) => r.health?.ready && r.health.ready.ready < r.health.ready.workloads);
  const healthy: HealthCondition =
    applied.status !== 'True'
      ? { type: 'Healthy', status: 'Unknown', reason: applied.reason, message: 'not applied everywhere yet' }
      : notReady.length > 0
        ? { type: 'Healthy', status: 'False', reason: 'NotReady', message: `workloads not ready in ${notReady.map((r) => `${r.cluster} (${r.health!.ready!.ready}/${r.health!.ready!.workloads})`).join(', ')}` }
        : { type: 'Healthy', status: 'True', reason: 'Ready', message: 'every workload has its replicas ready' };
  return [applied, healthy];
}
