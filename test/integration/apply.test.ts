import { spawn } from 'node:child_process';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ManagedCluster } from '../../src/api/index.js';
import { adminToken, hawser, hawserBin, type HubProcess, noCliConfig, repoRoot, TestBed, until, viewerToken } from './harness.js';

// apply, get, delete and watch through the real CLI against a real hub, with
// the shared Clusternet examples applied as they are (only the cluster id and
// the cluster namespace the files ask to replace). Bad input is refused with a
// code, and nothing of it is stored.

const examples = resolve(repoRoot, '../shared/examples/clusternet');

describe('apply, get and delete through the CLI', () => {
  let bed: TestBed;
  let hub: HubProcess;
  let cluster: ManagedCluster;
  let dir: string;
  let cli: (args: string[], env?: Record<string, string | undefined>) => ReturnType<typeof hawser>;

  beforeAll(async () => {
    bed = await TestBed.create('apply');
    hub = await bed.hub(['--auto-approve', '--max-object-bytes=1048576']);
    // A registered cluster gives Localizations a namespace; its kube-apiserver is not needed here.
    const kubeconfig = join(bed.dir, 'nowhere.kubeconfig');
    await writeFile(
      kubeconfig,
      'apiVersion: v1\nkind: Config\nclusters: [{name: n, cluster: {server: "https://127.0.0.1:9", insecure-skip-tls-verify: true}}]\n' +
        'users: [{name: u, user: {token: none}}]\ncontexts: [{name: n, context: {cluster: n, user: u}}]\ncurrent-context: n\n',
    );
    const kube = { kubeconfigPath: kubeconfig } as Parameters<TestBed['agent']>[2];
    await bed.agent('edge-1', hub, kube);
    cluster = await until('edge-1 registered', async () => hub.cluster('edge-1'));
    dir = join(bed.dir, 'examples');
    await cp(examples, dir, { recursive: true });
    const sub = join(dir, 'app-demo', 'subscription.yaml');
    await writeFile(sub, (await readFile(sub, 'utf8')).replace('dc91021d-2361-4f6d-a404-7c33b9e01118', cluster.spec.clusterId));
    const loc = join(dir, 'overrides', 'localization.yaml');
    await writeFile(loc, (await readFile(loc, 'utf8')).replace('clusternet-xxxx', cluster.metadata.namespace!));
    cli = (args, env = {}) => hawser([...args, `--hub=${hub.apiUrl}`], env);
  }, 120_000);

  afterAll(async () => {
    await bed?.close();
  });

  async function ok(args: string[]): Promise<string> {
    const r = await cli(args);
    expect(r.stderr, args.join(' ')).toBe('');
    expect(r.code, args.join(' ')).toBe(0);
    return r.stdout;
  }

  async function refused(args: string[], code: string): Promise<string> {
    const r = await cli(args);
    expect(r.code, args.join(' ')).toBe(1);
    expect(r.stderr).toContain(`hawser: ${code}:`);
    return r.stderr;
  }

  async function getJson<T>(args: string[]): Promise<T> {
    return JSON.parse(await ok([...args, '-o', 'json'])) as T;
  }

  it('applies every example unchanged, and applying again changes nothing', async () => {
    const first = await ok(['apply', '-f', join(dir, 'app-demo'), '-f', join(dir, 'replication'), '-f', join(dir, 'overrides')]);
    expect(first.trim().split('\n').sort()).toEqual(
      [
        'deployment.apps/my-nginx created',
        'namespace/foo created',
        'service/my-nginx-svc created',
        'subscription.apps.hawser.io/app-demo created',
        'description.apps.hawser.io/nginx-desc created',
        'subscription.apps.hawser.io/nginx-replicated created',
        'globalization.apps.hawser.io/add-monitoring-labels created',
        'localization.apps.hawser.io/nginx-localization-us-west created',
      ].sort(),
    );
    const again = await ok(['apply', '-f', join(dir, 'app-demo'), '-f', join(dir, 'replication'), '-f', join(dir, 'overrides')]);
    expect(again.trim().split('\n').every((line) => line.endsWith(' unchanged'))).toBe(true);
  });

  it('gets them back as tables and as objects, with Clusternet defaults under hawser group', async () => {
    // The hub's deployer places them: app-demo on edge-1 by its cluster id; edge-1 has no production label.
    const table = await until('the deployer to place app-demo', async () => {
      const t = await ok(['get', 'subs']);
      return /app-demo\s+Replication\s+3\s+1\s+True/.test(t) && /nginx-replicated\s+Replication\s+1\s+0\s+False/.test(t) ? t : undefined;
    });
    expect(table).toMatch(/^NAME\s+STRATEGY\s+FEEDS\s+CLUSTERS\s+SCHEDULED\s+APPLIED\s+HEALTHY\s+AGE/);
    const sub = await getJson<{ apiVersion: string; spec: { schedulerName: string; schedulingStrategy: string }; metadata: { resourceVersion: string; uid: string } }>([
      'get',
      'subscription',
      'app-demo',
      '-n',
      'default',
    ]);
    expect(sub.apiVersion).toBe('apps.hawser.io/v1alpha1');
    expect(sub.spec).toMatchObject({ schedulerName: 'default', schedulingStrategy: 'Replication' });
    expect(sub.metadata.resourceVersion).toMatch(/^\d+$/);
    const glob = await getJson<{ metadata: { namespace?: string }; spec: { priority: number; overridePolicy: string } }>(['get', 'glob', 'add-monitoring-labels']);
    expect(glob.spec).toMatchObject({ priority: 50, overridePolicy: 'ApplyNow' });
    expect(glob.metadata.namespace).toBeUndefined();
    const locs = await ok(['get', 'localizations', '-n', cluster.metadata.namespace!]);
    expect(locs).toMatch(/nginx-localization-us-west\s+100\s+ApplyNow\s+Deployment\/default\/nginx\s+2/);
    const all = await ok(['get', 'loc', '-A']);
    expect(all).toMatch(new RegExp(`^NAMESPACE\\s+NAME`));
    expect(all).toContain(cluster.metadata.namespace!);
    expect(await ok(['get', 'desc', 'nginx-desc', '-o', 'yaml'])).toContain('deployer: Generic');
    expect(await ok(['get', 'bases'])).toContain('No bases found in namespace default.');
  });

  it('describes a subscription: placement, conditions, and a feed not on the hub yet reported missing', async () => {
    const placed = await until('app-demo placed', async () => {
      const text = await ok(['describe', 'subscription', 'app-demo', '-n', 'default']);
      return /Scheduled\s+True/.test(text) ? text : undefined;
    });
    expect(placed).toMatch(/^Name:\s+app-demo$/m);
    expect(placed, placed).toMatch(new RegExp(`^\\s+edge-1\\s+${cluster.metadata.namespace!}\\s+3\\s`, 'm'));
    // This agent's kubeconfig points nowhere: its apply errors come back to the subscription's status.
    const failed = await until('the agent to report its apply errors', async () => {
      const text = await ok(['describe', 'subscription', 'app-demo', '-n', 'default']);
      return /Applied\s+False\s+ApplyFailed/.test(text) ? text : undefined;
    });
    expect(failed).toMatch(/HAWSER_UNAVAILABLE \(cluster edge-1, (Namespace\/foo|Service\/foo\/my-nginx-svc|Deployment\/foo\/my-nginx)\)/);
    expect(failed).toMatch(new RegExp(`^\\s+edge-1\\s+${cluster.metadata.namespace!}\\s+3\\s+0/3\\s`, 'm'));
    expect(await ok(['get', 'subs'])).toMatch(/app-demo\s+Replication\s+3\s+1\s+True\s+False \(ApplyFailed\)\s+Unknown \(ApplyFailed\)/);
    const unplaced = await until('nginx-replicated reconciled', async () => {
      const text = await ok(['describe', 'subs', 'nginx-replicated']);
      return /Scheduled\s+False/.test(text) ? text : undefined;
    });
    expect(unplaced).toMatch(/Placement:\n {2}<none>/);

    const sub = join(bed.dir, 'missing-feed.yaml');
    await writeFile(
      sub,
      'apiVersion: apps.clusternet.io/v1alpha1\nkind: Subscription\nmetadata: {name: waits-for-feed, namespace: default}\n' +
        `spec:\n  subscribers: [{clusterAffinity: {matchLabels: {clusters.clusternet.io/cluster-id: ${cluster.spec.clusterId}}}}]\n` +
        '  feeds: [{apiVersion: v1, kind: ConfigMap, name: not-yet, namespace: default}]\n',
    );
    await ok(['apply', '-f', sub]);
    const missing = await until('the missing feed reported', async () => {
      const text = await ok(['describe', 'subscription', 'waits-for-feed']);
      return text.includes('missing feed: v1 ConfigMap default/not-yet') ? text : undefined;
    });
    expect(missing).toContain('(missing: not on the hub yet');
    const describeOther = await cli(['describe', 'localization', 'x']);
    expect(describeOther.code).toBe(2);
    expect(describeOther.stderr).toContain('describe supports subscriptions');
    await ok(['delete', 'subscription', 'waits-for-feed', '-n', 'default']);
  });

  it('lists, reads and refuses the native objects fed by name (templates on the hub)', async () => {
    const feeds = await ok(['get', 'feeds']);
    expect(feeds).toMatch(/^NAMESPACE\s+NAME\s+APIVERSION\s+KIND\s+AGE/);
    expect(feeds).toMatch(/foo\s+my-nginx\s+apps\/v1\s+Deployment/);
    expect(feeds).toMatch(/\s+foo\s+v1\s+Namespace/);
    const one = await hub.api('GET', '/api/v1/feeds/my-nginx?apiVersion=apps/v1&kind=Deployment&namespace=foo', viewerToken);
    expect(one.status).toBe(200);
    expect(((await one.json()) as { spec: { replicas: number } }).spec.replicas).toBe(2);
    const typo = await hub.api('GET', '/api/v1/feeds/my-nginx?apiVersion=apps/v1&kind=Service&namespace=foo', viewerToken);
    expect(typo.status).toBe(422);
    expect(((await typo.json()) as { code: string }).code).toBe('HAWSER_UNKNOWN_KIND');
    expect((await hub.api('DELETE', '/api/v1/feeds/my-nginx?apiVersion=apps/v1&kind=Deployment&namespace=foo', viewerToken)).status).toBe(403);
    expect((await hub.api('DELETE', '/api/v1/feeds/none?apiVersion=v1&kind=ConfigMap&namespace=foo')).status).toBe(404);
  });

  it('has help, and refuses a missing -f as a usage error', async () => {
    const help = await cli(['apply', '--help']);
    expect(help.stdout).toMatch(/Usage: hawser apply -f FILE\|DIR\|-/);
    expect((await cli(['apply'])).code).toBe(2);
  });

  it('lets a viewer read but not apply', async () => {
    expect((await cli(['get', 'subs'], { HAWSER_TOKEN: viewerToken })).code).toBe(0);
    const r = await cli(['apply', '-f', join(dir, 'replication')], { HAWSER_TOKEN: viewerToken });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('HAWSER_FORBIDDEN');
  });

  describe('bad input: a clear coded error, and nothing stored', () => {
    let bad: string;
    const newSub = (name: string, feeds: string) => `apiVersion: apps.clusternet.io/v1alpha1
kind: Subscription
metadata:
  name: ${name}
  namespace: default
spec:
  subscribers:
    - clusterAffinity:
        matchLabels:
          env: prod
  feeds:
${feeds}
`;
    const goodFeeds = '    - apiVersion: v1\n      kind: Namespace\n      name: foo\n';

    beforeAll(async () => {
      bad = join(bed.dir, 'bad');
      await mkdir(bad, { recursive: true });
    });

    async function absent(name: string): Promise<void> {
      await refused(['get', 'subs', name], 'HAWSER_NOT_FOUND');
    }

    it('invalid YAML (in a directory beside a valid file)', async () => {
      const d = join(bad, 'yaml');
      await mkdir(d);
      await writeFile(join(d, 'a.yaml'), newSub('from-bad-dir', goodFeeds));
      await writeFile(join(d, 'b.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n');
      const stderr = await refused(['apply', '-f', d], 'HAWSER_INVALID_YAML');
      expect(stderr).toContain('b.yaml');
      await absent('from-bad-dir');
    });

    it('an unknown kind of a known group', async () => {
      const f = join(bad, 'kind.yaml');
      await writeFile(f, `${newSub('with-unknown-kind', goodFeeds)}---\napiVersion: apps.clusternet.io/v1alpha1\nkind: Subscriptoin\nmetadata: {name: x, namespace: default}\n`);
      await refused(['apply', '-f', f], 'HAWSER_UNKNOWN_KIND');
      await absent('with-unknown-kind');
    });

    it('a feed kind its group does not have: "apps/v1 has no kind Service"', async () => {
      const f = join(bad, 'feed.yaml');
      await writeFile(f, newSub('with-bad-feed', `${goodFeeds}    - apiVersion: apps/v1\n      kind: Service\n      name: my-nginx-svc\n      namespace: foo\n`));
      const stderr = await refused(['apply', '-f', f], 'HAWSER_UNKNOWN_KIND');
      expect(stderr).toContain('apps/v1 has no kind Service');
      await absent('with-bad-feed');
      expect(await hub.metric('hawser_hub_rejected_total', { code: 'HAWSER_UNKNOWN_KIND' })).toBeGreaterThanOrEqual(1);
    });

    it('a subscription naming 10,000 feeds', async () => {
      const feeds = Array.from({ length: 10_000 }, (_, i) => `    - {apiVersion: v1, kind: ConfigMap, name: c${i}, namespace: default}\n`).join('');
      const f = join(bad, 'feeds.yaml');
      await writeFile(f, newSub('too-many-feeds', feeds));
      const stderr = await refused(['apply', '-f', f], 'HAWSER_TOO_MANY_FEEDS');
      expect(stderr).toContain('1000');
      await absent('too-many-feeds');
    });

    it("an object over the hub's object limit", async () => {
      const f = join(bad, 'big.yaml');
      await writeFile(f, `${newSub('beside-big', goodFeeds)}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: big, namespace: default}\ndata:\n  blob: ${'x'.repeat(1_100_000)}\n`);
      await refused(['apply', '-f', f], 'HAWSER_OBJECT_TOO_LARGE');
      await absent('beside-big');
    });

    it('a request body over the hub bound (413, not a reset connection)', async () => {
      const res = await fetch(`${hub.apiUrl}/api/v1/apply`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/yaml' },
        body: `# ${'x'.repeat(17 * 1024 * 1024)}\n`,
      });
      expect(res.status).toBe(413);
      expect(((await res.json()) as { code: string }).code).toBe('HAWSER_REQUEST_TOO_LARGE');
    });

    it("a Localization in a namespace that is no cluster's", async () => {
      const f = join(bad, 'loc.yaml');
      const text = (await readFile(join(examples, 'overrides', 'localization.yaml'), 'utf8')).replace('clusternet-xxxx', 'no-such-cluster');
      await writeFile(f, text);
      await refused(['apply', '-f', f], 'HAWSER_UNKNOWN_CLUSTER_NAMESPACE');
      await refused(['get', 'loc', 'nginx-localization-us-west', '-n', 'no-such-cluster'], 'HAWSER_NOT_FOUND');
    });

    it('a change beside an invalid document leaves what was applied before', async () => {
      const f = join(bad, 'change.yaml');
      const changed = (await readFile(join(examples, 'replication', 'subscription.yaml'), 'utf8')).replace('schedulingStrategy: Replication', 'schedulingStrategy: Dividing');
      await writeFile(f, `${changed}---\n${newSub('broken', '    - {apiVersion: v1, kind: Namespace}\n')}`);
      const stderr = await refused(['apply', '-f', f], 'HAWSER_INVALID_OBJECT');
      expect(stderr).toContain('spec.feeds[0].name: required');
      const sub = await getJson<{ spec: { schedulingStrategy: string } }>(['get', 'subs', 'nginx-replicated']);
      expect(sub.spec.schedulingStrategy).toBe('Replication');
    });
  });

  it('applies from stdin with -f -', async () => {
    const child = spawn(process.execPath, [hawserBin, 'apply', '-f', '-', `--hub=${hub.apiUrl}`], {
      env: { ...process.env, HAWSER_CONFIG: noCliConfig, HAWSER_TOKEN: adminToken },
    });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stdin.end('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-stdin}\ndata: {a: b}\n');
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(0);
    expect(stdout).toBe('configmap/from-stdin created\n');
  });

  it('watches changes from a resourceVersion as JSON lines', async () => {
    const before = await getJson<{ metadata: { resourceVersion: string } }>(['get', 'subs', 'nginx-replicated']);
    const abort = new AbortController();
    const res = await fetch(`${hub.apiUrl}/api/v1/resources/subscriptions?watch=true&namespace=default&resourceVersion=${before.metadata.resourceVersion}`, {
      headers: { authorization: `Bearer ${adminToken}` },
      signal: abort.signal,
    });
    expect(res.status).toBe(200);
    const f = join(bed.dir, 'watched.yaml');
    const text = await readFile(join(examples, 'replication', 'subscription.yaml'), 'utf8');
    await writeFile(f, text.replace('schedulingStrategy: Replication', 'schedulingStrategy: Replication\n  priority: 7'));
    await ok(['apply', '-f', f]);
    const reader = res.body!.getReader();
    type Event = { type: string; object: { metadata: { name: string }; spec: { priority?: number } } };
    // Events replay from that version in order; other writers (the deployer's status, other tests) come between.
    let buffered = '';
    let event: Event | undefined;
    while (!event) {
      const { value, done } = await reader.read();
      expect(done).toBe(false);
      buffered += Buffer.from(value!).toString('utf8');
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      event = lines.map((l) => JSON.parse(l) as Event).find((e) => e.object.metadata.name === 'nginx-replicated' && e.object.spec.priority === 7);
    }
    expect(event.type).toBe('MODIFIED');
    expect(event.object.metadata.name).toBe('nginx-replicated');
    expect(event.object.spec.priority).toBe(7);
    abort.abort();
  });

  it('deletes by file and by kind and name', async () => {
    expect(await ok(['delete', '-f', join(dir, 'replication', 'subscription.yaml')])).toBe('subscription.apps.hawser.io/nginx-replicated deleted\n');
    await refused(['get', 'subs', 'nginx-replicated'], 'HAWSER_NOT_FOUND');
    expect(await ok(['delete', 'desc', 'nginx-desc', '-n', 'default'])).toBe('description.apps.hawser.io/nginx-desc deleted\n');
    expect(await ok(['delete', 'globalization', 'add-monitoring-labels'])).toBe('globalization.apps.hawser.io/add-monitoring-labels deleted\n');
    await refused(['delete', 'desc', 'nginx-desc'], 'HAWSER_NOT_FOUND');
    // The native objects fed by name go the same way; what is already gone is reported, the rest deleted.
    const out = await cli(['delete', '-f', join(dir, 'app-demo')]);
    expect(out.stdout).toContain('deployment.apps/my-nginx deleted');
    expect(out.stdout).toContain('namespace/foo deleted');
    const reapplied = await ok(['apply', '-f', join(dir, 'app-demo', 'namespace.yaml')]);
    expect(reapplied).toBe('namespace/foo created\n');
  });
});
