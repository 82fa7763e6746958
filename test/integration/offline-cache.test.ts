import { randomBytes } from 'node:crypto';
import { readdir, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, httpsRequest, type KubeCluster, type ManagedProcess } from '../../src/testkit/index.js';
import { hawser, type HubProcess, jsonLines, sampleValue, startAgentProcess, TestBed, until } from './harness.js';

// §5/§7 "Corrupt cache: detected, rebuilt, converges", against a real hub, a
// real agent process and a real kube-apiserver: three ConfigMaps synced; the
// agent and hub stopped; one object's bytes flipped in the LevelDB files and
// the write-ahead log truncated; the agent started with the hub down
// reconciles what checks out (without pruning the object whose record went
// bad), logs and counts the quarantine; the hub back, the agent asks for a
// snapshot and converges. And --cache-max-age: a desired state the hub has
// not confirmed for longer is reported stale (agent metric, `hawser get
// clusters`), and nothing is removed for it.

describe('offline cache: corrupt, stale (real hub, agent, kube-apiserver)', () => {
  let bed: TestBed;
  let kube: KubeCluster;
  let hub: HubProcess;
  let agent: ManagedProcess;
  let metricsPort: number;
  // Letters no key, checksum (hex) or JSON of the cache holds, so LevelDB's snappy keeps each
  // marker literal (a 4-byte match elsewhere in the block would become a back-reference).
  const letters = 'GHIJKLMNOPQRSTUVWXYZ';
  const markers = Object.fromEntries(['a', 'b', 'c'].map((n) => [n, [...randomBytes(24)].map((x) => letters[x % letters.length]).join('')]));
  const cacheDir = () => join(bed.dir, 'agents', 'edge-oc');
  const dbDir = () => join(cacheDir(), 'db');

  beforeAll(async () => {
    bed = await TestBed.create('offline-cache');
    kube = await bed.kube('edge-oc');
    hub = await bed.hub(['--auto-approve']);
    metricsPort = await freePort({ owner: 'agent metrics', tracker: bed.tracker });
    agent = await bed.agent('edge-oc', hub, kube, [
      '--reconnect-period=300ms',
      '--max-reconnect-period=1s',
      '--apply-interval=1s',
      `--metrics-address=127.0.0.1:${metricsPort}`,
      '--cache-cleanup-interval=300ms',
      '--cache-max-age=3s',
    ]);
  }, 180_000);

  afterAll(() => bed?.close());

  const cmPath = (n: string) => `/api/v1/namespaces/default/configmaps/cm-${n}`;
  const kubeGet = (n: string) => httpsRequest(`${kube.url}${cmPath(n)}`, { ca: kube.caPem, token: kube.token });
  const kubeDelete = async (n: string) => expect((await httpsRequest(`${kube.url}${cmPath(n)}`, { ca: kube.caPem, token: kube.token, method: 'DELETE' })).status).toBe(200);
  const agentMetric = async (name: string, labels: Record<string, string> = {}) => {
    const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    return sampleValue(await res.text(), name, labels);
  };
  const clustersText = async () => (await hawser(['get', 'clusters', `--hub=${hub.apiUrl}`])).stdout;

  it('corrupt cache: detected and quarantined, what checks out reconciled with the hub down (nothing pruned), refetched and converged with the hub up', { timeout: 240_000 }, async () => {
    const cluster = await until('edge-oc registered', () => hub.cluster('edge-oc'));
    const file = join(bed.dir, 'app.yaml');
    await writeFile(
      file,
      [
        ...['a', 'b', 'c'].map((n) => `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-${n}, namespace: default}\ndata: {marker: m${markers[n]}}`),
        [
          'apiVersion: apps.clusternet.io/v1alpha1\nkind: Subscription\nmetadata: {name: app, namespace: default}\nspec:',
          `  subscribers: [{clusterAffinity: {matchLabels: {clusters.clusternet.io/cluster-id: ${cluster.spec.clusterId}}}}]`,
          '  feeds:',
          ...['a', 'b', 'c'].map((n) => `  - {apiVersion: v1, kind: ConfigMap, name: cm-${n}, namespace: default}`),
        ].join('\n'),
      ].join('\n---\n'),
    );
    const applied = await hawser(['apply', '-f', file, `--hub=${hub.apiUrl}`]);
    expect(applied.stderr).toBe('');
    for (const n of ['a', 'b', 'c']) await until(`cm-${n} in the child`, async () => (await kubeGet(n)).status === 200);

    // Size and limit reported: as a metric, and in the cluster's status through the hub.
    await until('cache size as a metric', async () => (await agentMetric('hawser_agent_cache_size_bytes')) > 0);
    expect(await agentMetric('hawser_agent_cache_size_limit_bytes')).toBe(1024 * 1024 * 1024);
    const reported = await until('cache size in the cluster status', async () => {
      const r = await hawser(['get', 'clusters', 'edge-oc', '-o', 'json', `--hub=${hub.apiUrl}`]);
      const c = JSON.parse(r.stdout) as { items?: Array<{ status: { sync?: { offlineCache?: { sizeBytes: number; limitBytes: number } } } }>; status?: { sync?: { offlineCache?: { sizeBytes: number; limitBytes: number } } } };
      const cache = (c.items?.[0] ?? c).status?.sync?.offlineCache;
      return cache && cache.sizeBytes > 0 ? cache : undefined;
    });
    expect(reported.limitBytes).toBe(1024 * 1024 * 1024);

    // A restart with the hub up turns the write-ahead log into a table file: both kinds of file are on disk.
    await agent.stop();
    await agent.restart();
    await until('agent back', async () => (await agentMetric('hawser_agent_cache_size_bytes')) > 0);
    await agent.stop();
    await hub.proc.stop();

    // Flip one character inside cm-b's marker wherever it is stored; cut the tail off each write-ahead log.
    let flipped = 0;
    for (const f of await readdir(dbDir())) {
      const path = join(dbDir(), f);
      const bytes = await readFile(path);
      for (let at = bytes.indexOf(markers['b']!); at >= 0; at = bytes.indexOf(markers['b']!, at + 1)) {
        bytes[at + 5] = bytes[at + 5] === 0x47 ? 0x48 : 0x47;
        flipped++;
      }
      await writeFile(path, bytes);
      if (f.endsWith('.log') && bytes.length > 16) await truncate(path, bytes.length - 3);
    }
    expect(flipped).toBeGreaterThan(0);

    // Hub down. Someone deletes cm-a by hand; cm-b stays in the cluster.
    await kubeDelete('a');
    await agent.restart();
    await until('cm-a restored from what checks out, hub down', async () => (await kubeGet('a')).status === 200, 60_000);
    // The pass that restored cm-a would have pruned cm-b if it trusted the set: cm-b is still there.
    expect((await kubeGet('b')).status).toBe(200);
    expect((await kubeGet('c')).status).toBe(200);
    const quarantined = (await agentMetric('hawser_agent_cache_quarantines_total', { what: 'record' })) + (await agentMetric('hawser_agent_cache_quarantines_total', { what: 'database' }));
    expect(quarantined).toBeGreaterThan(0);
    // One record (cm-b's), one log line naming it and the file it went to.
    expect(await agentMetric('hawser_agent_cache_quarantines_total', { what: 'record' })).toBe(1);
    const corruptLines = jsonLines(agent).filter((l) => l['code'] === 'HAWSER_CACHE_CORRUPT');
    expect(corruptLines).toHaveLength(1);
    expect(JSON.stringify(corruptLines[0]!['keys'])).toContain('cm-b');
    // Moved aside, not deleted: the damaged bytes are on disk for an operator.
    const aside = join(cacheDir(), (corruptLines[0]!['quarantinedTo'] as string).split('/').pop()!);
    expect(await readFile(aside, 'utf8')).toContain('cm-b');
    // Its bytes count in the disk use the agent reports.
    await until('quarantine bytes reported', async () => (await agentMetric('hawser_agent_cache_quarantine_bytes')) > 0, 30_000);
    expect(await agentMetric('hawser_agent_cache_size_bytes')).toBeGreaterThan(await agentMetric('hawser_agent_cache_quarantine_bytes'));

    // Still hub down: past --cache-max-age the set is reported stale, and still reconciled.
    await until('stale as a metric', async () => (await agentMetric('hawser_agent_cache_stale')) === 1, 30_000);
    expect(jsonLines(agent).some((l) => l['code'] === 'HAWSER_CACHE_STALE')).toBe(true);
    await kubeDelete('c');
    await until('cm-c restored while stale', async () => (await kubeGet('c')).status === 200, 60_000);

    // cm-b's record is gone: delete it in the cluster too; the hub back brings it.
    await kubeDelete('b');
    await hub.proc.restart();
    await until('cm-b refetched from the hub and applied', async () => (await kubeGet('b')).status === 200, 90_000);
    const b = JSON.parse((await kubeGet('b')).body) as { data: Record<string, string> };
    expect(b.data).toEqual({ marker: `m${markers['b']}` });
    expect(await hub.metric('hawser_agent_cache_quarantines_total', { cluster: 'edge-oc' })).toBeGreaterThan(0);
    expect(await hub.metric('hawser_hub_sync_snapshots_total', { cluster: 'edge-oc', reason: 'first-sync' })).toBeGreaterThan(0);
    await until('fresh again', async () => (await agentMetric('hawser_agent_cache_stale')) === 0, 30_000);
    // Trusted again after the snapshot: get clusters says nothing of the cache.
    await until('no longer untrusted in get clusters', async () => !/offline cache (untrusted|stale)/.test(await clustersText()), 60_000);
  });

  it('an agent away past --cache-max-age shows stale in get clusters; nothing is removed from its cluster for it', { timeout: 120_000 }, async () => {
    await agent.stop();
    const text = await until('stale in get clusters', async () => {
      const t = await clustersText();
      return /edge-oc: offline cache stale: desired state last confirmed by the hub \S+ ago \(max age 3s\)/.test(t) ? t : undefined;
    }, 60_000);
    expect(text).toContain('still reconciled');
    // Back with the hub down? No: with the hub up, the agent is confirmed again and all three objects stay.
    await agent.restart();
    await until('not stale once back', async () => !/offline cache stale/.test(await clustersText()), 60_000);
    for (const n of ['a', 'b', 'c']) expect((await kubeGet(n)).status).toBe(200);
  });

  it('--offline-cache-enabled=false (alias of --enable-cache): the cached set is dropped at start and fetched again from the hub', { timeout: 120_000 }, async () => {
    await agent.stop();
    const before = await hub.metric('hawser_hub_sync_snapshots_total', { cluster: 'edge-oc', reason: 'first-sync' });
    const uncached = await startAgentProcess({
      name: 'edge-oc',
      parentUrl: hub.tunnel,
      caFile: hub.caFile,
      cacheDir: cacheDir(),
      kubeconfig: kube.kubeconfigPath,
      logDir: bed.logDir,
      tracker: bed.tracker,
      args: ['--reconnect-period=300ms', '--max-reconnect-period=1s', '--apply-interval=1s', '--offline-cache-enabled=false', '--use-cache-when-disconnected=false'],
    });
    await uncached.waitFor(/dropped the desired set/, { timeoutMs: 30_000, what: 'the cached set dropped' });
    await until('a first-sync snapshot for the empty cache', async () => (await hub.metric('hawser_hub_sync_snapshots_total', { cluster: 'edge-oc', reason: 'first-sync' })) > before, 60_000);
    await kubeDelete('a');
    await until('cm-a back from the refetched set', async () => (await kubeGet('a')).status === 200, 60_000);
    await uncached.stop();
  });
});
