import { type Candidate, type FeedInfo, notSelected, owed } from './candidate.js';
import { replicasThatFit, take } from './capacity.js';
import { distribute, type DynamicMember, type TopologyRule } from './divide.js';
import { type DynamicDividing, type EvictedShare, type Exclusion, SchedulingErrorCode as Code, type SchedulingErrorCode } from './types.js';

export type DynamicResult =
  | { ok: true; selected: Candidate[]; shares: Map<string, Map<string, number>>; notSelected: Exclusion[] }
  | { ok: false; code: SchedulingErrorCode; message: string; notSelected: Exclusion[] };

/**
 * Dynamic: a sticky division. Clusters keep their previous shares; only the
 * difference from the desired count is divided, by free capacity (a
 * cluster's allocatable minus requested, over one replica's requests), and a
 * cluster that lost its share to a taint gets it back when it returns.
 * minClusters and maxClusters bound the clusters the subscription is bound
 * to; a bound cluster may hold 0 replicas of a divided feed, as in Clusternet.
 */
export function divideDynamic(
  pool: Candidate[],
  dyn: DynamicDividing,
  divided: readonly FeedInfo[],
  prevShares: Map<string, Map<string, number | undefined>>,
  prevEvicted: Map<string, EvictedShare[]>,
): DynamicResult {
  const strategy = dyn.strategy === 'Binpack' ? 'Binpack' : 'Spread';
  const min = dyn.minClusters ?? 0;
  const max = dyn.maxClusters ?? Number.POSITIVE_INFINITY;
  const rules: TopologyRule[] = (dyn.topologySpreadConstraints ?? []).map((c) => ({
    topologyKey: c.topologyKey,
    maxSkew: c.maxSkew,
    hard: c.whenUnsatisfiable === 'DoNotSchedule',
    minDomains: c.minDomains ?? 1,
  }));
  const baseOf = (c: Candidate, f: FeedInfo): number => {
    const prev = prevShares.get(c.ref.key)?.get(f.key);
    if (prev !== undefined) return prev;
    return c.held ? 0 : owed(prevEvicted, c.ref.key, f.key);
  };
  const returning = (c: Candidate) => !c.held && !prevShares.has(c.ref.key) && prevEvicted.has(c.ref.key);

  const domainLabels = pool.map((c) => c.labels);
  const hardKey = rules.find((r) => r.hard)?.topologyKey;
  if (hardKey !== undefined && strategy === 'Spread' && max < pool.length) {
    pool = spreadOverDomains(pool, max, hardKey);
  }

  let count: number;
  if (strategy === 'Spread' || divided.length === 0) {
    count = Math.min(pool.length, max);
  } else {
    // Binpack: the sticky clusters, then as few more as cover what is needed.
    count = Math.min(pool.filter((c) => c.sticky).length, max);
    const covered = (n: number) =>
      divided.every((f) => {
        const members = pool.slice(0, n);
        const base = members.reduce((a, c) => a + baseOf(c, f), 0);
        const room = members.reduce((a, c) => a + c.room.get(f.key)!, 0);
        return f.desired! - base <= room;
      });
    while (count < Math.min(pool.length, max) && (count < min || !covered(count))) count += 1;
  }

  for (;;) {
    const selected = pool.slice(0, count);
    const left: Exclusion[] = pool
      .slice(count)
      .map((c) => notSelected(c, strategy === 'Binpack' ? 'Binpack needs no more clusters' : `beyond dynamicDividing.maxClusters ${max}`));
    if (selected.length < min) {
      return {
        ok: false,
        code: Code.MinClustersNotMet,
        message: `dynamicDividing.minClusters is ${min} but only ${selected.length} clusters can be selected`,
        notSelected: left,
      };
    }
    const shares = new Map(selected.map((c) => [c.ref.key, new Map<string, number>()]));
    const free = new Map(selected.map((c) => [c.ref.key, c.free ? new Map(c.free) : undefined]));
    let failure: { code: SchedulingErrorCode; message: string } | undefined;
    for (const f of divided) {
      const members: DynamicMember[] = selected.map((c, i) => ({
        key: c.ref.key,
        order: i,
        preference: c.preference,
        labels: c.labels,
        base: baseOf(c, f),
        room: replicasThatFit(free.get(c.ref.key), f.requests!, f.desired!),
        protected: returning(c),
      }));
      const result = distribute(f.desired!, members, strategy, rules, domainLabels);
      if (!result.ok) {
        failure = {
          code: result.reason === 'topology' ? Code.TopologyUnsatisfiable : Code.InsufficientCapacity,
          message: `feed ${f.key}: ${result.message}`,
        };
        break;
      }
      for (const m of members) {
        const n = result.shares.get(m.key)!;
        shares.get(m.key)!.set(f.key, n);
        // Later feeds see what this one took.
        const left = free.get(m.key);
        if (left && n > m.base) take(left, f.requests!, n - m.base);
      }
    }
    if (failure) {
      if (strategy === 'Binpack' && count < Math.min(pool.length, max)) {
        // Doubling bounds the retries; clusters left empty are let go below.
        count = Math.min(pool.length, max, count * 2 + 1);
        continue;
      }
      return { ok: false, ...failure, notSelected: left };
    }
    if (strategy === 'Binpack' && divided.length > 0) {
      // Let go of clusters left with nothing, last first, down to minClusters.
      for (let i = selected.length - 1; i >= 0 && selected.length > min; i--) {
        const c = selected[i]!;
        if (c.held) continue;
        if (divided.every((f) => shares.get(c.ref.key)!.get(f.key) === 0)) {
          selected.splice(i, 1);
          shares.delete(c.ref.key);
          left.push(notSelected(c, 'Binpack needs no more clusters'));
        }
      }
    }
    return { ok: true, selected, shares, notSelected: left };
  }
}

/**
 * Under a DoNotSchedule topology rule and maxClusters, the clusters kept are
 * spread over the rule's domains: each next one is taken from the domain with
 * the fewest taken so far, sticky clusters before any others. The selection
 * comes first, in pool order, then the rest.
 */
function spreadOverDomains(pool: readonly Candidate[], max: number, topologyKey: string): Candidate[] {
  const chosen = new Set<Candidate>();
  const taken = new Map<string, number>();
  const fill = (list: readonly Candidate[]) => {
    const queues = new Map<string, Candidate[]>();
    for (const c of list) {
      const d = c.labels[topologyKey] ?? '';
      if (!queues.has(d)) queues.set(d, []);
      queues.get(d)!.push(c);
    }
    while (chosen.size < max) {
      let pick: string | undefined;
      for (const [d, q] of queues) {
        if (q.length === 0) continue;
        if (pick === undefined || (taken.get(d) ?? 0) < (taken.get(pick) ?? 0)) pick = d;
      }
      if (pick === undefined) return;
      chosen.add(queues.get(pick)!.shift()!);
      taken.set(pick, (taken.get(pick) ?? 0) + 1);
    }
  };
  fill(pool.filter((c) => c.sticky));
  fill(pool.filter((c) => !c.sticky));
  return [...pool.filter((c) => chosen.has(c)), ...pool.filter((c) => !chosen.has(c))];
}
