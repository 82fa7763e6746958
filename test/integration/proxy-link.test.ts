import { readFile, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer, request, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpsRequest, type KubeCluster, kubectl, type ManagedProcess, startToxiproxy, type Toxiproxy, type ToxiproxyProxy } from '../../src/testkit/index.js';
import { createCertificateAuthority, createServingCertificate } from '../../src/tunnel/index.js';
import { adminToken, type HubProcess, readyStatus, TestBed, until } from './harness.js';

// kubectl through the hub over a bad link: a real toxiproxy between agent and
// hub adds latency and a bandwidth limit, or cuts the link mid-request.

const CLUSTER = 'edge-proxy-link';

describe('proxy over a bad link', () => {
  let bed: TestBed;
  let kube: KubeCluster;
  let hub: HubProcess;
  let toxi: Toxiproxy;
  let link: ToxiproxyProxy;
  let agent: ManagedProcess;
  let hubCa: string;
  /** An HTTPS server in the edge network that answers /slow only when told to. */
  let slow: { server: Server; address: string; release: () => void; waiting: number; sockets: Set<Socket> };

  function hubRequest(path: string) {
    return httpsRequest(`${hub.apiUrl}${path}`, { ca: hubCa, token: adminToken, timeoutMs: 120_000 });
  }

  beforeAll(async () => {
    bed = await TestBed.create('proxy-link');
    [kube, toxi, hub] = await Promise.all([bed.kube(CLUSTER), startToxiproxy({ baseDir: bed.dir, tracker: bed.tracker }), bed.hub(['--auto-approve', '--api-tls'])]);
    hubCa = await readFile(hub.caFile, 'utf8');
    const ca = await createCertificateAuthority('proxy-link edge CA');
    const serving = await createServingCertificate(ca, ['127.0.0.1']);
    const held: Array<() => void> = [];
    const sockets = new Set<Socket>();
    const server = createHttpsServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
      slow.waiting++;
      held.push(() => res.end('released'));
    });
    server.on('connection', (s: Socket) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    slow = { server, address: `127.0.0.1:${(server.address() as AddressInfo).port}`, release: () => held.splice(0).forEach((f) => f()), waiting: 0, sockets };
    const caFile = join(bed.dir, 'edge-ca.pem');
    await writeFile(caFile, ca.certPem);
    link = await toxi.createProxy('agent-hub', hub.tunnel);
    agent = await bed.agent(
      CLUSTER,
      hub,
      kube,
      ['--cluster-status-update-frequency=1s', '--reconnect-period=200ms', '--max-reconnect-period=1s', '--keepalive-time=1s', '--keepalive-timeout=1s', `--proxy-ca-file=${caFile}`],
      link.listen,
    );
    await until('cluster Ready', async () => readyStatus(await hub.cluster(CLUSTER)) === 'True', 120_000);
    await kubectl(kube, ['create', 'clusterrolebinding', 'hawser-harness-admin', '--clusterrole=cluster-admin', '--user=harness-admin']);
  }, 300_000);

  afterAll(async () => {
    slow?.release();
    for (const s of slow?.sockets ?? []) s.destroy();
    await new Promise((resolve) => (slow ? slow.server.close(resolve) : resolve(undefined)));
    await agent?.stop();
    await toxi?.stop();
    await bed?.close();
  }, 120_000);

  it('with latency and a bandwidth limit, requests still complete, large ones too', { timeout: 180_000 }, async () => {
    const big = 'z'.repeat(400_000);
    await kubectl(kube, ['apply', '--server-side', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'big', namespace: 'default' }, data: { big } }) });
    await link.addToxic({ name: 'latency-down', type: 'latency', stream: 'downstream', attributes: { latency: 50, jitter: 10 } });
    await link.addToxic({ name: 'latency-up', type: 'latency', stream: 'upstream', attributes: { latency: 50, jitter: 10 } });
    await link.addToxic({ name: 'bandwidth-down', type: 'bandwidth', stream: 'downstream', attributes: { rate: 2_000 } });
    await link.addToxic({ name: 'bandwidth-up', type: 'bandwidth', stream: 'upstream', attributes: { rate: 2_000 } });
    try {
      const results = await Promise.all([
        hubRequest(`/clusters/${CLUSTER}/api/v1/namespaces/default/configmaps/big`),
        ...Array.from({ length: 20 }, () => hubRequest(`/clusters/${CLUSTER}/api/v1/namespaces/default`)),
      ]);
      expect(results.map((r) => r.status)).toEqual(results.map(() => 200));
      expect((JSON.parse(results[0]!.body) as { data: { big: string } }).data.big).toBe(big);
    } finally {
      for (const name of ['latency-down', 'latency-up', 'bandwidth-down', 'bandwidth-up']) await link.removeToxic(name);
    }
  });

  it('cut: a request in flight fails at once with a clear error, new ones get 503 until the agent is back', { timeout: 180_000 }, async () => {
    // Waiting for its answer in the edge network when the link goes.
    const waitingBefore = slow.waiting;
    const inFlight = hubRequest(`/apis/proxies.clusternet.io/v1alpha1/sockets/${CLUSTER}/proxy/https/${slow.address}/slow`);
    // A watch whose answer is streaming when the link goes.
    const watchBroke = new Promise<string>((resolve) => {
      const req = request(`${hub.apiUrl}/clusters/${CLUSTER}/api/v1/namespaces/default/configmaps?watch=true`, { ca: hubCa, headers: { authorization: `Bearer ${adminToken}` } }, (res) => {
        res.on('data', () => undefined);
        res.on('error', (err) => resolve(`error: ${err.message}`));
        res.on('end', () => resolve('ended'));
      });
      req.on('error', (err) => resolve(`error: ${err.message}`));
      req.end();
    });
    await until('the slow request reached the edge server', async () => slow.waiting > waitingBefore);
    await until('both streams are open on the hub', async () => (await hub.metric('hawser_hub_proxy_streams_open')) >= 2);
    await link.disable();
    const failed = await inFlight;
    expect(failed.status, failed.body).toBe(503);
    expect((JSON.parse(failed.body) as { details: { causes: Array<{ reason: string }> } }).details.causes[0]!.reason).toBe('HAWSER_SESSION_ENDED');
    expect(await watchBroke).toMatch(/^error: /);
    await until('the hub sees the agent gone', async () => (await hub.metric('hawser_hub_connected_agents')) === 0);
    const offline = await hubRequest(`/clusters/${CLUSTER}/api/v1/namespaces`);
    expect(offline.status).toBe(503);
    expect((JSON.parse(offline.body) as { details: { causes: Array<{ reason: string }> } }).details.causes[0]!.reason).toBe('HAWSER_CLUSTER_OFFLINE');
    expect(await hub.metric('hawser_hub_proxy_streams_open')).toBe(0);

    await link.enable();
    await until('the agent is back', async () => (await hub.metric('hawser_hub_connected_agents')) === 1);
    const back = await hubRequest(`/clusters/${CLUSTER}/api/v1/namespaces/default`);
    expect(back.status).toBe(200);
  });
});
