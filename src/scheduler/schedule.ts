import { type Candidate, carryEvicted, compareKeys, type FeedInfo, notSelected, owed } from './candidate.js';
import { freeResources, isReady, replicasThatFit } from './capacity.js';
import { divideDynamic } from './dynamic.js';
import { feedKey, replicaRequests } from './feeds.js';
import { clusterLabels, selectorMatches, termMatches } from './selector.js';
import { divideStatic } from './static.js';
import { preferNoScheduleCount, taintVerdict } from './taints.js';
import {
  type ClusterInput,
  type ClusterPlacement,
  type ClusterRef,
  type EvictedShare,
  type Exclusion,
  type FeedOrder,
  type FeedPlacement,
  type Placement,
  rescheduleAnnotation,
  type ScheduleInput,
  type ScheduleResult,
  type SchedulingErrorCode,
  SchedulingErrorCode as Code,
} from './types.js';
import { schedulingProblems } from './validate.js';

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

/**
 * Places a subscription's feeds on clusters. Pure: the same input gives the
 * same output, and feeding a placement back as `previous` with the same
 * input gives it back unchanged.
 *
 * Filter (clusterAffinity, then taints), order (owed a share, placed before,
 * preferredClusters, fewer PreferNoSchedule taints, more room, key), select
 * (subgroups, then minClusters/maxClusters), divide (Static by weight,
 * Dynamic by capacity). Choices where Clusternet is silent or differs:
 * - An untolerated NoSchedule taint keeps what the previous placement gave
 *   (Kubernetes' NoSchedule does not evict); NoExecute, or a toleration whose
 *   tolerationSeconds ran out, loses it. While a limited toleration runs, the
 *   cluster keeps its share but gets nothing new.
 * - Without `previous`, or with the reschedule annotation, nothing is kept.
 * - A placement is sticky: clusters placed before stay first in every
 *   selection, and Dynamic shares move only by the difference to desired.
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

function subscriptionName(input: ScheduleInput): string {
  const { namespace, name } = input.subscription.metadata;
  return `"${namespace ? `${namespace}/` : ''}${name}"`.slice(0, 200);
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
