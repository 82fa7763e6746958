// Dividing a number of replicas among clusters: by weight (Static), and by
// capacity one replica at a time (Dynamic), so every rule (room, preference,
// topology spread) is checked for each replica and the sum is exact.

function compareKeys(a: string, b: string): number {
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

interface Domains {
  rule: TopologyRule;
  counts: Map<string, number>;
}

function domainsOf(
  rules: readonly TopologyRule[],
  members: readonly DynamicMember[],
  shares: Map<string, number>,
  domainLabels: ReadonlyArray<Readonly<Record<string, string>>>,
): Domains[] {
  return rules.map((rule) => {
    const counts = new Map<string, number>();
    for (const labels of domainLabels) {
      const d = labels[rule.topologyKey];
      if (d !== undefined) counts.set(d, 0);
    }
    for (const m of members) {
      const d = m.labels[rule.topologyKey];
      if (d === undefined) continue;
      counts.set(d, (counts.get(d) ?? 0) + shares.get(m.key)!);
    }
    return { rule, counts };
  });
}

function globalMin(d: Domains): number {
  if (d.counts.size < d.rule.minDomains) return 0;
  return Math.min(...d.counts.values());
}

/**
 * Topology domains are those of `domainLabels` (every cluster that passed the
 * filters, as Kubernetes counts every eligible node's domain) plus the
 * members'.
 * Brings the members' replicas of one feed from their bases to `desired`:
 * adds one replica at a time to the best member with room, or takes one at a
 * time from the member that can best give it up.
 * Spread adds where the least of its room is used (so shares follow free
 * capacity) and takes from the largest share; Binpack fills members in order
 * and takes from the smallest share, to leave fewest clusters in use.
 * preferredClusters come first either way.
 */
export function distribute(
  desired: number,
  members: readonly DynamicMember[],
  strategy: 'Spread' | 'Binpack',
  rules: readonly TopologyRule[],
  domainLabels: ReadonlyArray<Readonly<Record<string, string>>> = [],
): DistributeResult {
  const shares = new Map(members.map((m) => [m.key, m.base]));
  const added = new Map(members.map((m) => [m.key, 0]));
  const domains = domainsOf(rules, members, shares, domainLabels);
  const bump = (m: DynamicMember, by: number) => {
    shares.set(m.key, shares.get(m.key)! + by);
    for (const d of domains) {
      const v = m.labels[d.rule.topologyKey];
      if (v !== undefined) d.counts.set(v, d.counts.get(v)! + by);
    }
  };
  const penalty = (m: DynamicMember) =>
    domains.reduce((sum, d) => {
      const v = m.labels[d.rule.topologyKey];
      return sum + (v === undefined ? 0 : d.counts.get(v)!);
    }, 0);
  let current = members.reduce((a, m) => a + m.base, 0);

  while (current < desired) {
    let best: DynamicMember | undefined;
    let blockedByTopology = false;
    for (const m of members) {
      if (added.get(m.key)! >= m.room) continue;
      const allowed = domains.every((d) => {
        if (!d.rule.hard) return true;
        const v = m.labels[d.rule.topologyKey];
        if (v === undefined) return false;
        return d.counts.get(v)! + 1 - globalMin(d) <= d.rule.maxSkew;
      });
      if (!allowed) {
        blockedByTopology = true;
        continue;
      }
      if (best === undefined || better(m, best)) best = m;
    }
    if (best === undefined) {
      const room = members.reduce((a, m) => a + m.room, 0);
      return blockedByTopology
        ? { ok: false, reason: 'topology', message: `topologySpreadConstraints allow no cluster for replica ${current + 1} of ${desired}` }
        : { ok: false, reason: 'capacity', message: `${desired} replicas needed, ${current} held and room for ${room} more` };
    }
    added.set(best.key, added.get(best.key)! + 1);
    bump(best, 1);
    current += 1;
  }

  while (current > desired) {
    const holding = members.filter((m) => shares.get(m.key)! > 0);
    const unprotected = holding.filter((m) => !m.protected);
    const pool = unprotected.length > 0 ? unprotected : holding;
    const keepsSkew = pool.filter((m) =>
      domains.every((d) => {
        if (!d.rule.hard) return true;
        const v = m.labels[d.rule.topologyKey];
        if (v === undefined) return true;
        const after = new Map(d.counts).set(v, d.counts.get(v)! - 1);
        const values = [...after.values()];
        return Math.max(...values) - (after.size < d.rule.minDomains ? 0 : Math.min(...values)) <= d.rule.maxSkew;
      }),
    );
    let victim: DynamicMember | undefined;
    for (const m of keepsSkew.length > 0 ? keepsSkew : pool) {
      if (victim === undefined || worse(m, victim)) victim = m;
    }
    bump(victim!, -1);
    current -= 1;
  }
  return { ok: true, shares };

  function better(a: DynamicMember, b: DynamicMember): boolean {
    if (a.preference !== b.preference) return a.preference > b.preference;
    if (strategy === 'Spread') {
      const pa = penalty(a);
      const pb = penalty(b);
      if (pa !== pb) return pa < pb;
      // Sainte-Laguë: (2*added+1)/room, compared without division, so
      // shares follow free capacity without favouring the largest.
      const lhs = (2 * added.get(a.key)! + 1) * b.room;
      const rhs = (2 * added.get(b.key)! + 1) * a.room;
      if (lhs !== rhs) return lhs < rhs;
    }
    return a.order < b.order;
  }

  function worse(a: DynamicMember, b: DynamicMember): boolean {
    if (a.preference !== b.preference) return a.preference < b.preference;
    const sa = shares.get(a.key)!;
    const sb = shares.get(b.key)!;
    if (strategy === 'Spread') {
      const pa = penalty(a);
      const pb = penalty(b);
      if (pa !== pb) return pa > pb;
      if (sa !== sb) return sa > sb;
    } else if (sa !== sb) return sa < sb;
    return a.order > b.order;
  }
}
