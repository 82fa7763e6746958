import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, httpsRequest, type KubeCluster, mountSmallDisk, type SmallDisk } from '../../src/testkit/index.js';
import { hawser, type HubProcess, jsonLines, sampleValue, startAgentProcess, TestBed, until } from './harness.js';

// §5 "The cache's disk use is bounded and reported", against a real hub, a
// real agent whose cache directory is on a small real filesystem (tmpfs) and
// a real kube-apiserver: three ConfigMaps of ~0.8 MB that do not compress,
// an agent whose --cache-size-limit holds two. Two are applied, the third is
// HAWSER_SYNC_CACHE_FULL on its subscription (never half-applied), and what
// the cache takes on disk — database and all — comes back within the limit.

describe('--cache-size-limit on a small real disk (real hub, agent, kube-apiserver)', () => {
  let bed: TestBed;
  let kube: KubeCluster;
  let hub: HubProcess;
  let disk: SmallDisk;
  let metricsPort: number;
  const limitBytes = 2_000_000;

  beforeAll(async () => {
    bed = await TestBed.create('offline-disk');
    kube = await bed.kube('edge-disk');
    hub = await bed.hub(['--auto-approve']);
    disk = await mountSmallDisk(16 * 1024 * 1024);
    metricsPort = await freePort({ owner: 'agent metrics', tracker: bed.tracker });
  }, 180_000);

  afterAll(async () => {
    await bed?.close();
    await disk?.close();
  });

  const agentMetric = async (name: string) => sampleValue(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text(), name, {});
  const kubeStatus = async (n: string) => (await httpsRequest(`${kube.url}/api/v1/namespaces/default/configmaps/${n}`, { ca: kube.caPem, token: kube.token })).status;

  it('two of three objects fit: they are applied, the third is HAWSER_SYNC_CACHE_FULL on its subscription, and the disk use comes back within the limit', { timeout: 300_000 }, async () => {
    const agent = await startAgentProcess({
      name: 'edge-disk',
      parentUrl: hub.tunnel,
      caFile: hub.caFile,
      cacheDir: join(disk.path, 'agent'),
      kubeconfig: kube.kubeconfigPath,
      logDir: bed.logDir,
      tracker: bed.tracker,
      args: ['--reconnect-period=300ms', '--max-reconnect-period=1s', '--apply-interval=1s', `--metrics-address=127.0.0.1:${metricsPort}`, '--cache-cleanup-interval=300ms', `--cache-size-limit=${limitBytes}`],
    });
    const cluster = await until('edge-disk registered', () => hub.cluster('edge-disk'));
    const names = ['big-1', 'big-2', 'big-3'];
    const file = join(bed.dir, 'big.yaml');
    await writeFile(
      file,
      [
        ...names.map((n) => `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ${n}, namespace: default}\nbinaryData: {blob: ${randomBytes(600_000).toString('base64')}}`),
        [
          'apiVersion: apps.clusternet.io/v1alpha1\nkind: Subscription\nmetadata: {name: big, namespace: default}\nspec:',
          `  subscribers: [{clusterAffinity: {matchLabels: {clusters.clusternet.io/cluster-id: ${cluster.spec.clusterId}}}}]`,
          '  feeds:',
          ...names.map((n) => `  - {apiVersion: v1, kind: ConfigMap, name: ${n}, namespace: default}`),
        ].join('\n'),
      ].join('\n---\n'),
    );
    expect((await hawser(['apply', '-f', file, `--hub=${hub.apiUrl}`])).stderr).toBe('');

    const described = await until(
      'the refusal on the subscription',
      async () => {
        const r = await hawser(['describe', 'subscription', 'big', `--hub=${hub.apiUrl}`]);
        return r.stdout.includes('HAWSER_SYNC_CACHE_FULL') ? r.stdout : undefined;
      },
      180_000,
    );
    expect(described).toMatch(/--cache-size-limit/);
    const present = await until(
      'two of the three in the child cluster',
      async () => {
        const statuses = await Promise.all(names.map(kubeStatus));
        return statuses.filter((s) => s === 200).length === 2 ? statuses : undefined;
      },
      120_000,
    );
    // The third is absent, not half there.
    expect(present.filter((s) => s === 404)).toHaveLength(1);

    // The disk use as reported, and as the filesystem sees it: within the limit.
    await until('disk use within the limit', async () => {
      const size = await agentMetric('hawser_agent_cache_size_bytes');
      return size > 0 && size <= limitBytes;
    }, 60_000);
    expect(await agentMetric('hawser_agent_cache_desired_bytes')).toBeLessThanOrEqual(limitBytes);
    // The chunks stored on the way and the write-ahead log took the database past the limit: it was compacted back.
    expect(await agentMetric('hawser_agent_cache_compactions_total')).toBeGreaterThanOrEqual(1);
    expect(jsonLines(agent).some((l) => /ENOSPC|no space/i.test(JSON.stringify(l)))).toBe(false);
    await agent.stop();
  });
});
