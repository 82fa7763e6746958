import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { ManagedCluster } from '../../src/api/index.js';
import {
  type ClusterInput,
  compareSubscriptions,
  type FeedOrder,
  feedOrderFor,
  inSchedulingOrder,
  type Placement,
  rescheduleAnnotation,
  schedule,
  type ScheduleInput,
  type ScheduleResult,
  SchedulingErrorCode,
  type SubscriptionInput,
  type SubscriptionSpec,
  toSubscriptionStatus,
} from '../../src/scheduler/index.js';
import { ErrorCode } from '../../src/tunnel/index.js';

const examples = '/work/shared/examples/clusternet';
const now = new Date('2026-11-22T12:00:00Z');
const unreachable = 'node.clusternet.io/unreachable';

interface ClusterOptions {
  taints?: ClusterInput['spec']['taints'];
  allocatable?: Record<string, string>;
  requested?: Record<string, string>;
  ready?: boolean;
  id?: string;
}

function uuidFor(name: string): string {
  const hex = [...name].map((c) => c.charCodeAt(0).toString(16)).join('').padEnd(32, '0').slice(0, 32);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

function cluster(name: string, labels: Record<string, string> = {}, o: ClusterOptions = {}): ClusterInput {
  return {
    metadata: { name, namespace: `clusternet-${name}`, labels },
    spec: { clusterId: o.id ?? uuidFor(name), taints: o.taints ?? [] },
    status: {
      ...(o.allocatable ? { allocatable: o.allocatable } : {}),
      ...(o.requested ? { requested: o.requested } : {}),
      conditions: [{ type: 'Ready', status: o.ready === false ? 'Unknown' : 'True' }],
    },
  };
}

const deployment = { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'default', name: 'web' };
const service = { apiVersion: 'v1', kind: 'Service', namespace: 'default', name: 'web' };
const deploymentKey = 'apps/v1/Deployment/default/web';
const serviceKey = 'v1/Service/default/web';

function order(desiredReplicas: number, requests: Record<string, string> = { cpu: '1' }): FeedOrder {
  return { ...deployment, desiredReplicas, replicaRequirements: { resources: { requests } }, replicaJsonPath: '/spec/replicas' };
}

function sub(spec: Partial<SubscriptionSpec>, annotations?: Record<string, string>): SubscriptionInput {
  return {
    metadata: { name: 'web', namespace: 'default', ...(annotations ? { annotations } : {}) },
    spec: { subscribers: [{ clusterAffinity: {} }], feeds: [deployment, service], ...spec },
  };
}

function placed(result: ScheduleResult): Placement {
  if (!result.ok) throw new Error(`expected a placement, got ${result.error.code}: ${result.error.message}`);
  return result.placement;
}

function failed(result: ScheduleResult) {
  if (result.ok) throw new Error(`expected an error, got a placement on ${result.placement.clusters.map((c) => c.cluster.name).join(', ')}`);
  return result.error;
}

/** cluster name -> replicas of the Deployment (or 'whole'). */
function replicas(p: Placement, key = deploymentKey): Record<string, number | 'whole'> {
  return Object.fromEntries(
    p.clusters.map((c) => {
      const f = c.feeds.find((x) => x.key === key)!;
      return [c.cluster.name, f.replicas ?? 'whole'];
    }),
  );
}

function reasons(p: Placement | { excluded: Placement['excluded'] }): Record<string, string> {
  return Object.fromEntries(p.excluded.map((e) => [e.cluster.name, e.reason]));
}

function run(input: Partial<ScheduleInput> & Pick<ScheduleInput, 'subscription' | 'clusters'>): ScheduleResult {
  return schedule({ now, ...input });
}

describe('clusterAffinity', () => {
  it('replication example: production clusters in us-west or us-east get the whole Description', () => {
    const subscription = parse(readFileSync(`${examples}/replication/subscription.yaml`, 'utf8')) as SubscriptionInput;
    const clusters = [
      cluster('west-prod', { region: 'us-west', environment: 'production' }),
      cluster('east-prod', { region: 'us-east', environment: 'production' }),
      cluster('eu-prod', { region: 'eu-west', environment: 'production' }),
      cluster('west-staging', { region: 'us-west', environment: 'staging' }),
      cluster('bare'),
    ];
    const p = placed(run({ subscription, clusters }));
    expect(p.clusters.map((c) => c.cluster.name)).toEqual(['east-prod', 'west-prod']);
    for (const c of p.clusters) {
      expect(c.feeds).toEqual([
        { feed: { apiVersion: 'apps.clusternet.io/v1alpha1', kind: 'Description', namespace: 'default', name: 'nginx-desc' }, key: 'apps.clusternet.io/v1alpha1/Description/default/nginx-desc' },
      ]);
    }
    expect(reasons(p)).toEqual({ 'eu-prod': 'NoMatch', 'west-staging': 'NoMatch', bare: 'NoMatch' });
  });

  it('app-demo example: the cluster-id built-in picks one cluster, and a label cannot impersonate it', () => {
    const text = readFileSync(`${examples}/app-demo/subscription.yaml`, 'utf8');
    const id = '0f6c1d2e-3a4b-4c5d-8e9f-a0b1c2d3e4f5';
    const subscription = parse(text.replace('dc91021d-2361-4f6d-a404-7c33b9e01118', id)) as SubscriptionInput;
    const clusters = [
      cluster('target', {}, { id }),
      cluster('other'),
      cluster('impostor', { 'clusters.clusternet.io/cluster-id': id }),
    ];
    const p = placed(run({ subscription, clusters }));
    expect(p.clusters.map((c) => c.cluster.name)).toEqual(['target']);
    expect(p.clusters[0]!.feeds.map((f) => f.key)).toEqual(['v1/Namespace/foo', 'v1/Service/foo/my-nginx-svc', 'apps/v1/Deployment/foo/my-nginx']);
    expect(p.clusters[0]!.cluster).toEqual({ key: 'clusternet-target/target', name: 'target', namespace: 'clusternet-target', clusterId: id });
  });

  it('matches by cluster name, with NotIn, Exists and DoesNotExist', () => {
    const clusters = [cluster('a', { tier: 'edge' }), cluster('b', { tier: 'core', gpu: 'yes' }), cluster('c')];
    const names = (clusterAffinity: SubscriptionSpec['subscribers'][number]['clusterAffinity']) => {
      const r = run({ subscription: sub({ subscribers: [{ clusterAffinity }] }), clusters });
      return r.ok ? r.placement.clusters.map((c) => c.cluster.name) : [];
    };
    expect(names({ matchLabels: { 'clusters.clusternet.io/cluster-name': 'b' } })).toEqual(['b']);
    expect(names({ matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['core'] }] })).toEqual(['a', 'c']);
    expect(names({ matchExpressions: [{ key: 'gpu', operator: 'Exists' }] })).toEqual(['b']);
    expect(names({ matchExpressions: [{ key: 'tier', operator: 'DoesNotExist' }] })).toEqual(['c']);
    expect(names({ matchLabels: { tier: 'edge' }, matchExpressions: [{ key: 'gpu', operator: 'Exists' }] })).toEqual([]);
    expect(names({})).toEqual(['a', 'b', 'c']);
  });

  it('refuses an operator a label selector does not have, naming the field', () => {
    const error = failed(run({
      subscription: sub({ subscribers: [{ clusterAffinity: { matchExpressions: [{ key: 'cpu', operator: 'Gt', values: ['4'] }] } }] }),
      clusters: [cluster('a')],
    }));
    expect(error.code).toBe(SchedulingErrorCode.InvalidScheduling);
    expect(error.message).toContain('spec.subscribers[0].clusterAffinity.matchExpressions[0].operator');
  });

  it('says why nothing fits when no cluster matches', () => {
    const error = failed(run({ subscription: sub({ subscribers: [{ clusterAffinity: { matchLabels: { region: 'mars' } } }] }), clusters: [cluster('a'), cluster('b')] }));
    expect(error.code).toBe(SchedulingErrorCode.NoMatchingClusters);
    expect(error.message).toContain('2 clusters considered');
    expect(error.excluded.map((e) => e.reason)).toEqual(['NoMatch', 'NoMatch']);
  });
});

describe('Replication', () => {
  it('gives every matched cluster every feed whole, replicas untouched', () => {
    const p = placed(run({ subscription: sub({ schedulingStrategy: 'Replication' }), feedOrders: [order(3)], clusters: [cluster('a'), cluster('b')] }));
    expect(replicas(p)).toEqual({ a: 'whole', b: 'whole' });
    expect(replicas(p, serviceKey)).toEqual({ a: 'whole', b: 'whole' });
  });
});

describe('Static dividing', () => {
  const three = [cluster('a', { w: '1' }), cluster('b', { w: '2' }), cluster('c', { w: '3' })];
  const weighted = () =>
    sub({
      schedulingStrategy: 'Dividing',
      dividingScheduling: { type: 'Static' },
      subscribers: [1, 2, 3].map((w) => ({ clusterAffinity: { matchLabels: { w: String(w) } }, weight: w })),
    });

  it('divides by weight and conserves the sum, remainders by largest remainder', () => {
    expect(replicas(placed(run({ subscription: weighted(), feedOrders: [order(6)], clusters: three })))).toEqual({ a: 1, b: 2, c: 3 });
    // exact shares 1.67, 3.33, 5: floors 1, 3, 5 and the one left goes to the largest remainder
    expect(replicas(placed(run({ subscription: weighted(), feedOrders: [order(10)], clusters: three })))).toEqual({ a: 2, b: 3, c: 5 });
    const p = placed(run({ subscription: weighted(), feedOrders: [order(10)], clusters: three }));
    expect(replicas(p, serviceKey)).toEqual({ a: 'whole', b: 'whole', c: 'whole' });
  });

  it('breaks equal remainders by cluster name, whatever the input order', () => {
    const s = sub({ schedulingStrategy: 'Dividing', dividingScheduling: { type: 'Static' }, subscribers: [{ clusterAffinity: {}, weight: 1 }] });
    const clusters = [cluster('c'), cluster('a'), cluster('b')];
    expect(replicas(placed(run({ subscription: s, feedOrders: [order(2)], clusters })))).toEqual({ a: 1, b: 1, c: 0 });
    expect(replicas(placed(run({ subscription: s, feedOrders: [order(2)], clusters: [...clusters].reverse() })))).toEqual({ a: 1, b: 1, c: 0 });
  });

  it('weighs a cluster by every subscriber that matches it', () => {
    const s = sub({
      schedulingStrategy: 'Dividing',
      dividingScheduling: { type: 'Static' },
      subscribers: [
        { clusterAffinity: {}, weight: 1 },
        { clusterAffinity: { matchLabels: { big: 'true' } }, weight: 2 },
      ],
    });
    expect(replicas(placed(run({ subscription: s, feedOrders: [order(8)], clusters: [cluster('a'), cluster('b', { big: 'true' })] })))).toEqual({ a: 2, b: 6 });
  });

  it('refuses Static dividing when every weight is 0', () => {
    const s = sub({ schedulingStrategy: 'Dividing', dividingScheduling: { type: 'Static' } });
    expect(failed(run({ subscription: s, feedOrders: [order(2)], clusters: [cluster('a')] })).code).toBe(SchedulingErrorCode.InvalidScheduling);
  });

  it('divides a Job by parallelism and leaves other feeds whole (feedOrderFor)', () => {
    const job = { apiVersion: 'batch/v1', kind: 'Job', namespace: 'default', name: 'crunch' };
    const s = sub({ schedulingStrategy: 'Dividing', dividingScheduling: { type: 'Static' }, subscribers: [{ clusterAffinity: {}, weight: 1 }], feeds: [job, service] });
    const orders = [feedOrderFor(job, { spec: { parallelism: 5, template: { spec: { containers: [{ name: 'x' }] } } } }), feedOrderFor(service, { spec: {} })];
    const p = placed(run({ subscription: s, feedOrders: orders, clusters: [cluster('a'), cluster('b')] }));
    expect(replicas(p, 'batch/v1/Job/default/crunch')).toEqual({ a: 3, b: 2 });
    expect(replicas(p, serviceKey)).toEqual({ a: 'whole', b: 'whole' });
  });
});

describe('Static dividing of the examples', () => {
  it("app-demo's Deployment is divided by weight; its Namespace and Service, and a Description, go whole", () => {
    const subscription = parse(readFileSync(`${examples}/app-demo/subscription.yaml`, 'utf8')) as SubscriptionInput;
    const objects = ['namespace', 'service', 'deployment'].map((f) => parse(readFileSync(`${examples}/app-demo/${f}.yaml`, 'utf8')) as { metadata: { name: string } });
    const description = { apiVersion: 'apps.clusternet.io/v1alpha1', kind: 'Description', namespace: 'default', name: 'nginx-desc' };
    const spec: SubscriptionSpec = {
      ...subscription.spec,
      schedulingStrategy: 'Dividing',
      dividingScheduling: { type: 'Static' },
      subscribers: [{ clusterAffinity: { matchLabels: { env: 'edge' } }, weight: 1 }],
      feeds: [...subscription.spec.feeds, description],
    };
    const feedOrders = [
      ...subscription.spec.feeds.map((feed, i) => feedOrderFor(feed, objects[i])),
      feedOrderFor(description, parse(readFileSync(`${examples}/replication/description.yaml`, 'utf8'))),
    ];
    const p = placed(run({ subscription: { ...subscription, spec }, feedOrders, clusters: [cluster('a', { env: 'edge' }), cluster('b', { env: 'edge' })] }));
    expect(replicas(p, 'apps/v1/Deployment/foo/my-nginx')).toEqual({ a: 1, b: 1 });
    for (const key of ['v1/Namespace/foo', 'v1/Service/foo/my-nginx-svc', 'apps.clusternet.io/v1alpha1/Description/default/nginx-desc']) {
      expect(replicas(p, key)).toEqual({ a: 'whole', b: 'whole' });
    }
  });
});

describe('feedOrderFor', () => {
  it('reads replicas and per-pod requests: containers summed, an init container if larger, limits standing in for requests', () => {
    const o = feedOrderFor(deployment, {
      spec: {
        replicas: 4,
        template: {
          spec: {
            initContainers: [{ resources: { requests: { cpu: '3', memory: '64Mi' } } }],
            containers: [
              { resources: { requests: { cpu: '500m', memory: '128Mi' } } },
              { resources: { limits: { cpu: '1', memory: '256Mi' } } },
            ],
          },
        },
      },
    });
    expect(o).toEqual({
      ...deployment,
      desiredReplicas: 4,
      replicaRequirements: { resources: { requests: { cpu: '3', memory: String(384 * 2 ** 20) } } },
      replicaJsonPath: '/spec/replicas',
    });
  });

  it('defaults replicas to 1, and does not divide kinds without replicas or from another group', () => {
    expect(feedOrderFor(deployment, { spec: {} }).desiredReplicas).toBe(1);
    expect(feedOrderFor({ ...deployment, apiVersion: 'example.com/v1' }, { spec: { replicas: 3 } }).desiredReplicas).toBeUndefined();
    expect(feedOrderFor(service, { spec: { replicas: 3 } })).toEqual(service);
  });
});

describe('Dynamic dividing', () => {
  const dynamic = (strategy: string, extra: Record<string, unknown> = {}, spec: Partial<SubscriptionSpec> = {}) =>
    sub({ schedulingStrategy: 'Dividing', dividingScheduling: { type: 'Dynamic', dynamicDividing: { strategy, ...extra } }, ...spec });
  const cpus = (free: Record<string, number>) => Object.entries(free).map(([name, cpu]) => cluster(name, {}, { allocatable: { cpu: String(cpu + 1), pods: '110' }, requested: { cpu: '1' } }));

  it('Spread divides by free capacity (allocatable minus requested, over the pod requests)', () => {
    const p = placed(run({ subscription: dynamic('Spread'), feedOrders: [order(4, { cpu: '500m' })], clusters: cpus({ a: 4, b: 2, c: 2 }) }));
    expect(replicas(p)).toEqual({ a: 2, b: 1, c: 1 });
    expect(replicas(p, serviceKey)).toEqual({ a: 'whole', b: 'whole', c: 'whole' });
  });

  it('counts fractional requests exactly (3 pods of 100m fit in 300m)', () => {
    const clusters = [cluster('a', {}, { allocatable: { cpu: '300m' } })];
    expect(replicas(placed(run({ subscription: dynamic('Spread'), feedOrders: [order(3, { cpu: '100m' })], clusters })))).toEqual({ a: 3 });
    expect(failed(run({ subscription: dynamic('Spread'), feedOrders: [order(4, { cpu: '100m' })], clusters })).code).toBe(SchedulingErrorCode.InsufficientCapacity);
  });

  it('Binpack uses as few clusters as hold the replicas', () => {
    const p = placed(run({ subscription: dynamic('Binpack'), feedOrders: [order(5)], clusters: cpus({ a: 4, b: 6, c: 2 }) }));
    expect(replicas(p)).toEqual({ b: 5 });
    expect(reasons(p)).toEqual({ a: 'NotSelected', c: 'NotSelected' });
    const more = placed(run({ subscription: dynamic('Binpack'), feedOrders: [order(9)], clusters: cpus({ a: 4, b: 6, c: 2 }) }));
    expect(replicas(more)).toEqual({ a: 3, b: 6 });
  });

  it('gives a clear error when capacity falls short, and excludes clusters without room, not ready, or not reporting', () => {
    const clusters = [...cpus({ a: 1, b: 0 }), cluster('down', {}, { allocatable: { cpu: '8' }, ready: false }), cluster('silent')];
    const error = failed(run({ subscription: dynamic('Spread'), feedOrders: [order(3)], clusters }));
    expect(error.code).toBe(SchedulingErrorCode.InsufficientCapacity);
    expect(error.message).toContain(deploymentKey);
    expect(reasons(error)).toEqual({ b: 'NoCapacity', down: 'NoCapacity', silent: 'NoCapacity' });
  });

  it('honours maxClusters and refuses when minClusters cannot be met', () => {
    const clusters = cpus({ a: 4, b: 3, c: 2 });
    const p = placed(run({ subscription: dynamic('Spread', { maxClusters: 2 }), feedOrders: [order(6)], clusters }));
    expect(replicas(p)).toEqual({ a: 3, b: 3 });
    expect(reasons(p)).toEqual({ c: 'NotSelected' });
    const error = failed(run({ subscription: dynamic('Spread', { minClusters: 4 }), feedOrders: [order(6)], clusters }));
    expect(error.code).toBe(SchedulingErrorCode.MinClustersNotMet);
    expect(error.message).toContain('minClusters is 4');
  });

  it('Binpack with minClusters binds at least that many clusters', () => {
    const p = placed(run({ subscription: dynamic('Binpack', { minClusters: 2 }), feedOrders: [order(3)], clusters: cpus({ a: 4, b: 3, c: 2 }) }));
    expect(Object.keys(replicas(p))).toHaveLength(2);
    expect(Object.values(replicas(p)).reduce((a, n) => (a as number) + (n as number), 0)).toBe(3);
  });

  it('fills preferredClusters first, by weight, then the rest', () => {
    const clusters = [
      cluster('a', { site: 'factory' }, { allocatable: { cpu: '2' } }),
      cluster('b', { site: 'cloud' }, { allocatable: { cpu: '10' } }),
      cluster('c', { site: 'store' }, { allocatable: { cpu: '2' } }),
    ];
    const preferredClusters = [
      { weight: 50, preference: { matchExpressions: [{ key: 'site', operator: 'In', values: ['factory', 'store'] }] } },
      { weight: 10, preference: { matchFields: [{ key: 'metadata.name', operator: 'In', values: ['c'] }] } },
    ];
    const p = placed(run({ subscription: dynamic('Spread', { preferredClusters }), feedOrders: [order(5)], clusters }));
    expect(replicas(p)).toEqual({ a: 2, b: 1, c: 2 });
    const q = placed(run({ subscription: dynamic('Spread', { preferredClusters }), feedOrders: [order(3)], clusters }));
    expect(replicas(q)).toEqual({ a: 1, b: 0, c: 2 });
  });

  it('preferredClusters take Gt and Lt over integer labels', () => {
    const clusters = [cluster('small', { cores: '8' }, { allocatable: { cpu: '10' } }), cluster('large', { cores: '64' }, { allocatable: { cpu: '10' } })];
    const preferredClusters = [{ weight: 1, preference: { matchExpressions: [{ key: 'cores', operator: 'Gt', values: ['16'] }] } }];
    expect(replicas(placed(run({ subscription: dynamic('Spread', { preferredClusters }), feedOrders: [order(4)], clusters })))).toEqual({ large: 4, small: 0 });
  });

  it('topologySpreadConstraints keep zones within maxSkew, or say they cannot', () => {
    const clusters = [
      cluster('a1', { zone: 'a' }, { allocatable: { cpu: '10' } }),
      cluster('a2', { zone: 'a' }, { allocatable: { cpu: '10' } }),
      cluster('a3', { zone: 'a' }, { allocatable: { cpu: '10' } }),
      cluster('b1', { zone: 'b' }, { allocatable: { cpu: '2' } }),
    ];
    const topologySpreadConstraints = [{ maxSkew: 1, topologyKey: 'zone', whenUnsatisfiable: 'DoNotSchedule' }];
    const p = placed(run({ subscription: dynamic('Binpack', { topologySpreadConstraints }, { feeds: [deployment] }), feedOrders: [order(4)], clusters }));
    const r = replicas(p) as Record<string, number>;
    expect((r.a1 ?? 0) + (r.a2 ?? 0) + (r.a3 ?? 0)).toBe(2);
    expect(r.b1).toBe(2);
    const error = failed(run({ subscription: dynamic('Spread', { topologySpreadConstraints }), feedOrders: [order(6)], clusters }));
    expect(error.code).toBe(SchedulingErrorCode.TopologyUnsatisfiable);
  });

  it('is sticky: shares stay when capacity changes, only the difference moves on scale up and down', () => {
    const s = dynamic('Spread');
    const first = placed(run({ subscription: s, feedOrders: [order(4)], clusters: cpus({ a: 4, b: 4 }) }));
    expect(replicas(first)).toEqual({ a: 2, b: 2 });
    const busier = cpus({ a: 1, b: 9 });
    expect(placed(run({ subscription: s, feedOrders: [order(4)], clusters: busier, previous: first }))).toEqual(first);
    const up = placed(run({ subscription: s, feedOrders: [order(8)], clusters: busier, previous: first }));
    expect(replicas(up)).toEqual({ a: 2, b: 6 });
    const down = placed(run({ subscription: s, feedOrders: [order(5)], clusters: busier, previous: up }));
    expect(replicas(down)).toEqual({ a: 2, b: 3 });
    const fresh = placed(run({ subscription: dynamic('Spread', {}, {}), feedOrders: [order(8)], clusters: busier, previous: null }));
    expect(replicas(fresh)).toEqual({ a: 1, b: 7 });
  });

  it('the reschedule annotation forces a fresh placement', () => {
    const first = placed(run({ subscription: dynamic('Spread'), feedOrders: [order(4)], clusters: cpus({ a: 4, b: 4 }) }));
    const again = sub({ ...dynamic('Spread').spec }, { [rescheduleAnnotation]: 'true' });
    expect(replicas(placed(run({ subscription: again, feedOrders: [order(4)], clusters: cpus({ a: 1, b: 9 }), previous: first })))).toEqual({ a: 0, b: 4 });
    const ignored = sub({ ...dynamic('Spread').spec }, { [rescheduleAnnotation]: 'false' });
    expect(placed(run({ subscription: ignored, feedOrders: [order(4)], clusters: cpus({ a: 1, b: 9 }), previous: first }))).toEqual(first);
  });

  it('refuses more replicas than Dynamic dividing places, naming the feed', () => {
    const error = failed(run({ subscription: dynamic('Spread'), feedOrders: [order(2 ** 31 - 1)], clusters: [cluster('a', {}, { allocatable: { cpu: '1' } })] }));
    expect(error.code).toBe(SchedulingErrorCode.InvalidScheduling);
    expect(error.message).toContain('(Deployment default/web).desiredReplicas');
    const fine = run({ subscription: sub({ schedulingStrategy: 'Dividing', dividingScheduling: { type: 'Static' }, subscribers: [{ clusterAffinity: {}, weight: 1 }] }), feedOrders: [order(2 ** 31 - 1)], clusters: [cluster('a'), cluster('b')] });
    expect(replicas(placed(fine))).toEqual({ a: 2 ** 30, b: 2 ** 30 - 1 });
  });

  it('refuses Dynamic without dynamicDividing, and min above max', () => {
    const noDyn = sub({ schedulingStrategy: 'Dividing', dividingScheduling: { type: 'Dynamic' } });
    expect(failed(run({ subscription: noDyn, clusters: [cluster('a')] })).message).toContain('spec.dividingScheduling.dynamicDividing');
    expect(failed(run({ subscription: dynamic('Spread', { minClusters: 3, maxClusters: 2 }), clusters: [cluster('a')] })).code).toBe(SchedulingErrorCode.InvalidScheduling);
  });
});

describe('schedulingBySubGroup', () => {
  it('takes subGroupStrategy.minClusters clusters from each subscriber, all of a smaller group', () => {
    const clusters = [cluster('e1', { region: 'east' }), cluster('e2', { region: 'east' }), cluster('e3', { region: 'east' }), cluster('w1', { region: 'west' })];
    const s = sub({
      schedulingBySubGroup: true,
      subscribers: [
        { clusterAffinity: { matchLabels: { region: 'east' } }, subGroupStrategy: { minClusters: 2 } },
        { clusterAffinity: { matchLabels: { region: 'west' } }, subGroupStrategy: { minClusters: 3 } },
      ],
    });
    const p = placed(run({ subscription: s, clusters }));
    expect(p.clusters.map((c) => c.cluster.name)).toEqual(['e1', 'e2', 'w1']);
    expect(reasons(p)).toEqual({ e3: 'NotSelected' });
    // sticky: a cluster placed before stays in its subgroup
    const previous: Placement = { ...p, clusters: p.clusters.map((c) => (c.cluster.name === 'e2' ? { ...c, cluster: { ...clusters[2]!.metadata, key: 'clusternet-e3/e3', clusterId: clusters[2]!.spec.clusterId } } : c)) };
    expect(placed(run({ subscription: s, clusters, previous })).clusters.map((c) => c.cluster.name)).toEqual(['e1', 'e3', 'w1']);
  });

  it('requires subGroupStrategy on every subscriber', () => {
    const error = failed(run({ subscription: sub({ schedulingBySubGroup: true }), clusters: [cluster('a')] }));
    expect(error.code).toBe(SchedulingErrorCode.InvalidScheduling);
    expect(error.message).toContain('spec.subscribers[0].subGroupStrategy');
  });
});

describe('taints and tolerations', () => {
  const noSchedule = [{ key: 'maintenance', effect: 'NoSchedule' }];
  const staticSub = (extra: Partial<SubscriptionSpec> = {}) =>
    sub({ schedulingStrategy: 'Dividing', dividingScheduling: { type: 'Static' }, subscribers: [{ clusterAffinity: {}, weight: 1 }], ...extra });

  it('an untolerated NoSchedule taint gets nothing new; what it had is kept and does not grow', () => {
    const healthy = [cluster('a'), cluster('b')];
    const first = placed(run({ subscription: staticSub(), feedOrders: [order(4)], clusters: healthy }));
    expect(replicas(first)).toEqual({ a: 2, b: 2 });
    const tainted = [cluster('a'), cluster('b', {}, { taints: noSchedule })];
    const fresh = placed(run({ subscription: staticSub(), feedOrders: [order(4)], clusters: tainted }));
    expect(replicas(fresh)).toEqual({ a: 4 });
    expect(reasons(fresh)).toEqual({ b: 'UntoleratedTaint' });
    const kept = placed(run({ subscription: staticSub(), feedOrders: [order(6)], clusters: tainted, previous: first }));
    expect(replicas(kept)).toEqual({ a: 4, b: 2 });
    expect(kept.clusters.find((c) => c.cluster.name === 'b')!.held).toBe('UntoleratedTaint');
    const tolerated = placed(run({ subscription: staticSub({ clusterTolerations: [{ key: 'maintenance', operator: 'Exists' }] }), feedOrders: [order(4)], clusters: tainted }));
    expect(replicas(tolerated)).toEqual({ a: 2, b: 2 });
  });

  it('an untolerated NoExecute taint loses what it had', () => {
    const first = placed(run({ subscription: staticSub(), feedOrders: [order(4)], clusters: [cluster('a'), cluster('b')] }));
    const p = placed(run({ subscription: staticSub(), feedOrders: [order(4)], clusters: [cluster('a'), cluster('b', {}, { taints: [{ key: 'x', value: 'y', effect: 'NoExecute' }] })], previous: first }));
    expect(replicas(p)).toEqual({ a: 4 });
    expect(reasons(p)).toEqual({ b: 'UntoleratedTaint' });
  });

  it('PreferNoSchedule only orders clusters: the untainted one is chosen first', () => {
    const s = sub({ schedulingBySubGroup: true, subscribers: [{ clusterAffinity: {}, subGroupStrategy: { minClusters: 1 } }] });
    const p = placed(run({ subscription: s, clusters: [cluster('a', {}, { taints: [{ key: 'spot', effect: 'PreferNoSchedule' }] }), cluster('b')] }));
    expect(p.clusters.map((c) => c.cluster.name)).toEqual(['b']);
  });

  for (const type of ['Static', 'Dynamic'] as const) {
    it(`${type}: an unreachable cluster keeps its share for tolerationSeconds, then the share moves, and comes back when it returns`, () => {
      const spec: Partial<SubscriptionSpec> = {
        schedulingStrategy: 'Dividing',
        dividingScheduling: type === 'Static' ? { type } : { type, dynamicDividing: { strategy: 'Spread' } },
        subscribers: [{ clusterAffinity: {}, weight: 1 }],
        clusterTolerations: [{ key: unreachable, operator: 'Exists', effect: 'NoSchedule', tolerationSeconds: 300 }],
      };
      const s = sub(spec);
      const room = { allocatable: { cpu: '10' } };
      const t0 = new Date('2026-11-22T12:00:00Z');
      const at = (seconds: number) => new Date(t0.getTime() + seconds * 1000);
      const healthy = [cluster('a', {}, room), cluster('b', {}, room), cluster('c', {}, room)];
      const cut = [cluster('a', {}, room), cluster('b', {}, room), cluster('c', {}, { ...room, ready: false, taints: [{ key: unreachable, effect: 'NoSchedule', timeAdded: at(10).toISOString() }] })];

      const start = placed(schedule({ subscription: s, feedOrders: [order(6)], clusters: healthy, now: t0 }));
      expect(replicas(start)).toEqual({ a: 2, b: 2, c: 2 });

      const within = placed(schedule({ subscription: s, feedOrders: [order(6)], clusters: cut, now: at(309), previous: start }));
      expect(replicas(within)).toEqual({ a: 2, b: 2, c: 2 });
      expect(within.clusters.find((c) => c.cluster.name === 'c')).toMatchObject({
        held: 'TemporarilyTolerated',
        message: `taint ${unreachable}:NoSchedule tolerated until ${at(310).toISOString()}`,
      });

      const after = placed(schedule({ subscription: s, feedOrders: [order(6)], clusters: cut, now: at(310), previous: within }));
      expect(replicas(after)).toEqual({ a: 3, b: 3 });
      expect(reasons(after)).toEqual({ c: 'TolerationExpired' });

      const later = placed(schedule({ subscription: s, feedOrders: [order(6)], clusters: cut, now: at(900), previous: after }));
      expect(later).toEqual(after);

      const back = placed(schedule({ subscription: s, feedOrders: [order(6)], clusters: healthy, now: at(1000), previous: later }));
      expect(replicas(back)).toEqual({ a: 2, b: 2, c: 2 });
      expect(back.evicted).toEqual([]);
    });
  }

  it('Replication: a cluster whose toleration ran out is dropped, and comes back with the taint gone', () => {
    const s = sub({ clusterTolerations: [{ key: unreachable, operator: 'Exists', tolerationSeconds: 60 }] });
    const cut = [cluster('a'), cluster('b', {}, { taints: [{ key: unreachable, effect: 'NoSchedule', timeAdded: now.toISOString() }] })];
    const first = placed(run({ subscription: s, clusters: [cluster('a'), cluster('b')] }));
    expect(placed(schedule({ subscription: s, clusters: cut, now: new Date(now.getTime() + 59_000), previous: first })).clusters).toHaveLength(2);
    expect(reasons(placed(schedule({ subscription: s, clusters: cut, now: new Date(now.getTime() + 60_000), previous: first })))).toEqual({ b: 'TolerationExpired' });
  });

  it('a tainted cluster within its toleration gets nothing when it had nothing before', () => {
    const s = sub({ clusterTolerations: [{ key: unreachable, operator: 'Exists', tolerationSeconds: 60 }] });
    const p = placed(run({ subscription: s, clusters: [cluster('a'), cluster('b', {}, { taints: [{ key: unreachable, effect: 'NoSchedule', timeAdded: now.toISOString() }] })] }));
    expect(reasons(p)).toEqual({ b: 'TemporarilyTolerated' });
  });
});

describe('toleration matching (Kubernetes rules)', () => {
  const taint = (seconds: number) => [{ key: 'k', value: 'v', effect: 'NoSchedule', timeAdded: new Date(now.getTime() - seconds * 1000).toISOString() }];
  const placedWith = (clusterTolerations: SubscriptionSpec['clusterTolerations'], age = 100, taints: ClusterOptions['taints'] = taint(age)) => {
    const p = placed(run({ subscription: sub({ clusterTolerations }), clusters: [cluster('a'), cluster('t', {}, { taints })] }));
    return p.clusters.some((c) => c.cluster.name === 't') ? 'placed' : reasons(p).t;
  };

  it('Equal needs the value, Exists does not, and the effect must match when given', () => {
    expect(placedWith([{ key: 'k', operator: 'Equal', value: 'v' }])).toBe('placed');
    expect(placedWith([{ key: 'k', value: 'v' }])).toBe('placed');
    expect(placedWith([{ key: 'k', operator: 'Equal', value: 'w' }])).toBe('UntoleratedTaint');
    expect(placedWith([{ key: 'k', operator: 'Exists' }])).toBe('placed');
    expect(placedWith([{ operator: 'Exists' }])).toBe('placed');
    expect(placedWith([{ key: 'k', operator: 'Exists', effect: 'NoExecute' }])).toBe('UntoleratedTaint');
  });

  it('the shortest tolerationSeconds of the matching tolerations counts, from timeAdded', () => {
    expect(placedWith([{ key: 'k', operator: 'Exists', tolerationSeconds: 600 }, { key: 'k', operator: 'Exists', tolerationSeconds: 60 }])).toBe('TolerationExpired');
    expect(placedWith([{ key: 'k', operator: 'Exists' }, { key: 'k', operator: 'Exists', tolerationSeconds: 60 }])).toBe('TolerationExpired');
    expect(placedWith([{ key: 'k', operator: 'Exists', tolerationSeconds: 600 }])).toBe('TemporarilyTolerated');
    // no timeAdded: the window cannot run out
    expect(placedWith([{ key: 'k', operator: 'Exists', tolerationSeconds: 1 }], 0, [{ key: 'k', value: 'v', effect: 'NoSchedule' }])).toBe('TemporarilyTolerated');
  });
});

describe('Dynamic dividing, more', () => {
  const dynamic = (strategy: string) => sub({ schedulingStrategy: 'Dividing', dividingScheduling: { type: 'Dynamic', dynamicDividing: { strategy } } });
  const api = { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'default', name: 'api' };
  const apiKey = 'apps/v1/Deployment/default/api';

  it('a second divided feed sees the capacity the first one took', () => {
    const s = sub({ ...dynamic('Binpack').spec, feeds: [deployment, api] });
    const clusters = [cluster('a', {}, { allocatable: { cpu: '4' } }), cluster('b', {}, { allocatable: { cpu: '3' } })];
    const p = placed(run({ subscription: s, feedOrders: [order(4), { ...api, desiredReplicas: 2, replicaRequirements: { resources: { requests: { cpu: '1' } } } }], clusters }));
    expect(replicas(p)).toEqual({ a: 4, b: 0 });
    expect(replicas(p, apiKey)).toEqual({ a: 0, b: 2 });
  });

  it('Binpack scales down from the smallest share, and lets go of emptied clusters', () => {
    const clusters = [cluster('a', {}, { allocatable: { cpu: '4' } }), cluster('b', {}, { allocatable: { cpu: '3' } })];
    const full = placed(run({ subscription: dynamic('Binpack'), feedOrders: [order(6)], clusters }));
    expect(replicas(full)).toEqual({ a: 4, b: 2 });
    const down = placed(run({ subscription: dynamic('Binpack'), feedOrders: [order(4)], clusters, previous: full }));
    expect(replicas(down)).toEqual({ a: 4 });
    expect(reasons(down)).toEqual({ b: 'NotSelected' });
  });

  it('a cluster within its toleration keeps its share but gets none of a scale-up', () => {
    const s = sub({ ...dynamic('Spread').spec, clusterTolerations: [{ key: unreachable, operator: 'Exists', tolerationSeconds: 300 }] });
    const room = { allocatable: { cpu: '10' } };
    const first = placed(run({ subscription: s, feedOrders: [order(4)], clusters: [cluster('a', {}, room), cluster('b', {}, room)] }));
    const cut = [cluster('a', {}, room), cluster('b', {}, { ...room, ready: false, taints: [{ key: unreachable, effect: 'NoSchedule', timeAdded: now.toISOString() }] })];
    expect(replicas(placed(run({ subscription: s, feedOrders: [order(10)], clusters: cut, previous: first })))).toEqual({ a: 8, b: 2 });
  });
});

describe('priority', () => {
  it('orders higher priority first, then older, then by name', () => {
    const s = (name: string, priority: number | undefined, creationTimestamp: string): SubscriptionInput => ({
      metadata: { name, namespace: 'default', creationTimestamp },
      spec: { subscribers: [], feeds: [], ...(priority === undefined ? {} : { priority }) },
    });
    const subs = [s('low', -1, '2026-01-01T00:00:00Z'), s('default-new', undefined, '2026-03-01T00:00:00Z'), s('high', 10, '2026-05-01T00:00:00Z'), s('default-old', 0, '2026-02-01T00:00:00Z'), s('default-b', 0, '2026-02-01T00:00:00Z')];
    expect(inSchedulingOrder(subs).map((x) => x.metadata.name)).toEqual(['high', 'default-b', 'default-old', 'default-new', 'low']);
    expect(compareSubscriptions(subs[0]!, subs[0]!)).toBe(0);
  });
});

describe('toSubscriptionStatus', () => {
  it("gives Clusternet's bindingClusters and per-feed replica lists", () => {
    const s = sub({ schedulingStrategy: 'Dividing', dividingScheduling: { type: 'Static' }, subscribers: [{ clusterAffinity: {}, weight: 1 }] });
    const p = placed(run({ subscription: s, feedOrders: [order(3)], clusters: [cluster('b'), cluster('a')] }));
    expect(toSubscriptionStatus(p)).toEqual({
      bindingClusters: ['clusternet-a/a', 'clusternet-b/b'],
      replicas: { [deploymentKey]: [2, 1], [serviceKey]: [] },
    });
  });
});

describe('interfaces', () => {
  it("the scheduler's error codes are hawser error codes", () => {
    for (const code of Object.values(SchedulingErrorCode)) expect(Object.values(ErrorCode)).toContain(code);
  });

  it('takes a ManagedCluster as it is', () => {
    const managed: ManagedCluster = {
      apiVersion: 'clusters.hawser.io/v1beta1',
      kind: 'ManagedCluster',
      metadata: { name: 'edge', namespace: 'hawser-0f6c1d2e', labels: { env: 'prod' } },
      spec: { clusterId: '0f6c1d2e-3a4b-4c5d-8e9f-a0b1c2d3e4f5', clusterType: 'EdgeCluster', syncMode: 'Pull', taints: [] },
      status: { conditions: [] },
    };
    const input: ClusterInput = managed;
    expect(placed(run({ subscription: sub({}), clusters: [input] })).clusters[0]!.cluster.key).toBe('hawser-0f6c1d2e/edge');
  });
});
