import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpsRequest, type KubeCluster, startToxiproxy, type Toxiproxy } from '../../src/testkit/index.js';
import { hawser, type HubProcess, readyStatus, TestBed, until } from './harness.js';

// The link shared fairly (issue 7 §3): a sync that saturates a slow link
// through a real toxiproxy (32 KB/s, 150 ms each way; the bandwidth toxic
// first in each direction, since toxiproxy's latency toxic buffers ahead of
// whatever follows it) from a real hub to a real agent and a real child
// kube-apiserver. The lease is short (3 s, a heartbeat a second) and a
// heartbeat must be acked within 6 s: sync frames queued ahead of the acks
// would cost the cluster its session or its lease. Asserted: none of that
// happens, and it converges. Timings belong in bench/weaklink.

describe('a large sync over a slow link never costs the cluster its lease (real toxiproxy)', () => {
  let bed: TestBed;
  let kube: KubeCluster;
  let hub: HubProcess;
  let toxi: Toxiproxy;

  beforeAll(async () => {
    bed = await TestBed.create('weaklink');
    [kube, toxi] = await Promise.all([bed.kube('edge-weak'), startToxiproxy({ baseDir: bed.dir, tracker: bed.tracker })]);
    hub = await bed.hub(['--auto-approve']);
  });

  afterAll(async () => {
    await toxi?.stop();
    await bed?.close();
  });

  it('the transfer saturates the link, the cluster stays Ready on one session with no lease expiry, and it converges', async () => {
    const proxy = await toxi.createProxy('hub-weak', hub.tunnel);
    for (const stream of ['downstream', 'upstream'] as const) {
      await proxy.addToxic({ name: `rate_${stream}`, type: 'bandwidth', stream, attributes: { rate: 32 } });
      await proxy.addToxic({ name: `delay_${stream}`, type: 'latency', stream, attributes: { latency: 150 } });
    }
    await bed.agent('edge-weak', hub, kube, ['--cluster-lease-duration=3s', '--keepalive-timeout=6s', '--reconnect-period=200ms', '--max-reconnect-period=1s'], proxy.listen);
    const cluster = await until('edge-weak registered and Ready', async () => {
      const c = await hub.cluster('edge-weak');
      return readyStatus(c) === 'True' ? c : undefined;
    });
    const sessionsBefore = await hub.metric('hawser_hub_sessions_total', { cluster: 'edge-weak' });
    expect(sessionsBefore).toBeGreaterThanOrEqual(1);

    // 24 ConfigMaps of 18 KB of random bytes (24 KB as base64): about 600 KB that compress
    // little, some 15 s of the link; each below a chunk, so they travel as whole objects.
    const blobs = Array.from({ length: 24 }, () => randomBytes(18_000));
    const file = join(bed.dir, 'weak.yaml');
    await writeFile(
      file,
      [
        ...blobs.map((b, i) => `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: weak-${i}, namespace: default}\nbinaryData: {blob: ${b.toString('base64')}}`),
        [
          'apiVersion: apps.clusternet.io/v1alpha1\nkind: Subscription\nmetadata: {name: weak, namespace: default}\nspec:',
          `  subscribers: [{clusterAffinity: {matchLabels: {clusters.clusternet.io/cluster-id: ${cluster.spec.clusterId}}}}]`,
          `  feeds: [${blobs.map((_, i) => `{apiVersion: v1, kind: ConfigMap, name: weak-${i}, namespace: default}`).join(', ')}]`,
        ].join('\n'),
      ].join('\n---\n'),
    );
    const sentBefore = await hub.metric('hawser_hub_sync_sent_bytes_total', { cluster: 'edge-weak' });
    const applied = await hawser(['apply', '-f', file, `--hub=${hub.apiUrl}`]);
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);

    // Ready as the hub says it, sampled all through the transfer.
    const readiness = new Set<string>();
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    await until(
      'every ConfigMap whole in the child cluster',
      async () => {
        readiness.add(readyStatus(await hub.cluster('edge-weak')) ?? 'absent');
        for (let i = 0; i < blobs.length; i++) {
          const r = await httpsRequest(`${kube.url}/api/v1/namespaces/default/configmaps/weak-${i}`, { ca: kube.caPem, token: kube.token });
          if (r.status !== 200) return false;
          const got = Buffer.from((JSON.parse(r.body) as { binaryData: { blob: string } }).binaryData.blob, 'base64');
          if (sha(got) !== sha(blobs[i]!)) return false;
        }
        return true;
      },
      240_000,
    );
    readiness.add(readyStatus(await hub.cluster('edge-weak')) ?? 'absent');

    // It went over the link: most of the 430 KB of base64 (random bytes compress to ~0.75 of it).
    const sent = (await hub.metric('hawser_hub_sync_sent_bytes_total', { cluster: 'edge-weak' })) - sentBefore;
    expect(sent).toBeGreaterThan(blobs.length * 18_000);
    expect([...readiness]).toEqual(['True']);
    expect(await hub.metric('hawser_cluster_lease_expiries_total', { cluster: 'edge-weak' })).toBe(0);
    // One session all along: no heartbeat went unacked long enough to drop the link.
    expect(await hub.metric('hawser_hub_sessions_total', { cluster: 'edge-weak' })).toBe(sessionsBefore);
  });
});
