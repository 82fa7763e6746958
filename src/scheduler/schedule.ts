import { distribute, divideByWeight, type DynamicMember, type TopologyRule } from './divide.js';
import { feedKey, replicaRequests } from './feeds.js';
import { parseNano } from './quantity.js';
import { clusterLabels, selectorMatches, termMatches } from './selector.js';
import { preferNoScheduleCount, taintVerdict } from './taints.js';
import {
  type ClusterInput,
  type ClusterPlacement,
  type ClusterRef,
  type EvictedShare,
  type Exclusion,
  type Feed,
  type FeedOrder,
  type FeedPlacement,
  type HoldReason,
  type Placement,
  rescheduleAnnotation,
  type ScheduleInput,
  type ScheduleResult,
  type SchedulingErrorCode,
  SchedulingErrorCode as Code,
} from './types.js';
import { schedulingProblems } from './validate.js';

interface FeedInfo {
  feed: Feed;
  key: string;
  /** Set for a divided feed only. */
  desired?: number;
  requests?: Map<string, bigint>;
}

interface Candidate {
  ref: ClusterRef;
  cluster: ClusterInput;
  labels: Readonly<Record<string, string>>;
  /** Indices of the subscribers whose clusterAffinity matches. */
  subscribers: number[];
  held?: { reason: HoldReason; message: string };
  /** In the previous placement, or owed a share it lost to a taint. */
  sticky: boolean;
  /** Owed a share it lost to a taint, and back: it comes first. */
  owed: boolean;
  preference: number;
  preferNoSchedule: number;
  /** Free resources (Dynamic only): undefined when it can take no new replica. */
  free?: Map<string, bigint>;
  /** Replicas of each divided feed it has room for, each alone (Dynamic only). */
  room: Map<string, number>;
  roomScore: number;
}

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function refOf(cluster: ClusterInput): ClusterRef {
  const { name, namespace } = cluster.metadata;
  return {
    key: namespace ? `${namespace}/${name}` : name,
    name,
    ...(namespace ? { namespace } : {}),
    clusterId: cluster.spec.clusterId,
  };
}

function fail(code: SchedulingErrorCode, message: string, excluded: Exclusion[]): ScheduleResult {
  return { ok: false, error: { code, message, excluded: sortExclusions(excluded) } };
}

function sortExclusions(excluded: Exclusion[]): Exclusion[] {
  return [...excluded].sort((a, b) => compareKeys(a.cluster.key, b.cluster.key));
}

function summary(excluded: readonly Exclusion[]): string {
  if (excluded.length === 0) return '';
  const shown = sortExclusions([...excluded]).slice(0, 5).map((e) => `${e.cluster.key}: ${e.reason}`);
  const more = excluded.length > 5 ? `, and ${excluded.length - 5} more` : '';
  return ` (${shown.join(', ')}${more})`;
}

function isReady(cluster: ClusterInput): boolean {
  const ready = cluster.status?.conditions?.find((c) => c.type === 'Ready');
  return ready?.status === 'True';
}

/** Free resources of a cluster in nano-units: allocatable minus requested. */
function freeResources(cluster: ClusterInput): Map<string, bigint> | undefined {
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

function take(free: Map<string, bigint>, requests: Map<string, bigint>, replicas: number): void {
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
function replicasThatFit(free: Map<string, bigint> | undefined, requests: Map<string, bigint>, desired: number): number {
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

/**
 * Places a subscription's feeds on clusters. Pure: the same input gives the
 * same output, and feeding a placement back as `previous` with the same
 * input gives it back unchanged.
 */
export function schedule(input: ScheduleInput): ScheduleResult {
  const spec = input.subscription.spec;
  const feedOrders = input.feedOrders ?? [];
  const problems = schedulingProblems(spec, feedOrders);
  if (problems.length > 0) {
    const more = problems.length > 10 ? `; and ${problems.length - 10} more` : '';
    return fail(Code.InvalidScheduling, problems.slice(0, 10).join('; ') + more, []);
  }
  const nowMs = input.now.getTime();
  const fresh = input.subscription.metadata.annotations?.[rescheduleAnnotation] === 'true';
  const previous = fresh ? undefined : (input.previous ?? undefined);
  const strategy = spec.schedulingStrategy || 'Replication';
  const dividingType = strategy === 'Dividing' ? spec.dividingScheduling?.type || 'Static' : undefined;
  const dynamic = dividingType === 'Dynamic' ? spec.dividingScheduling!.dynamicDividing! : undefined;
  const tolerations = spec.clusterTolerations ?? [];

  const ordersByKey = new Map(feedOrders.map((o) => [feedKey(o), o] as const));
  const feeds: FeedInfo[] = [];
  const seenFeeds = new Set<string>();
  for (const feed of spec.feeds) {
    const key = feedKey(feed);
    if (seenFeeds.has(key)) continue;
    seenFeeds.add(key);
    const order: FeedOrder | undefined = ordersByKey.get(key);
    const info: FeedInfo = { feed: { apiVersion: feed.apiVersion, kind: feed.kind, ...(feed.namespace ? { namespace: feed.namespace } : {}), name: feed.name }, key };
    if (dividingType && order && order.desiredReplicas != null) {
      info.desired = order.desiredReplicas;
      info.requests = replicaRequests(order) as Map<string, bigint>;
    }
    feeds.push(info);
  }
  const divided = feeds.filter((f) => f.desired !== undefined);

  const prevShares = new Map<string, Map<string, number | undefined>>();
  for (const c of previous?.clusters ?? []) {
    prevShares.set(c.cluster.key, new Map(c.feeds.map((f) => [f.key, f.replicas])));
  }
  const prevEvicted = new Map<string, EvictedShare[]>();
  for (const e of previous?.evicted ?? []) {
    if (!prevEvicted.has(e.cluster)) prevEvicted.set(e.cluster, []);
    prevEvicted.get(e.cluster)!.push(e);
  }

  const excluded: Exclusion[] = [];
  const evicted: EvictedShare[] = [];
  const candidates: Candidate[] = [];
  const matched = new Set<string>();
  const seenClusters = new Set<string>();
  const clusters = [...input.clusters].sort((a, b) => compareKeys(refOf(a).key, refOf(b).key) || compareKeys(a.spec.clusterId, b.spec.clusterId));
  for (const cluster of clusters) {
    const ref = refOf(cluster);
    if (seenClusters.has(ref.key)) continue;
    seenClusters.add(ref.key);
    const labels = clusterLabels(cluster);
    const subscribers = spec.subscribers.flatMap((s, i) => (selectorMatches(s.clusterAffinity!, labels) ? [i] : []));
    if (subscribers.length > 0) matched.add(ref.key);
    if (subscribers.length === 0) {
      excluded.push({ cluster: ref, reason: 'NoMatch', message: "matches no subscriber's clusterAffinity" });
      continue;
    }
    const wasPlaced = prevShares.has(ref.key);
    const verdict = taintVerdict(cluster.spec.taints ?? [], tolerations, nowMs);
    if (verdict.kind === 'evicted') {
      excluded.push({ cluster: ref, reason: verdict.reason, message: verdict.message });
      if (dynamic) {
        // Remember what it had, to give it back when it returns.
        for (const f of divided) {
          const had = (prevShares.get(ref.key)?.get(f.key) ?? 0) + owed(prevEvicted, ref.key, f.key);
          if (had > 0) evicted.push({ cluster: ref.key, feed: f.key, replicas: had });
        }
      }
      continue;
    }
    if (verdict.kind === 'held' && !wasPlaced) {
      excluded.push({ cluster: ref, reason: verdict.reason, message: `${verdict.message}; it gets nothing new` });
      continue;
    }
    candidates.push({
      ref,
      cluster,
      labels,
      subscribers,
      ...(verdict.kind === 'held' ? { held: { reason: verdict.reason, message: verdict.message } } : {}),
      sticky: wasPlaced || (dynamic !== undefined && prevEvicted.has(ref.key)),
      owed: dynamic !== undefined && !wasPlaced && verdict.kind === 'ok' && prevEvicted.has(ref.key),
      preference: (dynamic?.preferredClusters ?? []).reduce((sum, p) => sum + (termMatches(p.preference, labels, ref.name) ? p.weight : 0), 0),
      preferNoSchedule: preferNoScheduleCount(cluster.spec.taints ?? [], tolerations),
      room: new Map(),
      roomScore: 0,
    });
  }

  if (dynamic) {
    for (const c of candidates) {
      const free = c.held ? undefined : freeResources(c.cluster);
      if (free) c.free = free;
      for (const f of divided) {
        const room = replicasThatFit(free, f.requests!, f.desired!);
        c.room.set(f.key, room);
        c.roomScore += room;
      }
    }
  }

  const byOrder = (a: Candidate, b: Candidate) =>
    Number(b.owed) - Number(a.owed) ||
    Number(b.sticky) - Number(a.sticky) ||
    b.preference - a.preference ||
    a.preferNoSchedule - b.preferNoSchedule ||
    b.roomScore - a.roomScore ||
    compareKeys(a.ref.key, b.ref.key);
  let pool = [...candidates].sort(byOrder);

  if (dynamic && divided.length > 0) {
    pool = pool.filter((c) => {
      if (c.sticky || c.held || c.roomScore > 0) return true;
      const why = isReady(c.cluster) ? (c.cluster.status?.allocatable ? 'no room for one replica of any divided feed' : 'no allocatable resources reported') : 'not Ready';
      excluded.push({ cluster: c.ref, reason: 'NoCapacity', message: why });
      return false;
    });
  }

  if (spec.schedulingBySubGroup) {
    // Sticky: clusters placed before stay while they can; each subgroup short
    // of its minClusters takes the next clusters in order. (Clusternet picks
    // afresh each time; the reschedule annotation does that here.)
    const chosen = new Set(pool.filter((c) => prevShares.has(c.ref.key)).map((c) => c.ref.key));
    spec.subscribers.forEach((s, i) => {
      const min = s.subGroupStrategy?.minClusters ?? 0;
      const members = pool.filter((c) => c.subscribers.includes(i));
      let have = members.filter((c) => chosen.has(c.ref.key)).length;
      for (const c of members) {
        if (have >= min) break;
        if (chosen.has(c.ref.key)) continue;
        chosen.add(c.ref.key);
        have += 1;
      }
    });
    pool = pool.filter((c) => {
      if (chosen.has(c.ref.key)) return true;
      excluded.push(notSelected(c, "not among the first subGroupStrategy.minClusters clusters of its subscribers' subgroups"));
      return false;
    });
  }

  if (pool.length === 0) {
    return fail(Code.NoMatchingClusters, `no cluster can take subscription ${subscriptionName(input)}: ${seenClusters.size} clusters considered${summary(excluded)}`, excluded);
  }

  let selected: Candidate[];
  let shares: Map<string, Map<string, number>>;
  if (dividingType === 'Static') {
    const result = divideStatic(pool, spec.subscribers.map((s) => s.weight ?? 0), divided, prevShares);
    if (!result.ok) return fail(result.code, result.message + summary(excluded), excluded);
    selected = pool;
    shares = result.shares;
  } else if (dynamic) {
    const result = divideDynamic(pool, dynamic, divided, prevShares, prevEvicted);
    if (!result.ok) return fail(result.code, result.message + summary(excluded), [...excluded, ...result.notSelected]);
    selected = result.selected;
    shares = result.shares;
    excluded.push(...result.notSelected);
    // A share owed to a cluster is kept until it is back and selected, or no longer matches.
    const back = new Set(selected.filter((c) => !c.held).map((c) => c.ref.key));
    const evictedNow = new Set(evicted.map((e) => e.cluster));
    for (const key of prevEvicted.keys()) {
      if (matched.has(key) && !back.has(key) && !evictedNow.has(key)) carryEvicted(prevEvicted, key, divided, evicted);
    }
  } else {
    selected = pool;
    shares = new Map();
  }

  const placed: ClusterPlacement[] = selected
    .map((c) => {
      const feedsOut: FeedPlacement[] = feeds.map((f) => {
        const n = shares.get(c.ref.key)?.get(f.key);
        return { feed: f.feed, key: f.key, ...(n !== undefined ? { replicas: n } : {}) };
      });
      return { cluster: c.ref, feeds: feedsOut, ...(c.held ? { held: c.held.reason, message: c.held.message } : {}) };
    })
    .sort((a, b) => compareKeys(a.cluster.key, b.cluster.key));
  const placement: Placement = {
    clusters: placed,
    excluded: sortExclusions(excluded),
    evicted: mergeEvicted(evicted),
  };
  return { ok: true, placement };
}

/** A cluster left out of the selection; a held one says why it gets nothing, as it will once it has nothing. */
function notSelected(c: Candidate, why: string): Exclusion {
  if (c.held) return { cluster: c.ref, reason: c.held.reason, message: `${c.held.message}; it gets nothing new` };
  return { cluster: c.ref, reason: 'NotSelected', message: why };
}

function subscriptionName(input: ScheduleInput): string {
  const { namespace, name } = input.subscription.metadata;
  return `"${namespace ? `${namespace}/` : ''}${name}"`.slice(0, 200);
}

function owed(prevEvicted: Map<string, EvictedShare[]>, cluster: string, feed: string): number {
  return (prevEvicted.get(cluster) ?? []).filter((e) => e.feed === feed).reduce((a, e) => a + e.replicas, 0);
}

function carryEvicted(prevEvicted: Map<string, EvictedShare[]>, cluster: string, divided: readonly FeedInfo[], out: EvictedShare[]): void {
  for (const f of divided) {
    const n = owed(prevEvicted, cluster, f.key);
    if (n > 0) out.push({ cluster, feed: f.key, replicas: n });
  }
}

function mergeEvicted(list: EvictedShare[]): EvictedShare[] {
  const sums = new Map<string, EvictedShare>();
  for (const e of list) {
    const k = `${e.cluster}\u0000${e.feed}`;
    const prev = sums.get(k);
    sums.set(k, { cluster: e.cluster, feed: e.feed, replicas: (prev?.replicas ?? 0) + e.replicas });
  }
  return [...sums.values()].sort((a, b) => compareKeys(a.cluster, b.cluster) || compareKeys(a.feed, b.feed));
}

type DivideResult =
  | { ok: true; shares: Map<string, Map<string, number>> }
  | { ok: false; code: SchedulingErrorCode; message: string };

/**
 * Static: each cluster weighs the sum of the weights of the subscribers that
 * match it (as Clusternet does). A held cluster keeps the smaller of its
 * previous share and its weighted share; the rest is divided among the
 * others by weight.
 */
function divideStatic(
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

type DynamicResult =
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
function divideDynamic(
  pool: Candidate[],
  dyn: NonNullable<NonNullable<ScheduleInput['subscription']['spec']['dividingScheduling']>['dynamicDividing']>,
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
        count += 1;
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
