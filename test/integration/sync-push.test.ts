import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSyncState } from '../../src/agent/sync-state.js';
import { OfflineCache } from '../../src/cache/index.js';
import { httpsRequest, type KubeCluster, type ManagedProcess } from '../../src/testkit/index.js';
import { hawser, type HubProcess, TestBed, until } from './harness.js';

// Real hub and agent processes beside real kube-apiservers:
// - Push (AppPusher on): the hub pushes each apply, the object lands in the
//   child and the agent's cache holds nothing of the desired set;
// - a held prune is released by `hawser sync confirm-prune` naming the hold,
//   and a stale confirmation is refused;
// - a cache altered behind the agent's back is found by the hello's digest:
//   the hub sends a snapshot and the child converges to the hub's state.

const desiredPrefixes = ['sync/obj/', 'sync/stage/', 'sync/kept/'];

interface SyncView {
  syncMode?: string;
  pruneHeld?: { reason: string; incarnation: string; revision: number; command: string };
}

describe('sync modes, confirm-prune and the hello digest on real clusters', () => {
  let bed: TestBed;
  let pushKube: KubeCluster;
  let pullKube: KubeCluster;
  let hub: HubProcess;
  let pushAgent: ManagedProcess;
  let pullAgent: ManagedProcess;

  beforeAll(async () => {
    bed = await TestBed.create('sync-push');
    [pushKube, pullKube] = await Promise.all([bed.kube('edge-push'), bed.kube('edge-pull')]);
    hub = await bed.hub(['--auto-approve']);
    const fast = ['--reconnect-period=500ms', '--max-reconnect-period=2s'];
    pushAgent = await bed.agent('edge-push', hub, pushKube, [...fast, '--cluster-sync-mode=Push', '--feature-gates=AppPusher=true']);
    // Dual without AppPusher runs as Pull (Clusternet's rule).
    pullAgent = await bed.agent('edge-pull', hub, pullKube, [...fast, '--cluster-sync-mode=Dual']);
  });

  afterAll(() => bed?.close());

  const hubFlag = () => `--hub=${hub.apiUrl}`;
  const configMap = (kube: KubeCluster, name: string) => httpsRequest(`${kube.url}/api/v1/namespaces/default/configmaps/${name}`, { ca: kube.caPem, token: kube.token });
  const dataOf = async (kube: KubeCluster, name: string) => {
    const r = await configMap(kube, name);
    return r.status === 200 ? (JSON.parse(r.body) as { data: Record<string, string> }).data : undefined;
  };
  const syncOf = async (name: string) => ((await hub.cluster(name))?.status as { sync?: SyncView } | undefined)?.sync;

  /** A Subscription `sub` feeding ConfigMaps `names` (data greeting=`greeting`) to the cluster with `clusterId`. */
  async function subscribe(sub: string, clusterId: string, names: string[], greeting = 'hello'): Promise<void> {
    const docs = [
      ...names.map((n) => `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ${n}, namespace: default}\ndata: {greeting: ${greeting}}`),
      [
        `apiVersion: apps.clusternet.io/v1alpha1\nkind: Subscription\nmetadata: {name: ${sub}, namespace: default}\nspec:`,
        `  subscribers: [{clusterAffinity: {matchLabels: {clusters.clusternet.io/cluster-id: ${clusterId}}}}]`,
        `  feeds: [${names.map((n) => `{apiVersion: v1, kind: ConfigMap, name: ${n}, namespace: default}`).join(', ')}]`,
      ].join('\n'),
    ];
    const file = join(bed.dir, `${sub}.yaml`);
    await writeFile(file, docs.join('\n---\n'));
    const r = await hawser(['apply', '-f', file, hubFlag()]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  }

  /** Snapshots the hub sent a cluster, by reason. */
  function snapshotsOf(metrics: string, cluster: string): Record<string, number> {
    const out: Record<string, number> = {};
    for (const m of metrics.matchAll(/^hawser_hub_sync_snapshots_total\{([^}]*)\} (\d+)/gm)) {
      if (!m[1]!.includes(`cluster="${cluster}"`)) continue;
      out[/reason="([^"]*)"/.exec(m[1]!)![1]!] = Number(m[2]);
    }
    return out;
  }

  /** The agent's cache keys of the desired set (the agent must be stopped: LevelDB is single-process). */
  async function desiredKeys(name: string): Promise<string[]> {
    const cache = await OfflineCache.open({ dir: join(bed.dir, 'agents', name, 'db') });
    try {
      const keys: string[] = [];
      for (const p of desiredPrefixes) keys.push(...(await cache.keys({ gte: p, lt: `${p}\uffff` })));
      return keys;
    } finally {
      await cache.close();
    }
  }

  it('Push: the hub pushes the apply, the object is in the child, status says Push, and the cache holds no desired state', async () => {
    const cluster = await until('edge-push registered', () => hub.cluster('edge-push'));
    await subscribe('pushed', cluster.spec.clusterId, ['pushed-cm', 'pushed-gone']);
    expect(await until('the pushed ConfigMap in the child', () => dataOf(pushKube, 'pushed-cm'))).toEqual({ greeting: 'hello' });
    // The push result comes back: Applied and Healthy for this cluster.
    await until('the subscription Applied', async () => {
      const r = await hawser(['get', 'subs', hubFlag()]);
      return /^pushed\s+Replication\s+2\s+1\s+True\s+True\s+True\s/m.test(r.stdout) ? r.stdout : undefined;
    });
    expect((await until('mode recorded', async () => (await syncOf('edge-push'))?.syncMode))).toBe('Push');
    const table = await hawser(['get', 'clusters', hubFlag()]);
    expect(table.stdout).toMatch(/^edge-push\s+\S+\s+Push\s/m);
    expect(table.stdout).toMatch(/^edge-pull\s+\S+\s+Pull \(Dual asked\)\s/m);

    // A change is pushed too, and a feed that left the subscription is deleted by name (the agent holds no set to prune against).
    expect(await dataOf(pushKube, 'pushed-gone')).toEqual({ greeting: 'hello' });
    await subscribe('pushed', cluster.spec.clusterId, ['pushed-cm'], 'again');
    await until('the change pushed', async () => (await dataOf(pushKube, 'pushed-cm'))?.greeting === 'again');
    await until('the dropped feed deleted', async () => (await configMap(pushKube, 'pushed-gone')).status === 404);

    await pushAgent.stop();
    expect(await desiredKeys('edge-push')).toEqual([]);
    // A change while the agent is away is pushed after it reconnects, from the hub's own record: no snapshot.
    await subscribe('pushed', cluster.spec.clusterId, ['pushed-cm'], 'while-away');
    await pushAgent.restart();
    await until('pushed after the reconnect', async () => (await dataOf(pushKube, 'pushed-cm'))?.greeting === 'while-away');
    expect(snapshotsOf(await hub.metrics(), 'edge-push')).toEqual({ 'first-sync': 1 });
  });

  it('Pull caches its desired set (the Push check above can fail)', async () => {
    const cluster = await until('edge-pull registered', () => hub.cluster('edge-pull'));
    await subscribe('pulled', cluster.spec.clusterId, ['keep-cm', 'drop-cm']);
    await until('both ConfigMaps in the child', async () => (await dataOf(pullKube, 'keep-cm')) && (await dataOf(pullKube, 'drop-cm')));
    await until('applied reported', async () => (await hawser(['get', 'subs', hubFlag()])).stdout.match(/^pulled\s+Replication\s+2\s+1\s+True\s+True\s+True\s/m));
    await pullAgent.stop();
    expect((await desiredKeys('edge-pull')).filter((k) => k.startsWith('sync/obj/'))).toHaveLength(2);
    await pullAgent.restart();
    await until('edge-pull back', async () => (await syncOf('edge-pull'))?.syncMode === 'Pull');
  });

  it('a held prune shows with its command; a stale confirm-prune is refused and deletes nothing; the named one releases it', async () => {
    const cluster = (await hub.cluster('edge-pull'))!;
    // The agent followed another hub incarnation (as after the hub was replaced); meanwhile drop-cm left the subscription.
    await pullAgent.stop();
    const cache = await OfflineCache.open({ dir: join(bed.dir, 'agents', 'edge-pull', 'db') });
    await writeSyncState(cache, { hubIncarnation: 'an-older-hub', lastAckedRevision: 1 });
    await cache.close();
    await subscribe('pulled', cluster.spec.clusterId, ['keep-cm']);
    await pullAgent.restart();

    const held = await until('the hold reported', async () => (await syncOf('edge-pull'))?.pruneHeld);
    expect(held.command).toBe(`hawser sync confirm-prune edge-pull --incarnation ${held.incarnation} --revision ${held.revision}`);
    const table = await hawser(['get', 'clusters', hubFlag()]);
    expect(table.stdout).toContain(`release with: ${held.command}`);
    const described = await hawser(['describe', 'subscription', 'pulled', hubFlag()]);
    expect(described.stdout).toContain(`release with: ${held.command}`);
    // Kept, not deleted.
    expect(await dataOf(pullKube, 'drop-cm')).toEqual({ greeting: 'hello' });

    const stale = await hawser(['sync', 'confirm-prune', 'edge-pull', `--incarnation=${held.incarnation}`, `--revision=${held.revision + 1}`, hubFlag()]);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toContain('HAWSER_PRUNE_CONFIRM_STALE');
    expect(stale.stderr).toContain(held.command);
    // A viewer may not confirm.
    const viewer = await hawser(['sync', 'confirm-prune', 'edge-pull', `--incarnation=${held.incarnation}`, `--revision=${held.revision}`, hubFlag()], {
      HAWSER_TOKEN: 'hwo_harness-viewer-0123456789abcdef',
    });
    expect(viewer.stderr).toContain('HAWSER_FORBIDDEN');
    expect(await dataOf(pullKube, 'drop-cm')).toEqual({ greeting: 'hello' });
    expect((await syncOf('edge-pull'))?.pruneHeld).toEqual(held);

    const ok = await hawser(['sync', 'confirm-prune', 'edge-pull', `--incarnation=${held.incarnation}`, `--revision=${held.revision}`, hubFlag()]);
    expect(ok.stderr).toBe('');
    expect(ok.stdout).toContain('released');
    await until('drop-cm pruned', async () => (await configMap(pullKube, 'drop-cm')).status === 404);
    expect(await dataOf(pullKube, 'keep-cm')).toEqual({ greeting: 'hello' });
    await until('no hold shown', async () => (await syncOf('edge-pull'))?.pruneHeld === undefined);
    // Audited, with the admin who confirmed.
    expect(hub.proc.lines().some((l) => l.includes('"action":"confirm-prune"') && l.includes('"outcome":"ok"'))).toBe(true);
  });

  it('a cache altered behind the agent: the hello digest differs, the hub sends a snapshot (digest-mismatch), the child converges', async () => {
    const before = await hub.metric('hawser_hub_sync_snapshots_total', { cluster: 'edge-pull', reason: 'digest-mismatch' });
    await pullAgent.stop();
    const cache = await OfflineCache.open({ dir: join(bed.dir, 'agents', 'edge-pull', 'db') });
    const entries = await cache.entries<{ object: { data: Record<string, string> } }>('sync/obj/');
    const [key, stored] = entries.find(([k]) => k.endsWith('/keep-cm'))!;
    await cache.put(key, { ...stored, object: { ...stored.object, data: { greeting: 'tampered' } } });
    await cache.close();
    await pullAgent.restart();
    await until('the digest-mismatch snapshot', async () => (await hub.metric('hawser_hub_sync_snapshots_total', { cluster: 'edge-pull', reason: 'digest-mismatch' })) === before + 1);
    await until('the child converged to the hub', async () => (await dataOf(pullKube, 'keep-cm'))?.greeting === 'hello');
    await pullAgent.stop();
    const after = await OfflineCache.open({ dir: join(bed.dir, 'agents', 'edge-pull', 'db') });
    const kept = (await after.entries<{ object: { data: Record<string, string> } }>('sync/obj/')).find(([k]) => k.endsWith('/keep-cm'))!;
    await after.close();
    expect(kept[1].object.data).toEqual({ greeting: 'hello' });
  });
});
