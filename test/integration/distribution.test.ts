import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DeploymentJson, Fleet, type KubeJson } from './fleet.js';
import { deployer } from '../../src/hub/index.js';
import { hasUnreachableTaint } from './harness.js';

const { manifestName } = deployer;

// Distribution end to end, on real processes: a hub, and three child clusters
// that really run workloads (kube-controller-manager, kube-scheduler, kwok
// nodes), each with its agent. What a user types goes through the real CLI;
// what lands in each child is read with the testbed's kubectl.
//
//   west: environment=production, region=us-west  (its link is a CountingRelay)
//   east: environment=production, region=us-east
//   lab:  environment=staging,    region=us-west  (its link is a toxiproxy; short lease)
//
// The clusters start once for the file; each test removes what it applied
// and waits until the children are clean again.

const appDemoId = 'dc91021d-2361-4f6d-a404-7c33b9e01118';
const names = ['west', 'east', 'lab'] as const;
type Name = (typeof names)[number];

describe('distribution to real child clusters', () => {
  let fleet: Fleet;

  beforeAll(async () => {
    fleet = await Fleet.start('distribution', [
      { name: 'west', labels: { environment: 'production', region: 'us-west' }, link: 'relay', agentArgs: ['--cluster-status-update-frequency=2s'] },
      { name: 'east', labels: { environment: 'production', region: 'us-east' } },
      {
        name: 'lab',
        labels: { environment: 'staging', region: 'us-west' },
        link: 'toxiproxy',
        // A lease that runs out soon after the link is cut, and an agent that notices and redials quickly.
        agentArgs: ['--cluster-lease-duration=4s', '--cluster-status-update-frequency=1s', '--keepalive-time=1s', '--keepalive-timeout=1s', '--register-timeout=3s'],
      },
    ]);
  }, 900_000);

  afterAll(async () => {
    await fleet?.close();
  }, 180_000);

  const deployment = (name: Name, deploymentName: string, namespace = 'default') => fleet.object<DeploymentJson>(name, 'deployment', deploymentName, namespace);

  /** Waits until the Deployment in each named child has exactly these ready replicas (and spec.replicas). */
  async function readyIn(deploymentName: string, want: Partial<Record<Name, number>>, namespace = 'default'): Promise<Record<string, DeploymentJson>> {
    const got: Record<string, DeploymentJson> = {};
    for (const [name, replicas] of Object.entries(want) as Array<[Name, number]>) {
      got[name] = await fleet.eventually(`${deploymentName} with ${replicas} ready replicas in ${name}`, async () => {
        const d = await deployment(name, deploymentName, namespace);
        return d?.spec.replicas === replicas && d.status?.readyReplicas === replicas && d.status.replicas === replicas ? d : undefined;
      });
    }
    return got;
  }

  /** How many Manifests the hub holds for a cluster (the table: -o json of hundreds is more than the CLI harness buffers). */
  async function manifestsIn(name: Name): Promise<number> {
    const ns = fleet.member(name).cluster.metadata.namespace!;
    const table = await fleet.ok(['get', 'manifests', '-n', ns]);
    return table.startsWith('No manifests found') ? 0 : table.trim().split('\n').length - 1;
  }

  /** Deletes with the CLI and waits until no child has any of `gone` (kind, name, namespace). */
  async function removeAndWait(paths: string[], gone: Array<[string, string, string?]>): Promise<void> {
    for (const p of paths) await fleet.ok(['delete', '-f', p]);
    for (const name of names) {
      await fleet.eventually(`${name} clean`, async () => {
        for (const [kind, objectName, ns] of gone) if (await fleet.object(name, kind, objectName, ns)) return false;
        return (await manifestsIn(name)) === 0;
      });
    }
  }

  describe('the Clusternet examples, applied unchanged but for the ids they ask to replace', () => {
    it('app-demo: only the cluster with that id gets Namespace foo, Deployment my-nginx (2 ready replicas) and Service my-nginx-svc', async () => {
      const lab = fleet.member('lab');
      const dir = await fleet.example('app-demo', { [appDemoId]: lab.cluster.spec.clusterId });
      await fleet.ok(['apply', '-f', dir]);

      const { lab: nginx } = await readyIn('my-nginx', { lab: 2 }, 'foo');
      expect(nginx!.spec.template.spec.containers.map((c) => c.image)).toEqual(['nginx:1.25']);
      expect(await fleet.object('lab', 'namespace', 'foo')).toBeDefined();
      const svc = await fleet.object<KubeJson & { spec: { ports: Array<{ port: number }> } }>('lab', 'service', 'my-nginx-svc', 'foo');
      expect(svc?.spec.ports.map((p) => p.port)).toEqual([80]);
      // The other clusters: nothing placed, nothing applied.
      const sub = await fleet.subscription<{ status: { bindingClusters: string[] } }>('app-demo');
      expect(sub.status.bindingClusters).toEqual([`${lab.cluster.metadata.namespace}/lab`]);
      for (const other of ['west', 'east'] as const) {
        expect(await manifestsIn(other)).toBe(0);
        expect(await fleet.object(other, 'namespace', 'foo')).toBeUndefined();
      }

      await removeAndWait([dir], [['namespace', 'foo']]);
    });

    it('replication: every production cluster in us-west or us-east gets nginx-desc whole (nginx with 3 ready replicas, nginx-svc); lab gets nothing', async () => {
      const dir = await fleet.example('replication');
      await fleet.ok(['apply', '-f', dir]);

      const ready = await readyIn('nginx', { west: 3, east: 3 });
      for (const name of ['west', 'east'] as const) {
        expect(ready[name]!.spec.template.spec.containers.map((c) => c.image)).toEqual(['nginx:1.25']);
        expect(await fleet.object(name, 'service', 'nginx-svc', 'default')).toBeDefined();
      }
      const sub = await fleet.subscription<{ status: { bindingClusters: string[] } }>('nginx-replicated');
      expect(sub.status.bindingClusters.sort()).toEqual(['west', 'east'].map((n) => `${fleet.member(n).cluster.metadata.namespace}/${n}`).sort());
      expect(await manifestsIn('lab')).toBe(0);
      expect(await deployment('lab', 'nginx')).toBeUndefined();
      expect(await fleet.object('lab', 'service', 'nginx-svc', 'default')).toBeUndefined();

      await removeAndWait([dir], [['deployment', 'nginx', 'default'], ['service', 'nginx-svc', 'default']]);
    });

    it("overrides: production clusters get the Globalization's labels; west's Localization makes nginx 5 replicas of the regional image and keeps the labels", async () => {
      const west = fleet.member('west');
      const replication = await fleet.example('replication');
      const overrides = await fleet.example('overrides', { 'clusternet-xxxx': west.cluster.metadata.namespace! });
      await fleet.ok(['apply', '-f', replication, '-f', overrides]);

      const ready = await readyIn('nginx', { west: 5, east: 3 });
      const labels = { 'monitoring.example.com/enabled': 'true', team: 'platform' };
      expect(ready.west!.spec.template.spec.containers.map((c) => c.image)).toEqual(['us-west-registry.example.com/nginx:1.25']);
      expect(ready.east!.spec.template.spec.containers.map((c) => c.image)).toEqual(['nginx:1.25']);
      for (const name of ['west', 'east'] as const) {
        // A MergePatch on a Description applies to every object in it; Globalizations apply before Localizations.
        expect(ready[name]!.metadata.labels).toMatchObject(labels);
        expect((await fleet.object(name, 'service', 'nginx-svc', 'default'))?.metadata.labels).toMatchObject(labels);
      }
      expect(await manifestsIn('lab')).toBe(0);
      expect(await deployment('lab', 'nginx')).toBeUndefined();

      await removeAndWait([overrides, replication], [['deployment', 'nginx', 'default'], ['service', 'nginx-svc', 'default']]);
    });
  });

  it('override order: Globalizations apply before Localizations whatever their priority, a higher-priority Localization wins; a JSONPatch whose path is missing leaves the previous rendering', async () => {
    const [west, east] = [fleet.member('west'), fleet.member('east')];
    const replication = await fleet.example('replication');
    await fleet.ok(['apply', '-f', replication]);
    await readyIn('nginx', { west: 3, east: 3 });

    const labelsPatch = (labels: Record<string, string>) =>
      `      type: MergePatch\n      value: |\n        metadata:\n          labels:\n${Object.entries(labels).map(([k, v]) => `            ${k}: ${v}\n`).join('')}`;
    // ApplyNow: Clusternet's default, ApplyLater, would wait for the next change of the feed.
    const deploymentFeed = '  overridePolicy: ApplyNow\n  feed: {apiVersion: apps/v1, kind: Deployment, name: nginx, namespace: default}\n';
    const order = join(fleet.bed.dir, 'override-order.yaml');
    await writeFile(
      order,
      [
        `apiVersion: apps.clusternet.io/v1alpha1\nkind: Globalization\nmetadata: {name: order-global}\nspec:\n  priority: 1000\n  overridePolicy: ApplyNow\n` +
          `  feed: {apiVersion: apps.clusternet.io/v1alpha1, kind: Description, name: nginx-desc, namespace: default}\n` +
          `  clusterAffinity: {matchLabels: {environment: production}}\n  overrides:\n    - name: labels\n${labelsPatch({ first: 'global', second: 'global' })}`,
        `apiVersion: apps.clusternet.io/v1alpha1\nkind: Localization\nmetadata: {name: order-low, namespace: ${west.cluster.metadata.namespace}}\nspec:\n  priority: 100\n` +
          `${deploymentFeed}  overrides:\n    - name: labels\n${labelsPatch({ first: 'local-low', second: 'local-low' })}`,
        `apiVersion: apps.clusternet.io/v1alpha1\nkind: Localization\nmetadata: {name: order-high, namespace: ${west.cluster.metadata.namespace}}\nspec:\n  priority: 900\n` +
          `${deploymentFeed}  overrides:\n    - name: labels\n${labelsPatch({ second: 'local-high' })}`,
      ].join('---\n'),
    );
    await fleet.ok(['apply', '-f', order]);
    const labelsOf = async (name: Name) => (await deployment(name, 'nginx'))?.metadata.labels ?? {};
    // west: the Globalization (1000) first, then Localizations 100 and 900; east: the Globalization only.
    const westLabels = await fleet.eventually('west relabelled', async () => ((await labelsOf('west'))['second'] === 'local-high' ? labelsOf('west') : undefined));
    expect(westLabels).toMatchObject({ first: 'local-low', second: 'local-high' });
    const eastLabels = await fleet.eventually('east relabelled', async () => ((await labelsOf('east'))['first'] === 'global' ? labelsOf('east') : undefined));
    expect(eastLabels).toMatchObject({ first: 'global', second: 'global' });

    // A Localization for east whose JSONPatch path is not in the object: reported, and nothing of it applies.
    const bad = join(fleet.bed.dir, 'bad-path.yaml');
    await writeFile(
      bad,
      `apiVersion: apps.clusternet.io/v1alpha1\nkind: Localization\nmetadata: {name: bad-path, namespace: ${east.cluster.metadata.namespace}}\nspec:\n  priority: 500\n` +
        `${deploymentFeed}  overrides:\n    - name: labels\n${labelsPatch({ half: 'applied' })}` +
        `    - name: missing-path\n      type: JSONPatch\n      value: |\n        - op: replace\n          path: /spec/template/spec/notThere/x\n          value: 1\n`,
    );
    await fleet.ok(['apply', '-f', bad]);
    const described = await fleet.eventually('the failed override in describe', async () => {
      const text = await fleet.ok(['describe', 'subscription', 'nginx-replicated', '-n', 'default']);
      return text.includes('HAWSER_OVERRIDE_FAILED (cluster') ? text : undefined;
    }, 60_000);
    expect(described).toMatch(/Rendered\s+False\s+HAWSER_OVERRIDE_FAILED/);
    expect(described).toContain('missing-path');
    const loc = JSON.parse(await fleet.ok(['get', 'localization', 'bad-path', '-n', east.cluster.metadata.namespace!, '-o', 'json'])) as {
      status?: { failures?: Array<{ code: string; override?: string; subscription: string }> };
    };
    expect(loc.status?.failures).toEqual([expect.objectContaining({ code: 'HAWSER_OVERRIDE_FAILED', subscription: 'default/nginx-replicated' })]);
    expect(loc.status?.failures?.[0]?.override).toContain('missing-path');
    // east keeps its previous rendering, on the hub and in the child: no half-applied label, the Globalization's labels, 3 replicas.
    const eastManifests = JSON.parse(await fleet.ok(['get', 'manifests', '-n', east.cluster.metadata.namespace!, '-o', 'json'])) as {
      items: Array<{ template: DeploymentJson & { kind: string } }>;
    };
    const rendered = eastManifests.items.find((m) => m.template.kind === 'Deployment')!.template;
    expect(rendered.metadata.labels).toMatchObject({ first: 'global', second: 'global' });
    expect(rendered.metadata.labels?.['half']).toBeUndefined();
    const eastNow = (await deployment('east', 'nginx'))!;
    expect(eastNow.metadata.labels?.['half']).toBeUndefined();
    expect(eastNow.metadata.labels).toMatchObject({ first: 'global', second: 'global' });
    expect(eastNow.spec.replicas).toBe(3);
    expect(await labelsOf('west')).toMatchObject({ first: 'local-low', second: 'local-high' });

    await removeAndWait([bad, order, replication], [['deployment', 'nginx', 'default'], ['service', 'nginx-svc', 'default']]);
  }, 300_000);

  /** A Deployment of pause pods with small requests, and a Subscription dividing it (Static) by cluster name. */
  async function dividedApp(app: string, replicas: number, weights: Partial<Record<Name, number>>, extraSpec = ''): Promise<string> {
    const file = join(fleet.bed.dir, `${app}-${replicas}.yaml`);
    const subscribers = Object.entries(weights)
      .map(([n, w]) => `    - clusterAffinity: {matchLabels: {clusters.clusternet.io/cluster-name: ${n}}}\n      weight: ${w}\n`)
      .join('');
    await writeFile(
      file,
      `apiVersion: apps/v1
kind: Deployment
metadata: {name: ${app}, namespace: default}
spec:
  replicas: ${replicas}
  selector: {matchLabels: {app: ${app}}}
  template:
    metadata: {labels: {app: ${app}}}
    spec:
      containers:
        - {name: app, image: registry.k8s.io/pause:3.10, resources: {requests: {cpu: 10m, memory: 16Mi}}}
---
apiVersion: apps.clusternet.io/v1alpha1
kind: Subscription
metadata: {name: ${app}, namespace: default}
spec:
  schedulingStrategy: Dividing
  dividingScheduling: {type: Static}
${extraSpec}  subscribers:
${subscribers}  feeds:
    - {apiVersion: apps/v1, kind: Deployment, name: ${app}, namespace: default}
`,
    );
    return file;
  }

  it('Static dividing splits replicas by weight over three clusters and conserves the sum; a change to the Deployment re-divides everywhere', async () => {
    // 7 by 1:2:3 is 1.17, 2.33, 3.5: floors 1, 2, 3 and the one left goes to the largest remainder.
    const seven = await dividedApp('web', 7, { west: 1, east: 2, lab: 3 });
    await fleet.ok(['apply', '-f', seven]);
    const first = await readyIn('web', { west: 1, east: 2, lab: 4 });
    expect(Object.values(first).reduce((sum, d) => sum + d.status!.readyReplicas!, 0)).toBe(7);
    const sub = await fleet.subscription<{ status: { replicas: Record<string, number[]> } }>('web');
    expect(Object.values(sub.status.replicas).map((r) => r.reduce((a, n) => a + n, 0)).reduce((a, n) => a + n, 0)).toBe(7);

    // 10 by 1:2:3 is 1.67, 3.33, 5: floors 1, 3, 5 and the one left goes to west.
    const ten = await dividedApp('web', 10, { west: 1, east: 2, lab: 3 });
    expect(await fleet.ok(['apply', '-f', ten])).toContain('deployment.apps/web configured');
    const second = await readyIn('web', { west: 2, east: 3, lab: 5 });
    expect(Object.values(second).reduce((sum, d) => sum + d.status!.readyReplicas!, 0)).toBe(10);

    await removeAndWait([ten], [['deployment', 'web', 'default']]);
  });

  it("toleration: lab's link cut past its lease keeps its share for tolerationSeconds, then the share moves, and comes back when the link returns", async () => {
    const lab = fleet.member('lab');
    // Long enough that a loaded machine still sees the hold (lease expiry, deployer, CLI) before it runs out.
    const tolerationSeconds = 30;
    const file = await dividedApp(
      'tol',
      6,
      { west: 1, east: 1, lab: 1 },
      `  clusterTolerations:\n    - {key: node.clusternet.io/unreachable, operator: Exists, effect: NoSchedule, tolerationSeconds: ${tolerationSeconds}}\n`,
    );
    await fleet.ok(['apply', '-f', file]);
    await readyIn('tol', { west: 2, east: 2, lab: 2 });

    type Row = { cluster: { name: string }; feeds: Array<{ replicas?: number }>; held?: string; message?: string };
    type Placement = { clusters: Row[]; excluded: Array<{ cluster: { name: string }; reason: string }> };
    const placement = async () => (await fleet.subscription<{ status: { placement: Placement } }>('tol')).status.placement;
    const shares = (p: Placement) => Object.fromEntries(p.clusters.map((r) => [r.cluster.name, r.feeds[0]?.replicas]));

    await lab.proxy!.disable();
    const tainted = await fleet.eventually('lab unreachable (lease ran out)', async () => {
      const c = await fleet.hub.cluster('lab');
      return hasUnreachableTaint(c) ? c : undefined;
    }, 60_000);
    const timeAdded = Date.parse(tainted.spec.taints.find((t) => t.key === 'node.clusternet.io/unreachable')!.timeAdded!);
    const deadline = timeAdded + tolerationSeconds * 1000;

    // Held: lab keeps its 2 (tolerated until the deadline), the others keep theirs.
    const held = await fleet.eventually('lab held by its toleration', async () => {
      const p = await placement();
      return p.clusters.find((r) => r.cluster.name === 'lab')?.held === 'TemporarilyTolerated' ? p : undefined;
    }, 60_000);
    expect(shares(held)).toEqual({ west: 2, east: 2, lab: 2 });
    expect(held.clusters.find((r) => r.cluster.name === 'lab')!.message).toContain(`tolerated until ${new Date(deadline).toISOString()}`);
    // Until the deadline, every look (hub placement and both healthy children) finds the shares unchanged.
    const looks: Array<{ doneAt: number; hub: Record<string, number | undefined>; west?: number; east?: number }> = [];
    await fleet.eventually('the toleration deadline', async () => {
      const hub = shares(await placement());
      const [w, e] = [await deployment('west', 'tol'), await deployment('east', 'tol')];
      looks.push({ doneAt: Date.now(), hub, west: w?.spec.replicas, east: e?.spec.replicas });
      return Date.now() >= deadline;
    }, (tolerationSeconds + 30) * 1000);
    const beforeDeadline = looks.filter((l) => l.doneAt < deadline);
    expect(beforeDeadline.length).toBeGreaterThan(0);
    for (const look of beforeDeadline) expect(look).toMatchObject({ hub: { west: 2, east: 2, lab: 2 }, west: 2, east: 2 });

    // Then the toleration runs out: lab's share moves to the healthy clusters, never before the deadline.
    const moved = await readyIn('tol', { west: 3, east: 3 });
    expect(Date.now()).toBeGreaterThanOrEqual(deadline);
    expect(moved.west!.status!.readyReplicas! + moved.east!.status!.readyReplicas!).toBe(6);
    const evicted = await placement();
    expect(shares(evicted)).toEqual({ west: 3, east: 3 });
    expect(evicted.excluded.find((e) => e.cluster.name === 'lab')?.reason).toBe('TolerationExpired');

    // The link returns: the taint goes, lab gets its share back, the others give it up.
    await lab.proxy!.enable();
    await fleet.eventually('lab reachable again', async () => !hasUnreachableTaint(await fleet.hub.cluster('lab')), 60_000);
    await readyIn('tol', { west: 2, east: 2, lab: 2 });
    expect(shares(await placement())).toEqual({ west: 2, east: 2, lab: 2 });

    await removeAndWait([file], [['deployment', 'tol', 'default']]);
  }, 300_000);

  it('after a reconnect, one changed object out of 300 costs about one object on the wire, not all of them', async () => {
    const west = fleet.member('west');
    const relay = west.relay!;
    const count = 300;
    // Each ConfigMap about 8 KiB of random text, so one object stands well above a reconnect's
    // own bytes (TLS, welcome, heartbeats) even after sync compresses it.
    const fillers = Array.from({ length: count }, () => randomBytes(6 * 1024).toString('base64'));
    const configMap = (i: number, value: string) => ({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: `bulk-${String(i).padStart(3, '0')}`, namespace: 'default', labels: { bulk: 'yes' } },
      data: { value, filler: fillers[i]! },
    });
    const docs = Array.from({ length: count }, (_, i) => JSON.stringify(configMap(i, 'v1')));
    const feeds = Array.from({ length: count }, (_, i) => `{apiVersion: v1, kind: ConfigMap, name: bulk-${String(i).padStart(3, '0')}, namespace: default}`);
    const subscription = `apiVersion: apps.clusternet.io/v1alpha1
kind: Subscription
metadata: {name: bulk, namespace: default}
spec:
  subscribers: [{clusterAffinity: {matchLabels: {clusters.clusternet.io/cluster-name: west}}}]
  feeds: [${feeds.join(', ')}]
`;
    const file = join(fleet.bed.dir, 'bulk.yaml');
    await writeFile(file, [...docs, subscription].join('\n---\n'));
    const bulkInWest = async () => (await fleet.kubectl('west', ['get', 'configmaps', '-n', 'default', '-l', 'bulk=yes', '-o', 'name'])).trim().split('\n').filter(Boolean).length;

    // Control: the first sync of all 300 over this link, what resending everything would cost.
    const start = relay.downstream;
    await fleet.ok(['apply', '-f', file]);
    await fleet.eventually('300 ConfigMaps in west', async () => (await bulkInWest()) === count);
    const everything = relay.downstream - start;
    // What one object costs on the wire, as sync sends it (compressed when negotiated).
    const oneObject = everything / count;
    expect(oneObject).toBeGreaterThan(4 * 1024);

    const sessions = () => fleet.hub.metric('hawser_hub_sessions_total', { cluster: 'west' });
    const lastHeartbeat = () => fleet.hub.metric('hawser_cluster_last_heartbeat_timestamp_seconds', { cluster: 'west' });
    /** Cuts the link, runs `whileCut`, restores it, and counts hub -> agent bytes until `done` and a heartbeat of the new session. */
    async function reconnect(whileCut: () => Promise<void>, done: () => Promise<boolean>): Promise<number> {
      const before = await sessions();
      relay.cutLink();
      await whileCut();
      const mark = relay.downstream;
      const restoredAt = Date.now() / 1000;
      relay.restore();
      await fleet.eventually('west reconnected, a heartbeat since, and done', async () =>
        (await sessions()) > before && (await lastHeartbeat()) > restoredAt && (await done()),
      );
      return relay.downstream - mark;
    }

    // A reconnect with nothing changed: its bytes are the reconnect's own.
    const idle = await reconnect(async () => {}, async () => true);

    // A reconnect after one ConfigMap changed while the link was down.
    const changedValue = async () => (await fleet.object('west', 'configmap', 'bulk-007', 'default'))?.data?.['value'];
    const changed = await reconnect(
      async () => {
        const one = join(fleet.bed.dir, 'bulk-007.yaml');
        await writeFile(one, JSON.stringify(configMap(7, 'v2')));
        expect(await fleet.ok(['apply', '-f', one])).toBe('configmap/bulk-007 configured\n');
        // Rendered into west's Manifest on the hub; the agent cannot have it yet.
        const name = manifestName({ namespace: 'default', name: 'bulk' }, 'v1/ConfigMap/default/bulk-007');
        await fleet.eventually("the change in west's Manifest on the hub", async () => {
          const m = JSON.parse(await fleet.ok(['get', 'manifest', name, '-n', west.cluster.metadata.namespace!, '-o', 'json'])) as { template: KubeJson };
          return m.template.data?.['value'] === 'v2';
        });
        expect(await changedValue()).toBe('v1');
      },
      async () => (await changedValue()) === 'v2',
    );
    const extra = changed - idle;
    console.log(`[distribution] sync bytes: all ${count} objects ${everything}, idle reconnect ${idle}, reconnect with one change ${changed}, one object ${oneObject}`);
    expect(extra).toBeGreaterThan(oneObject / 2);
    expect(extra).toBeLessThan(oneObject * 2);
    // What resending everything would cost is far more (the control above).
    expect(changed * 20).toBeLessThan(everything);

    await removeAndWait([file], [['configmap', 'bulk-007', 'default']]);
  }, 600_000);
});
