import { parseNano } from './quantity.js';
import type { Feed, FeedOrder, ResourceList } from './types.js';

// Which feeds are divided, and what one replica of them needs.

export function feedKey(feed: Feed): string {
  return feed.namespace
    ? `${feed.apiVersion}/${feed.kind}/${feed.namespace}/${feed.name}`
    : `${feed.apiVersion}/${feed.kind}/${feed.name}`;
}

/** Kinds whose replicas are divided, by group, with the field that holds the count. */
const dividedKinds: Record<string, { groups: readonly string[]; path: string; field: 'replicas' | 'parallelism' }> = {
  Deployment: { groups: ['apps', 'extensions'], path: '/spec/replicas', field: 'replicas' },
  StatefulSet: { groups: ['apps'], path: '/spec/replicas', field: 'replicas' },
  ReplicaSet: { groups: ['apps', 'extensions'], path: '/spec/replicas', field: 'replicas' },
  Job: { groups: ['batch'], path: '/spec/parallelism', field: 'parallelism' },
};

interface Container {
  resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> };
}

type UnknownObject = Record<string, unknown>;

function asObject(v: unknown): UnknownObject | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as UnknownObject) : undefined;
}

function containers(v: unknown): Container[] {
  return Array.isArray(v) ? (v.filter((c) => asObject(c)) as Container[]) : [];
}

/** A container's requests, each defaulting to its limit as Kubernetes does. */
function containerRequests(c: Container): Map<string, bigint> {
  const out = new Map<string, bigint>();
  const requests = asObject(c.resources?.requests) ?? {};
  const limits = asObject(c.resources?.limits) ?? {};
  for (const [k, v] of Object.entries(limits)) {
    const n = typeof v === 'string' || typeof v === 'number' ? parseNano(String(v)) : undefined;
    if (n !== undefined) out.set(k, n);
  }
  for (const [k, v] of Object.entries(requests)) {
    const n = typeof v === 'string' || typeof v === 'number' ? parseNano(String(v)) : undefined;
    if (n !== undefined) out.set(k, n);
  }
  return out;
}

/** What one pod requests: the containers' sum, or the largest init container if that is more (Clusternet's rule). */
export function podRequests(podSpec: unknown): Map<string, bigint> {
  const spec = asObject(podSpec) ?? {};
  const total = new Map<string, bigint>();
  for (const c of containers(spec['containers'])) {
    for (const [k, v] of containerRequests(c)) total.set(k, (total.get(k) ?? 0n) + v);
  }
  for (const c of containers(spec['initContainers'])) {
    for (const [k, v] of containerRequests(c)) if (v > (total.get(k) ?? 0n)) total.set(k, v);
  }
  return total;
}

function formatNano(n: bigint): string {
  if (n % 10n ** 9n === 0n) return String(n / 10n ** 9n);
  if (n % 10n ** 6n === 0n) return `${n / 10n ** 6n}m`;
  return `${n}n`;
}

/**
 * The FeedOrder of a feed given its object (the template stored on the hub):
 * Deployments, StatefulSets and ReplicaSets divide spec.replicas, Jobs
 * spec.parallelism (each 1 when unset, as Kubernetes defaults them); every
 * other object goes whole.
 */
export function feedOrderFor(feed: Feed, object: unknown): FeedOrder {
  const order: FeedOrder = { apiVersion: feed.apiVersion, kind: feed.kind, name: feed.name, ...(feed.namespace ? { namespace: feed.namespace } : {}) };
  const kind = dividedKinds[feed.kind];
  const group = feed.apiVersion.includes('/') ? feed.apiVersion.slice(0, feed.apiVersion.indexOf('/')) : '';
  if (!kind || !kind.groups.includes(group)) return order;
  const spec = asObject(asObject(object)?.['spec']) ?? {};
  const raw = spec[kind.field];
  const desiredReplicas = typeof raw === 'number' && Number.isSafeInteger(raw) && raw >= 0 ? raw : 1;
  const podSpec = asObject(asObject(spec['template'])?.['spec']);
  const requests: Record<string, string> = {};
  for (const [k, v] of [...podRequests(podSpec)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) requests[k] = formatNano(v);
  return { ...order, desiredReplicas, replicaRequirements: { resources: { requests } }, replicaJsonPath: kind.path };
}

/** A FeedOrder's requests per replica, each request defaulting to its limit; names the first bad value. */
export function replicaRequests(order: FeedOrder): Map<string, bigint> | string {
  const resources = order.replicaRequirements?.resources ?? {};
  const out = new Map<string, bigint>();
  const lists: Array<[string, ResourceList | undefined]> = [
    ['limits', resources.limits],
    ['requests', resources.requests],
  ];
  for (const [field, list] of lists) {
    for (const [k, v] of Object.entries(list ?? {})) {
      const n = parseNano(String(v));
      if (n === undefined || n < 0n) return `replicaRequirements.resources.${field}.${k}: "${String(v).slice(0, 40)}" is not a quantity`;
      out.set(k, n);
    }
  }
  return out;
}
