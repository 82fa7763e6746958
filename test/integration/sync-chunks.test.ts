import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpsRequest, type KubeCluster, startToxiproxy, type Toxiproxy } from '../../src/testkit/index.js';
import { hawser, type HubProcess, TestBed, until } from './harness.js';

// A large ConfigMap through a real toxiproxy (a slow link that is cut
// mid-transfer) from a real hub to a real agent, applied to a real child
// kube-apiserver. The link closes every connection after `cutBytes` bytes
// towards the agent (limit_data), less than the object: a transfer that
// restarted from its start would never finish, and the hub's byte counter
// would pass the object's size by a cut's worth for every cut.

describe('a large object over a slow link cut mid-transfer (real toxiproxy)', () => {
  let bed: TestBed;
  let kube: KubeCluster;
  let hub: HubProcess;
  let toxi: Toxiproxy;

  beforeAll(async () => {
    bed = await TestBed.create('chunks');
    [kube, toxi] = await Promise.all([bed.kube('edge-big'), startToxiproxy({ baseDir: bed.dir, tracker: bed.tracker })]);
    hub = await bed.hub(['--auto-approve', '--sync-chunk-bytes=16384']);
  });

  afterAll(async () => {
    await toxi?.stop();
    await bed?.close();
  });

  it('arrives whole in the child cluster, resumed at the last acked chunk after each cut, not restarted', async () => {
    const proxy = await toxi.createProxy('hub-big', hub.tunnel);
    // The agent takes objects up to 1.35 MB: the 1.33 MB one here, not the 1.39 MB one of the next test.
    await bed.agent('edge-big', hub, kube, ['--reconnect-period=200ms', '--max-reconnect-period=1s', '--register-timeout=5s', '--max-object-bytes=1350000'], proxy.listen);
    const cluster = await until('edge-big registered', () => hub.cluster('edge-big'));
    // Kubernetes refuses ConfigMaps over 1 MiB of data: this one is just under, 1.33 MB as JSON (base64).
    const blob = randomBytes(1_000_000);
    const file = join(bed.dir, 'big.yaml');
    await writeFile(
      file,
      [
        `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big, namespace: default}\nbinaryData: {blob: ${blob.toString('base64')}}`,
        '---',
        'apiVersion: apps.clusternet.io/v1alpha1\nkind: Subscription\nmetadata: {name: big, namespace: default}\nspec:',
        `  subscribers: [{clusterAffinity: {matchLabels: {clusters.clusternet.io/cluster-id: ${cluster.spec.clusterId}}}}]`,
        '  feeds: [{apiVersion: v1, kind: ConfigMap, name: big, namespace: default}]',
      ].join('\n'),
    );
    const payloadBytes = Buffer.byteLength(JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'big', namespace: 'default' }, binaryData: { blob: blob.toString('base64') } }));
    const cutBytes = Math.floor(payloadBytes * 0.45);
    const sessionsBefore = await hub.metric('hawser_hub_sessions_total', { cluster: 'edge-big' });
    // The bandwidth toxic first in the chain (toxiproxy's latency toxic would buffer ahead of it).
    await proxy.addToxic({ name: 'slow', type: 'bandwidth', stream: 'downstream', attributes: { rate: 256 } });
    await proxy.addToxic({ name: 'cut', type: 'limit_data', stream: 'downstream', attributes: { bytes: cutBytes } });

    const applied = await hawser(['apply', '-f', file, `--hub=${hub.apiUrl}`]);
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);

    const configMapUrl = `${kube.url}/api/v1/namespaces/default/configmaps/big`;
    const inCluster = await until(
      'the ConfigMap whole in the child cluster',
      async () => {
        const r = await httpsRequest(configMapUrl, { ca: kube.caPem, token: kube.token });
        return r.status === 200 ? (JSON.parse(r.body) as { binaryData: { blob: string } }) : undefined;
      },
      180_000,
    );
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    expect(sha(Buffer.from(inCluster.binaryData.blob, 'base64'))).toBe(sha(blob));

    // It was cut: each connection carries less than the object.
    const sessions = (await hub.metric('hawser_hub_sessions_total', { cluster: 'edge-big' })) - sessionsBefore;
    expect(sessions).toBeGreaterThanOrEqual(2);
    // Resumed: the hub skipped what the agent held, and sent the object about once. A restart from
    // zero would send at least payloadBytes + cutBytes (1.45x) and, past one cut, never finish.
    // Measured: 1.33 MB object, cut at 600 KB per connection, 3 sessions, 88 chunks of 82, 1.08x its size sent.
    expect(await hub.metric('hawser_hub_sync_resumed_bytes_total', { cluster: 'edge-big' })).toBeGreaterThan(cutBytes / 2);
    const chunks = Math.ceil(payloadBytes / 16384);
    const chunksSent = await hub.metric('hawser_hub_sync_chunks_total', { cluster: 'edge-big' });
    expect(chunksSent).toBeGreaterThanOrEqual(chunks);
    expect(chunksSent).toBeLessThan(chunks * 1.25);
    // On the wire too (after compression, when negotiated): less than the object and a cut's worth again.
    expect(await hub.metric('hawser_hub_sync_sent_bytes_total', { cluster: 'edge-big' })).toBeLessThan(payloadBytes * 1.25);
    // The transfer never cost the cluster its lease.
    expect(await hub.metric('hawser_cluster_lease_expiries_total', { cluster: 'edge-big' })).toBe(0);
  });

  it("an object past the agent's --max-object-bytes is HAWSER_SYNC_OBJECT_TOO_LARGE on its subscription; the others of it still sync", async () => {
    const cluster = await until('edge-big registered', () => hub.cluster('edge-big'));
    const file = join(bed.dir, 'too-big.yaml');
    // 1.04 MB of data is a ConfigMap Kubernetes and the hub take (1.39 MB as JSON), but past this agent's limit.
    await writeFile(
      file,
      [
        `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: too-big, namespace: default}\nbinaryData: {blob: ${randomBytes(1_040_000).toString('base64')}}`,
        '---',
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: small, namespace: default}\ndata: {greeting: hello}',
        '---',
        'apiVersion: apps.clusternet.io/v1alpha1\nkind: Subscription\nmetadata: {name: too-big, namespace: default}\nspec:',
        `  subscribers: [{clusterAffinity: {matchLabels: {clusters.clusternet.io/cluster-id: ${cluster.spec.clusterId}}}}]`,
        '  feeds: [{apiVersion: v1, kind: ConfigMap, name: too-big, namespace: default}, {apiVersion: v1, kind: ConfigMap, name: small, namespace: default}]',
      ].join('\n'),
    );
    const applied = await hawser(['apply', '-f', file, `--hub=${hub.apiUrl}`]);
    expect(applied.stderr).toBe('');
    const smallUrl = `${kube.url}/api/v1/namespaces/default/configmaps/small`;
    await until('the small ConfigMap in the child cluster', async () => (await httpsRequest(smallUrl, { ca: kube.caPem, token: kube.token })).status === 200, 120_000);
    const described = await until(
      'the refusal on the subscription',
      async () => {
        const r = await hawser(['describe', 'subscription', 'too-big', `--hub=${hub.apiUrl}`]);
        return r.stdout.includes('HAWSER_SYNC_OBJECT_TOO_LARGE') ? r.stdout : undefined;
      },
      120_000,
    );
    expect(described).toMatch(/too-big/);
    expect((await httpsRequest(`${kube.url}/api/v1/namespaces/default/configmaps/too-big`, { ca: kube.caPem, token: kube.token })).status).toBe(404);
    expect(await hub.metric('hawser_hub_sync_objects_refused_total', { cluster: 'edge-big', code: 'HAWSER_SYNC_OBJECT_TOO_LARGE' })).toBeGreaterThanOrEqual(1);
  });
});
