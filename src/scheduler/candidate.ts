import type { ClusterInput, ClusterRef, EvictedShare, Exclusion, Feed, HoldReason } from './types.js';

// What the scheduler knows about a feed and a cluster while it places one subscription.

export interface FeedInfo {
  feed: Feed;
  key: string;
  /** Set for a divided feed only. */
  desired?: number;
  requests?: Map<string, bigint>;
}

export interface Candidate {
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

export { compareKeys } from './divide.js';

/** A cluster left out of the selection; a held one says why it gets nothing, as it will once it has nothing. */
export function notSelected(c: Candidate, why: string): Exclusion {
  if (c.held) return { cluster: c.ref, reason: c.held.reason, message: `${c.held.message}; it gets nothing new` };
  return { cluster: c.ref, reason: 'NotSelected', message: why };
}

export function owed(prevEvicted: Map<string, EvictedShare[]>, cluster: string, feed: string): number {
  return (prevEvicted.get(cluster) ?? []).filter((e) => e.feed === feed).reduce((a, e) => a + e.replicas, 0);
}

export function carryEvicted(prevEvicted: Map<string, EvictedShare[]>, cluster: string, divided: readonly FeedInfo[], out: EvictedShare[]): void {
  for (const f of divided) {
    const n = owed(prevEvicted, cluster, f.key);
    if (n > 0) out.push({ cluster, feed: f.key, replicas: n });
  }
}
