import { type Candidate, type FeedInfo } from './candidate.js';
import { divideByWeight } from './divide.js';
import { SchedulingErrorCode as Code, type SchedulingErrorCode } from './types.js';

export type DivideResult =
  | { ok: true; shares: Map<string, Map<string, number>> }
  | { ok: false; code: SchedulingErrorCode; message: string };

/**
 * Static: each cluster weighs the sum of the weights of the subscribers that
 * match it (as Clusternet does). A held cluster keeps the smaller of its
 * previous share and its weighted share; the rest is divided among the
 * others by weight.
 */
export function divideStatic(
  pool: readonly Candidate[],
  subscriberWeights: readonly number[],
  divided: readonly FeedInfo[],
  prevShares: Map<string, Map<string, number | undefined>>,
): DivideResult {
  const shares = new Map(pool.map((c) => [c.ref.key, new Map<string, number>()]));
  if (divided.length === 0) return { ok: true, shares };
  const weights = pool.map((c) => c.subscribers.reduce((sum, i) => sum + (subscriberWeights[i] ?? 0), 0));
  const keys = pool.map((c) => c.ref.key);
  if (weights.every((w) => w === 0)) {
    return subscriberWeights.every((w) => w === 0)
      ? { ok: false, code: Code.InvalidScheduling, message: 'spec.subscribers[*].weight: Static dividing needs a weight above 0 on at least one subscriber' }
      : { ok: false, code: Code.NoMatchingClusters, message: 'Static dividing: no cluster that can take replicas matches a subscriber with a weight above 0' };
  }
  for (const f of divided) {
    const target = divideByWeight(f.desired!, weights, keys);
    const kept = pool.map((c, i) => (c.held ? Math.min(target[i]!, prevShares.get(c.ref.key)?.get(f.key) ?? 0) : 0));
    const rest = f.desired! - kept.reduce((a, n) => a + n, 0);
    const activeWeights = pool.map((c, i) => (c.held ? 0 : weights[i]!));
    if (rest > 0 && activeWeights.every((w) => w === 0)) {
      return {
        ok: false,
        code: Code.InsufficientCapacity,
        message: `feed ${f.key}: ${rest} of ${f.desired} replicas have no cluster to go to: every cluster with a weight is held by a taint`,
      };
    }
    const spread = divideByWeight(rest, activeWeights, keys);
    pool.forEach((c, i) => shares.get(c.ref.key)!.set(f.key, c.held ? kept[i]! : spread[i]!));
  }
  return { ok: true, shares };
}
