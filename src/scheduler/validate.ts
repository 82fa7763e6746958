import { replicaRequests } from './feeds.js';
import { selectorProblems, termProblems } from './selector.js';
import { tolerationProblems } from './taints.js';
import type { FeedOrder, SubscriptionSpec } from './types.js';

// Every problem with the scheduling parts of a subscription, each naming its
// field: the scheduler refuses to guess.

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Dynamic dividing places replicas one at a time (about 1 s per 100,000 over
 * 1,000 clusters), so it refuses more rather than stall the hub; Static
 * dividing has no such bound.
 */
export const maxDynamicReplicas = 100_000;

export function schedulingProblems(spec: SubscriptionSpec, feedOrders: readonly FeedOrder[]): string[] {
  const problems: string[] = [];
  const dynamicDividing = spec.schedulingStrategy === 'Dividing' && spec.dividingScheduling?.type === 'Dynamic';
  const strategy = spec.schedulingStrategy ?? '';
  if (!['', 'Replication', 'Dividing'].includes(strategy)) {
    problems.push(`spec.schedulingStrategy: "${strategy.slice(0, 40)}" is not Replication or Dividing`);
  }
  if (spec.priority != null && !Number.isSafeInteger(spec.priority)) problems.push(`spec.priority: ${String(spec.priority)} is not an integer`);
  if (!Array.isArray(spec.subscribers) || spec.subscribers.length === 0) problems.push('spec.subscribers: must name at least one subscriber');
  (spec.subscribers ?? []).forEach((s, i) => {
    const f = `spec.subscribers[${i}]`;
    if (!s.clusterAffinity) problems.push(`${f}.clusterAffinity: is required`);
    else problems.push(...selectorProblems(s.clusterAffinity, `${f}.clusterAffinity`));
    if (s.weight != null && !isCount(s.weight)) problems.push(`${f}.weight: ${String(s.weight)} is not a non-negative integer`);
    if (spec.schedulingBySubGroup) {
      if (!s.subGroupStrategy) problems.push(`${f}.subGroupStrategy: is required with spec.schedulingBySubGroup`);
      else if (s.subGroupStrategy.minClusters != null && !isCount(s.subGroupStrategy.minClusters)) {
        problems.push(`${f}.subGroupStrategy.minClusters: ${String(s.subGroupStrategy.minClusters)} is not a non-negative integer`);
      }
    }
  });
  problems.push(...tolerationProblems(spec.clusterTolerations ?? [], 'spec.clusterTolerations'));

  const dividing = spec.dividingScheduling;
  const type = dividing?.type ?? '';
  if (strategy === 'Dividing') {
    if (!['', 'Static', 'Dynamic'].includes(type)) problems.push(`spec.dividingScheduling.type: "${type.slice(0, 40)}" is not Static or Dynamic`);
    if (type === 'Dynamic') {
      const dyn = dividing?.dynamicDividing;
      if (!dyn) problems.push('spec.dividingScheduling.dynamicDividing: is required when type is Dynamic');
      else {
        const f = 'spec.dividingScheduling.dynamicDividing';
        if (!['', 'Spread', 'Binpack'].includes(dyn.strategy ?? '')) problems.push(`${f}.strategy: "${String(dyn.strategy).slice(0, 40)}" is not Spread or Binpack`);
        if (dyn.minClusters != null && !isCount(dyn.minClusters)) problems.push(`${f}.minClusters: ${String(dyn.minClusters)} is not a non-negative integer`);
        if (dyn.maxClusters != null && (!isCount(dyn.maxClusters) || dyn.maxClusters < 1)) problems.push(`${f}.maxClusters: ${String(dyn.maxClusters)} is not a positive integer`);
        if (isCount(dyn.minClusters) && isCount(dyn.maxClusters) && dyn.minClusters > dyn.maxClusters) {
          problems.push(`${f}.minClusters: ${dyn.minClusters} is more than maxClusters ${dyn.maxClusters}`);
        }
        (dyn.preferredClusters ?? []).forEach((p, i) => {
          const pf = `${f}.preferredClusters[${i}]`;
          if (!Number.isSafeInteger(p.weight) || p.weight < 1 || p.weight > 100) problems.push(`${pf}.weight: ${String(p.weight)} is not 1-100`);
          if (!p.preference) problems.push(`${pf}.preference: is required`);
          else problems.push(...termProblems(p.preference, `${pf}.preference`));
        });
        (dyn.topologySpreadConstraints ?? []).forEach((c, i) => {
          const cf = `${f}.topologySpreadConstraints[${i}]`;
          if (!Number.isSafeInteger(c.maxSkew) || c.maxSkew < 1) problems.push(`${cf}.maxSkew: ${String(c.maxSkew)} is not a positive integer`);
          if (!c.topologyKey) problems.push(`${cf}.topologyKey: is required`);
          if (!['DoNotSchedule', 'ScheduleAnyway'].includes(c.whenUnsatisfiable)) {
            problems.push(`${cf}.whenUnsatisfiable: "${String(c.whenUnsatisfiable).slice(0, 40)}" is not DoNotSchedule or ScheduleAnyway`);
          }
          if (c.minDomains != null && (!Number.isSafeInteger(c.minDomains) || c.minDomains < 1)) problems.push(`${cf}.minDomains: ${String(c.minDomains)} is not a positive integer`);
        });
      }
    }
  }

  feedOrders.forEach((o, i) => {
    const f = `feedOrders[${i}] (${o.kind} ${o.namespace ? `${o.namespace}/` : ''}${o.name})`.slice(0, 200);
    if (o.desiredReplicas != null && !isCount(o.desiredReplicas)) problems.push(`${f}.desiredReplicas: ${String(o.desiredReplicas)} is not a non-negative integer`);
    else if (dynamicDividing && (o.desiredReplicas ?? 0) > maxDynamicReplicas) {
      problems.push(`${f}.desiredReplicas: ${o.desiredReplicas} is more than Dynamic dividing places (${maxDynamicReplicas})`);
    }
    const requests = replicaRequests(o);
    if (typeof requests === 'string') problems.push(`${f}.${requests}`);
  });
  return problems;
}
