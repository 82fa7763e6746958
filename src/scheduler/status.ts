import type { Placement } from './types.js';

/**
 * Clusternet's view of a placement (SubscriptionStatus bindingClusters and
 * replicas): binding clusters sorted, and per feed key one count per binding
 * cluster in the same order, or an empty list for a feed that goes whole.
 */
export function toSubscriptionStatus(placement: Placement): { bindingClusters: string[]; replicas: Record<string, number[]> } {
  const bindingClusters = placement.clusters.map((c) => c.cluster.key);
  const replicas: Record<string, number[]> = {};
  for (const [i, c] of placement.clusters.entries()) {
    for (const f of c.feeds) {
      replicas[f.key] ??= [];
      if (f.replicas !== undefined) replicas[f.key]![i] = f.replicas;
    }
  }
  for (const [k, list] of Object.entries(replicas)) {
    replicas[k] = list.length === 0 ? [] : bindingClusters.map((_, i) => list[i] ?? 0);
  }
  return { bindingClusters, replicas };
}
