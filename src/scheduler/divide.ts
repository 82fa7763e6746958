// Dividing a number of replicas among clusters: by weight (Static), and by
// capacity one replica at a time (Dynamic), so every rule (room, preference,
// topology spread) is checked for each replica and the sum is exact.

/** Plain code-unit order, the same in every locale. */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * `total` split in proportion to `weights` by largest remainder: every share
 * is the floor or the ceiling of its exact share, and the shares sum to
 * `total`. Ties between equal remainders go to the larger weight, then to the
 * smaller key, so the result does not depend on the input's order.
 */
export function divideByWeight(total: number, weights: readonly number[], keys: readonly string[]): number[] {
  const sum = weights.reduce((a, w) => a + BigInt(w), 0n);
  if (sum === 0n) return weights.map(() => 0);
  const t = BigInt(total);
  const shares = weights.map((w) => Number((t * BigInt(w)) / sum));
  const remainders = weights.map((w) => (t * BigInt(w)) % sum);
  let left = total - shares.reduce((a, s) => a + s, 0);
  const byRemainder = weights
    .map((_, i) => i)
    .sort((i, j) => {
      const r = remainders[j]! - remainders[i]!;
      if (r !== 0n) return r > 0n ? 1 : -1;
      if (weights[i] !== weights[j]) return weights[j]! - weights[i]!;
      return compareKeys(keys[i]!, keys[j]!);
    });
  for (const i of byRemainder) {
    if (left <= 0) break;
    shares[i]! += 1;
    left -= 1;
  }
  return shares;
}

export interface TopologyRule {
  topologyKey: string;
  maxSkew: number;
  hard: boolean;
  minDomains: number;
}

export interface DynamicMember {
  key: string;
  /** Position in the selection order (sticky members first, then preference, then room). */
  order: number;
  preference: number;
  labels: Readonly<Record<string, string>>;
  /** What it holds now (its previous share, or the share it gets back). */
  base: number;
  /** How many more replicas it can take. */
  room: number;
  /** A share that is coming back: scale-down takes from it last. */
  protected: boolean;
}

export type DistributeResult =
  | { ok: true; shares: Map<string, number> }
  | { ok: false; reason: 'capacity' | 'topology'; message: string };

/** A binary heap; `first(a, b)` says a comes out before b. */
class Heap<T> {
  private readonly items: T[] = [];
  constructor(private readonly first: (a: T, b: T) => boolean) {}
  peek(): T | undefined {
    return this.items[0];
  }
  push(item: T): void {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.first(items[i]!, items[parent]!)) break;
      [items[i], items[parent]] = [items[parent]!, items[i]!];
      i = parent;
    }
  }
  pop(): T | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < items.length && this.first(items[l]!, items[best]!)) best = l;
        if (r < items.length && this.first(items[r]!, items[best]!)) best = r;
        if (best === i) break;
        [items[i], items[best]] = [items[best]!, items[i]!];
        i = best;
      }
    }
    return top;
  }
}

/** One topology rule's domains: per member its domain's index (-1 without the label), and per domain its count. */
interface Domains {
  rule: TopologyRule;
  of: number[];
  counts: number[];
}

function domainsOf(
  rules: readonly TopologyRule[],
  members: readonly DynamicMember[],
  domainLabels: ReadonlyArray<Readonly<Record<string, string>>>,
): Domains[] {
  return rules.map((rule) => {
    const index = new Map<string, number>();
    const add = (labels: Readonly<Record<string, string>>) => {
      const d = labels[rule.topologyKey];
      if (d === undefined) return -1;
      if (!index.has(d)) index.set(d, index.size);
      return index.get(d)!;
    };
    for (const labels of domainLabels) add(labels);
    const of = members.map((m) => add(m.labels));
    const counts = new Array<number>(index.size).fill(0);
    members.forEach((m, i) => {
      if (of[i]! >= 0) counts[of[i]!]! += m.base;
    });
    return { rule, of, counts };
  });
}

function minCount(d: Domains): number {
  if (d.counts.length < d.rule.minDomains) return 0;
  let min = Number.POSITIVE_INFINITY;
  for (const c of d.counts) if (c < min) min = c;
  return min;
}

/**
 * Brings the members' replicas of one feed from their bases to `desired`:
 * adds one replica at a time to the best member with room, or takes one at a
 * time from the member that can best give it up.
 * Spread adds where the least of its room is used (so shares follow free
 * capacity) and takes from the largest share; Binpack fills members in order
 * and takes from the smallest share, to leave fewest clusters in use.
 * preferredClusters come first either way. Topology domains are those of
 * `domainLabels` (every cluster that passed the filters, as Kubernetes counts
 * every eligible node's domain) plus the members'.
 *
 * Members are grouped by their domains: within a group every topology count
 * is the same, so each group keeps a heap of its members and each step
 * compares only the groups' best.
 */
export function distribute(
  desired: number,
  members: readonly DynamicMember[],
  strategy: 'Spread' | 'Binpack',
  rules: readonly TopologyRule[],
  domainLabels: ReadonlyArray<Readonly<Record<string, string>>> = [],
): DistributeResult {
  const shares = members.map((m) => m.base);
  const added = members.map(() => 0);
  const domains = domainsOf(rules, members, domainLabels);
  const hard = domains.filter((d) => d.rule.hard);
  const spread = strategy === 'Spread';
  const groupOf = members.map((_, i) => domains.map((d) => d.of[i]).join(','));
  const groupKeys = [...new Set(groupOf)];
  const groupIndex = new Map(groupKeys.map((k, g) => [k, g]));
  const first = members.map((_, i) => i).filter((i) => groupOf.indexOf(groupOf[i]!) === i);
  const penaltyOf = (g: number) => {
    const i = first[g]!;
    return spread ? domains.reduce((sum, d) => sum + (d.of[i]! >= 0 ? d.counts[d.of[i]!]! : 0), 0) : 0;
  };
  const bump = (i: number, by: number) => {
    shares[i]! += by;
    for (const d of domains) if (d.of[i]! >= 0) d.counts[d.of[i]!]! += by;
  };
  let current = shares.reduce((a, n) => a + n, 0);

  if (current < desired) {
    // Spread: Sainte-Laguë, (2*added+1)/room, compared without division, so
    // shares follow free capacity without favouring the largest.
    const ahead = (a: number, b: number): boolean => {
      const ma = members[a]!;
      const mb = members[b]!;
      if (ma.preference !== mb.preference) return ma.preference > mb.preference;
      if (spread) {
        const lhs = (2 * added[a]! + 1) * mb.room;
        const rhs = (2 * added[b]! + 1) * ma.room;
        if (lhs !== rhs) return lhs < rhs;
      }
      return ma.order < mb.order;
    };
    const heaps = groupKeys.map(() => new Heap<number>(ahead));
    members.forEach((m, i) => {
      if (m.room > 0) heaps[groupIndex.get(groupOf[i]!)!]!.push(i);
    });
    const allowed = (g: number) => {
      const i = first[g]!;
      return hard.every((d) => d.of[i]! >= 0 && d.counts[d.of[i]!]! + 1 - minCount(d) <= d.rule.maxSkew);
    };
    while (current < desired) {
      let best: { g: number; i: number; penalty: number } | undefined;
      let blocked = false;
      heaps.forEach((heap, g) => {
        const i = heap.peek();
        if (i === undefined) return;
        if (!allowed(g)) {
          blocked = true;
          return;
        }
        const penalty = penaltyOf(g);
        const m = members[i]!;
        if (best === undefined) {
          best = { g, i, penalty };
          return;
        }
        const b = members[best.i]!;
        const better =
          m.preference !== b.preference ? m.preference > b.preference : penalty !== best.penalty ? penalty < best.penalty : ahead(i, best.i);
        if (better) best = { g, i, penalty };
      });
      if (best === undefined) {
        const room = members.reduce((a, m) => a + m.room, 0);
        return blocked
          ? { ok: false, reason: 'topology', message: `topologySpreadConstraints allow no cluster for replica ${current + 1} of ${desired}` }
          : { ok: false, reason: 'capacity', message: `${desired} replicas needed, ${current} held and room for ${room} more` };
      }
      const { g, i } = best;
      heaps[g]!.pop();
      added[i]! += 1;
      bump(i, 1);
      current += 1;
      if (added[i]! < members[i]!.room) heaps[g]!.push(i);
    }
  }

  if (current > desired) {
    const ahead = (a: number, b: number): boolean => {
      const ma = members[a]!;
      const mb = members[b]!;
      if (ma.protected !== mb.protected) return !ma.protected;
      if (ma.preference !== mb.preference) return ma.preference < mb.preference;
      const sa = shares[a]!;
      const sb = shares[b]!;
      if (sa !== sb) return spread ? sa > sb : sa < sb;
      return ma.order > mb.order;
    };
    const heaps = groupKeys.map(() => new Heap<number>(ahead));
    members.forEach((_, i) => {
      if (shares[i]! > 0) heaps[groupIndex.get(groupOf[i]!)!]!.push(i);
    });
    const keepsSkew = (g: number) => {
      const i = first[g]!;
      return hard.every((d) => {
        const at = d.of[i]!;
        if (at < 0) return true;
        let max = Number.NEGATIVE_INFINITY;
        let min = Number.POSITIVE_INFINITY;
        d.counts.forEach((c, k) => {
          const v = k === at ? c - 1 : c;
          if (v > max) max = v;
          if (v < min) min = v;
        });
        return max - (d.counts.length < d.rule.minDomains ? 0 : min) <= d.rule.maxSkew;
      });
    };
    while (current > desired) {
      // Scale-down must happen: when every choice breaks the skew, take the best of them.
      let best: { g: number; i: number; penalty: number; keeps: boolean } | undefined;
      heaps.forEach((heap, g) => {
        const i = heap.peek();
        if (i === undefined) return;
        const keeps = keepsSkew(g);
        const penalty = penaltyOf(g);
        const m = members[i]!;
        if (best === undefined) {
          best = { g, i, penalty, keeps };
          return;
        }
        const b = members[best.i]!;
        let better: boolean;
        if (keeps !== best.keeps) better = keeps;
        else if (m.protected !== b.protected) better = !m.protected;
        else if (m.preference !== b.preference) better = m.preference < b.preference;
        else if (spread && penalty !== best.penalty) better = penalty > best.penalty;
        else better = ahead(i, best.i);
        if (better) best = { g, i, penalty, keeps };
      });
      const { g, i } = best!;
      heaps[g]!.pop();
      bump(i, -1);
      current -= 1;
      if (shares[i]! > 0) heaps[g]!.push(i);
    }
  }
  return { ok: true, shares: new Map(members.map((m, i) => [m.key, shares[i]!])) };
}
