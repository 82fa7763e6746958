import { parseNano } from './quantity.js';
import type { ClusterInput } from './types.js';

// A cluster's free capacity, from the status its agent reports.

export function isReady(cluster: ClusterInput): boolean {
  const ready = cluster.status?.conditions?.find((c) => c.type === 'Ready');
  return ready?.status === 'True';
}

/** Free resources of a cluster in nano-units: allocatable minus requested. */
export function freeResources(cluster: ClusterInput): Map<string, bigint> | undefined {
  const allocatable = cluster.status?.allocatable;
  if (!allocatable || !isReady(cluster)) return undefined;
  const free = new Map<string, bigint>();
  for (const [k, v] of Object.entries(allocatable)) {
    const total = parseNano(v);
    if (total === undefined) continue;
    const used = parseNano(cluster.status?.requested?.[k] ?? '0') ?? 0n;
    free.set(k, total > used ? total - used : 0n);
  }
  return free;
}

const onePod = 10n ** 9n;

function podNeeds(free: Map<string, bigint>, requests: Map<string, bigint>): Map<string, bigint> {
  const needs = new Map(requests);
  if (free.has('pods') && !needs.has('pods')) needs.set('pods', onePod);
  return needs;
}

export function take(free: Map<string, bigint>, requests: Map<string, bigint>, replicas: number): void {
  for (const [k, need] of podNeeds(free, requests)) {
    const have = free.get(k);
    if (have === undefined) continue;
    const left = have - need * BigInt(replicas);
    free.set(k, left > 0n ? left : 0n);
  }
}

/**
 * Replicas of one feed that fit in `free`. Every replica is a pod, counted
 * against "pods" when the cluster reports it. Room no resource bounds counts
 * as max(desired, 2^20): enough for the feed, and finite so shares can be
 * compared.
 */
export function replicasThatFit(free: Map<string, bigint> | undefined, requests: Map<string, bigint>, desired: number): number {
  if (!free) return 0;
  let fit = BigInt(Math.max(desired, 1 << 20));
  for (const [k, need] of podNeeds(free, requests)) {
    if (need <= 0n) continue;
    const have = free.get(k);
    if (have === undefined) return 0;
    const n = have / need;
    if (n < fit) fit = n;
  }
  return Number(fit);
}
