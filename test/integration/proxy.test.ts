import { spawn } from 'node:child_process';
import { appendFile, mkdir, readFile, realpath, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  criLogLine,
  freePort,
  httpsRequest,
  type KubeCluster,
  kubectl,
  type ManagedProcess,
  requireTestbedBinary,
  startKubeCluster,
  startKubectl,
  waitUntil,
} from '../../src/testkit/index.js';
import { adminToken, type HubProcess, readyStatus, sampleValue, TestBed, until } from './harness.js';
import { hubKubeconfig, largeBody, startWebSocketEchoServer, webSocketClient } from './proxy-support.js';

// kubectl through the hub: the testbed's kubectl talks to the hub's
// /clusters/NAME, the hub to the agent over its tunnel connection (one stream
// per request), the agent to the child kube-apiserver as the operator
// (impersonation). Results must be those of the same commands run directly.

const CLUSTER = 'edge-proxy';
const POD = 'proxy-pod';
const POD_PORT = 8080;
type Kube = { kubeconfigPath: string; workDir: string };

describe('kubectl through the hub', () => {
  let bed: TestBed;
  let kube: KubeCluster;
  let hub: HubProcess;
  let agent: ManagedProcess;
  let agentMetricsUrl: string;
  let viaHub: Kube;
  let pong: Server;
  let logsFile: string;
  const received: string[] = [];
  const pongSockets = new Set<Socket>();
  let echo: Awaited<ReturnType<typeof startWebSocketEchoServer>>;
  let hubCa: string;

  /** A request to the hub's API (HTTPS with its CA), as the admin operator unless `token` says otherwise. */
  function hubRequest(path: string, options: { method?: string; token?: string; headers?: Record<string, string>; body?: string } = {}) {
    return httpsRequest(`${hub.apiUrl}${path}`, {
      ca: hubCa,
      token: options.token ?? adminToken,
      timeoutMs: 60_000,
      ...(options.method ? { method: options.method } : {}),
      ...(options.headers ? { headers: options.headers } : {}),
      ...(options.body !== undefined ? { body: options.body } : {}),
    });
  }

  beforeAll(async () => {
    bed = await TestBed.create('proxy');
    const dir = await realpath(bed.dir);
    logsFile = join(dir, 'app.log');
    const workDir = join(dir, 'exec');
    await writeFile(logsFile, '');
    await mkdir(workDir);
    // The pod's port: a TCP server answering "pong:<what it got>".
    pong = createServer((socket: Socket) => {
      pongSockets.add(socket);
      socket.on('close', () => pongSockets.delete(socket));
      const i = received.push('') - 1;
      socket.on('data', (c: Buffer) => {
        received[i] += c.toString('utf8');
        socket.write(`pong:${c.toString('utf8')}`);
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => pong.listen(0, '127.0.0.1', resolve));
    const pongPort = (pong.address() as { port: number }).port;
    echo = await startWebSocketEchoServer();
    const proxyCaFile = join(dir, 'edge-ca.pem');
    await writeFile(proxyCaFile, echo.caPem);
    [kube, hub] = await Promise.all([
      startKubeCluster({
        name: CLUSTER,
        baseDir: dir,
        tracker: bed.tracker,
        workloads: true,
        nodes: [{ name: 'proxy-node-1', cpu: '2', memory: '4Gi', pods: 10 }],
        kubelet: { logsFile, exec: { workDir }, portForward: [{ podPorts: [POD_PORT], host: '127.0.0.1', port: pongPort }] },
      }),
      // kubectl sends its token only over TLS.
      bed.hub(['--auto-approve', '--api-tls']),
    ]);
    const metricsPort = await freePort({ owner: 'agent metrics', tracker: bed.tracker });
    agentMetricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    agent = await bed.agent(CLUSTER, hub, kube, [
      // Heartbeats every 5 s (the agent gives up after 3 unanswered): on this shared machine a
      // loaded hub can take seconds to answer one, which is a benchmark figure, not a failure.
      '--cluster-status-update-frequency=5s',
      `--metrics-address=127.0.0.1:${metricsPort}`,
      `--proxy-ca-file=${proxyCaFile}`,
    ]);
    await until('cluster Ready', async () => readyStatus(await hub.cluster(CLUSTER)) === 'True', 120_000);
    // The operator is impersonated in the child: its RBAC decides. This one may do anything.
    await kubectl(kube, ['create', 'clusterrolebinding', 'hawser-harness-admin', '--clusterrole=cluster-admin', '--user=harness-admin']);
    hubCa = await readFile(hub.caFile, 'utf8');
    viaHub = await hubKubeconfig(join(dir, 'operator'), `${hub.apiUrl}/clusters/${CLUSTER}`, adminToken, hub.caFile);
    await kubectl(kube, ['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: POD, namespace: 'default' },
        spec: { containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10', ports: [{ containerPort: POD_PORT }] }] },
      }),
    });
    await waitUntil(async () => (await kubectl(kube, ['get', 'pod', POD, '-o', 'jsonpath={.status.phase}'])).stdout === 'Running', {
      timeoutMs: 120_000,
      what: `pod ${POD} Running`,
      intervalMs: 250,
    });
  }, 400_000);

  afterAll(async () => {
    await echo?.close();
    for (const socket of pongSockets) socket.destroy();
    await new Promise((resolve) => (pong ? pong.close(resolve) : resolve(undefined)));
    await kube?.stop();
    await bed?.close();
  }, 120_000);

  async function agentMetric(name: string): Promise<number> {
    const res = await fetch(agentMetricsUrl);
    if (!res.ok) throw new Error(`agent /metrics: HTTP ${res.status}`);
    return sampleValue(await res.text(), name);
  }

  it('get, create, apply, patch and delete give what the same commands give directly', { timeout: 180_000 }, async () => {
    const both = async (args: string[]) => {
      const [direct, proxied] = await Promise.all([kubectl(kube, args), kubectl(viaHub, args)]);
      return { direct: direct.stdout, proxied: proxied.stdout };
    };
    const ns = await both(['get', 'ns', '-o', 'name']);
    expect(ns.proxied).toBe(ns.direct);
    expect(ns.proxied).toContain('namespace/default');

    await kubectl(viaHub, ['create', 'configmap', 'via-hub', '-n', 'default', '--from-literal=a=1']);
    const created = await both(['get', 'configmap', 'via-hub', '-n', 'default', '-o', 'json']);
    expect(JSON.parse(created.proxied)).toEqual(JSON.parse(created.direct));
    expect(JSON.parse(created.direct).data).toEqual({ a: '1' });

    const manifest = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'applied', namespace: 'default' }, data: { b: '2' } });
    await kubectl(viaHub, ['apply', '-f', '-'], { input: manifest });
    await kubectl(viaHub, ['patch', 'configmap', 'applied', '-n', 'default', '--type=merge', '-p', '{"data":{"c":"3"}}']);
    const patched = await both(['get', 'configmap', 'applied', '-n', 'default', '-o', 'jsonpath={.data}']);
    expect(patched.proxied).toBe(patched.direct);
    expect(JSON.parse(patched.direct)).toEqual({ b: '2', c: '3' });

    // The child records who did it: the operator, impersonated, not the agent.
    const managers = (await kubectl(kube, ['get', 'configmap', 'applied', '-n', 'default', '--show-managed-fields', '-o', 'json'])).stdout;
    expect(managers).toContain('kubectl');

    await kubectl(viaHub, ['delete', 'configmap', 'via-hub', 'applied', '-n', 'default']);
    const gone = await both(['get', 'configmap', '-n', 'default', '-o', 'name']);
    expect(gone.proxied).toBe(gone.direct);
    expect(gone.direct).not.toContain('applied');
  });

  it('get --watch streams changes made directly in the child', { timeout: 120_000 }, async () => {
    const watch = await startKubectl(viaHub, ['get', 'configmap', '-n', 'default', '--watch', '-o', 'name'], { name: 'kubectl-watch-hub', tracker: bed.tracker });
    try {
      await watch.waitFor(/configmap\/kube-root-ca\.crt/, { timeoutMs: 60_000, what: 'the watch lists what is there' });
      await kubectl(kube, ['create', 'configmap', 'watched', '-n', 'default']);
      await watch.waitFor(/configmap\/watched/, { timeoutMs: 60_000, what: 'the watch shows the new configmap' });
      expect(watch.running).toBe(true);
    } finally {
      await watch.stop();
      await kubectl(kube, ['delete', 'configmap', 'watched', '-n', 'default']);
    }
  });

  it('logs -f follows the container log through the hub', { timeout: 120_000 }, async () => {
    await appendFile(logsFile, criLogLine('before follow'));
    const follow = await startKubectl(viaHub, ['logs', '-f', POD, '-n', 'default'], { name: 'kubectl-logs-hub', tracker: bed.tracker });
    try {
      await follow.waitFor(/^before follow$/, { timeoutMs: 60_000, what: 'logs -f prints the existing lines' });
      await appendFile(logsFile, criLogLine('appended while following'));
      await follow.waitFor(/^appended while following$/, { timeoutMs: 60_000, what: 'logs -f prints the appended line' });
    } finally {
      await follow.stop();
    }
  });

  it('exec with stdin: what goes in comes back out (WebSocket or SPDY, as kubectl picks)', { timeout: 120_000 }, async () => {
    // kwok never closes the command's stdin: `head -c N` stops after N bytes.
    const data = `through the hub ${'x'.repeat(200_000)}\nend\n`;
    const head = await kubectl(viaHub, ['exec', '-i', POD, '-n', 'default', '--', 'head', '-c', String(Buffer.byteLength(data))], { input: data });
    expect(head.stdout).toBe(data);
  });

  it('port-forward carries data both ways', { timeout: 120_000 }, async () => {
    const local = await freePort({ owner: 'kubectl port-forward via hub', tracker: bed.tracker });
    const forward = await startKubectl(viaHub, ['port-forward', '-n', 'default', '--address', '127.0.0.1', `pod/${POD}`, `${local}:${POD_PORT}`], {
      name: 'kubectl-port-forward-hub',
      tracker: bed.tracker,
    });
    try {
      await forward.waitFor(new RegExp(`Forwarding from 127\\.0\\.0\\.1:${local}`), { timeoutMs: 60_000, what: 'port-forward listening' });
      const socket = connect({ host: '127.0.0.1', port: local });
      let answer = '';
      socket.on('data', (c: Buffer) => (answer += c.toString('utf8')));
      socket.on('error', () => undefined);
      socket.write('ping-through-hub');
      await waitUntil(() => answer === 'pong:ping-through-hub', { timeoutMs: 60_000, what: 'the answer through port-forward via the hub' });
      expect(received).toContain('ping-through-hub');
      socket.destroy();
    } finally {
      await forward.stop();
    }
  });

  it('a WebSocket round trip through proxy/https/HOST:PORT reaches a server in the edge network', { timeout: 60_000 }, async () => {
    const cluster = await hub.cluster(CLUSTER);
    const base = `/apis/proxies.clusternet.io/v1alpha1/sockets/${cluster!.spec.clusterId}/proxy/https/${echo.address}`;
    const plain = await hubRequest(`${base}/plain?x=1`);
    expect(plain.status).toBe(200);
    expect(plain.body).toBe('hello over https /plain?x=1');
    const port = Number(new URL(hub.apiUrl).port);
    const ws = await webSocketClient(() => tlsConnect({ host: '127.0.0.1', port, ca: hubCa, servername: 'localhost' }), `${base}/ws`, adminToken);
    try {
      expect(ws.status).toBe('HTTP/1.1 101 Switching Protocols');
      ws.send('first');
      ws.send('second');
      await waitUntil(() => ws.texts.length === 2, { timeoutMs: 30_000, what: 'two echoes' });
      expect(ws.texts).toEqual(['echo:first', 'echo:second']);
      expect(echo.received).toEqual(['first', 'second']);
    } finally {
      ws.close();
    }
  });

  it('a GET on a kept-alive connection the edge server closes at that moment is sent again on a new one', { timeout: 60_000 }, async () => {
    const cluster = await hub.cluster(CLUSTER);
    const base = `/apis/proxies.clusternet.io/v1alpha1/sockets/${cluster!.spec.clusterId}/proxy/https/${echo.address}`;
    // The agent keeps its connection to the server open after this answer, and reuses it next.
    expect((await hubRequest(`${base}/small?warm`)).status).toBe(200);
    const res = await hubRequest(`${base}/drop-reused`);
    expect(res.body).toBe('hello over https /drop-reused');
    expect(res.status).toBe(200);
  });

  it('the Clusternet direct path reaches the child kube-apiserver too', { timeout: 60_000 }, async () => {
    const cluster = await hub.cluster(CLUSTER);
    const res = await hubRequest(`/apis/proxies.clusternet.io/v1alpha1/sockets/${cluster!.spec.clusterId}/proxy/direct/api/v1/namespaces/default`);
    expect(res.status).toBe(200);
    expect((JSON.parse(res.body) as { metadata: { name: string } }).metadata.name).toBe('default');
  });

  it('a bad token gets 401 and never reaches the agent', { timeout: 60_000 }, async () => {
    const before = await agentMetric('hawser_agent_proxy_requests_total');
    const res = await hubRequest(`/clusters/${CLUSTER}/api/v1/namespaces`, { token: 'hwo_not-a-valid-token-000000' });
    expect(res.status).toBe(401);
    expect((JSON.parse(res.body) as { details: { causes: Array<{ reason: string }> } }).details.causes[0]!.reason).toBe('HAWSER_UNAUTHENTICATED');
    const bad = await hubKubeconfig(join(bed.dir, 'bad-operator'), `${hub.apiUrl}/clusters/${CLUSTER}`, 'hwo_not-a-valid-token-000000', hub.caFile);
    await expect(kubectl(bad, ['get', 'ns'])).rejects.toMatchObject({ message: expect.stringContaining('You must be logged in to the server') });
    expect(await agentMetric('hawser_agent_proxy_requests_total')).toBe(before);
  });

  it('an operator\'s own Impersonate-* headers never reach the child: the hub refuses them (403), and without them the child sees the operator', { timeout: 60_000 }, async () => {
    const review = (headers: Record<string, string>) =>
      hubRequest(`/clusters/${CLUSTER}/apis/authentication.k8s.io/v1/selfsubjectreviews`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' }),
      });
    const refused = await review({ 'impersonate-user': 'system:admin', 'impersonate-group': 'system:masters' });
    expect(refused.status).toBe(403);
    expect((JSON.parse(refused.body) as { message: string }).message).toMatch(/^HAWSER_IMPERSONATION_REFUSED: /);
    const res = await review({});
    expect(res.status).toBe(201);
    const who = JSON.parse(res.body) as { status: { userInfo: { username: string; groups: string[] } } };
    expect(who.status.userInfo.username).toBe('harness-admin');
    expect(who.status.userInfo.groups).not.toContain('system:masters');
  });

  it('many interrupted watches leave no stream open on hub or agent', { timeout: 180_000 }, async () => {
    for (let i = 0; i < 15; i++) {
      const watch = await startKubectl(viaHub, ['get', 'configmap', '-n', 'default', '--watch', '-o', 'name'], { name: `kubectl-watch-${i}`, tracker: bed.tracker });
      await watch.waitFor(/configmap\/kube-root-ca\.crt/, { timeoutMs: 60_000, what: 'the watch listed' });
      // After its list, kubectl opens the watch itself: one stream on each side.
      await until('the watch stream is open on the hub', async () => (await hub.metric('hawser_hub_proxy_streams_open')) > 0);
      await until('the watch stream is open on the agent', async () => (await agentMetric('hawser_agent_proxy_streams_open')) > 0);
      await watch.stop();
    }
    await until('hub proxy streams at 0', async () => (await hub.metric('hawser_hub_proxy_streams_open')) === 0);
    await until('agent proxy streams at 0', async () => (await agentMetric('hawser_agent_proxy_streams_open')) === 0);
  });

  it('hundreds of concurrent requests over one agent connection, one a large download, all complete and correct; no lease expires', { timeout: 240_000 }, async () => {
    // 300 to the child kube-apiserver (the agent impersonates the operator) and 300 to a server in the edge network.
    const cluster = await hub.cluster(CLUSTER);
    const base = `/apis/proxies.clusternet.io/v1alpha1/sockets/${cluster!.spec.clusterId}/proxy/https/${echo.address}`;
    const expiriesBefore = await hub.metric('hawser_cluster_lease_expiries_total', { cluster: CLUSTER });
    // The agent keeps 4 idle streams open ahead (feature proxy-pool): 600 at once exhaust them,
    // and the rest are asked for by OpenStream.
    await until('the agent\'s idle streams are pooled on the hub', async () => (await hub.metric('hawser_hub_proxy_streams_pooled')) === 4);
    expect(await hub.metric('hawser_hub_proxy_streams_open')).toBe(0);
    const largeBytes = 32 * 1024 * 1024;
    const large = new Promise<Buffer>((resolve, reject) => {
      const req = httpsGet(`${hub.apiUrl}${base}/large?bytes=${largeBytes}`, { ca: hubCa, headers: { authorization: `Bearer ${adminToken}` } }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve(Buffer.concat(parts)));
        res.on('error', reject);
      });
      req.on('error', reject);
    });
    const toEdgeServer = Array.from({ length: 300 }, async (_, i) => {
      const res = await hubRequest(`${base}/small?i=${i}`);
      return res.status === 200 && res.body === `hello over https /small?i=${i}` ? 'ok' : `${res.status} ${res.body.slice(0, 200)}`;
    });
    const toKube = Array.from({ length: 300 }, async (_, i) => {
      const res = await hubRequest(`/clusters/${CLUSTER}/api/v1/namespaces/default?i=${i}`);
      return res.status === 200 && (JSON.parse(res.body) as { metadata: { name: string } }).metadata.name === 'default'
        ? 'ok'
        : `kube ${res.status} ${JSON.stringify(res.headers)} ${res.body.slice(0, 300)}`;
    });
    const small = await Promise.all([...toEdgeServer, ...toKube]);
    const failed = small.filter((r) => r !== 'ok');
    expect(failed, `${failed.length} failed\n--- agent ---\n${agent.lines().filter((l) => /warn|error|backing|HAWSER_/i.test(l)).slice(-15).join('\n')}`).toEqual([]);
    const body = await large;
    expect(body.byteLength).toBe(largeBytes);
    expect(body.equals(largeBody(largeBytes))).toBe(true);
    expect(await hub.metric('hawser_cluster_lease_expiries_total', { cluster: CLUSTER })).toBe(expiriesBefore);
    expect(readyStatus(await hub.cluster(CLUSTER))).toBe('True');
    // Taken streams were replaced: the pool is full again, and nothing is left open.
    await until('the pool is full again', async () => (await hub.metric('hawser_hub_proxy_streams_pooled')) === 4);
    await until('no proxy stream open on the hub', async () => (await hub.metric('hawser_hub_proxy_streams_open')) === 0);
    await until('no proxy stream open on the agent', async () => (await agentMetric('hawser_agent_proxy_streams_open')) === 0);
  });

  it('an agent without idle streams (--proxy-stream-pool=0, as an older agent) is served by OpenStream', { timeout: 180_000 }, async () => {
    const older = await bed.agent('edge-proxy-nopool', hub, kube, ['--cluster-status-update-frequency=5s', '--proxy-stream-pool=0']);
    try {
      await until('the second cluster Ready', async () => readyStatus(await hub.cluster('edge-proxy-nopool')) === 'True', 120_000);
      for (let i = 0; i < 3; i++) {
        const res = await hubRequest(`/clusters/edge-proxy-nopool/api/v1/namespaces/default?i=${i}`);
        expect(res.status).toBe(200);
        expect((JSON.parse(res.body) as { metadata: { name: string } }).metadata.name).toBe('default');
      }
      // Only the first agent's streams wait in the pool.
      expect(await hub.metric('hawser_hub_proxy_streams_pooled')).toBe(4);
      await until('no proxy stream open on the hub', async () => (await hub.metric('hawser_hub_proxy_streams_open')) === 0);
    } finally {
      await older.stop();
    }
  });

  it('exec through kubectl binary with stdin open echoes chunk by chunk', { timeout: 120_000 }, async () => {
    const child = spawn(requireTestbedBinary('kubectl'), ['--kubeconfig', viaHub.kubeconfigPath, 'exec', '-i', POD, '-n', 'default', '--', 'cat'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stdin.on('error', () => undefined);
    try {
      child.stdin.write('one\n');
      await waitUntil(() => out === 'one\n', { timeoutMs: 60_000, what: 'cat echoes the first chunk' });
      child.stdin.write('two\n');
      await waitUntil(() => out === 'one\ntwo\n', { timeoutMs: 60_000, what: 'cat echoes the second chunk' });
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
    await until('hub proxy streams at 0 after exec', async () => (await hub.metric('hawser_hub_proxy_streams_open')) === 0);
  });

  it('a cluster whose agent stopped gets 503 at once, saying it is offline and since when', { timeout: 120_000 }, async () => {
    await agent.stop();
    await until('the hub sees the agent gone', async () => (await hub.metric('hawser_hub_connected_agents')) === 0);
    // Its idle streams went with its session.
    expect(await hub.metric('hawser_hub_proxy_streams_pooled')).toBe(0);
    expect(await hub.metric('hawser_hub_proxy_streams_open')).toBe(0);
    const res = await hubRequest(`/clusters/${CLUSTER}/api/v1/namespaces`);
    expect(res.status).toBe(503);
    const status = JSON.parse(res.body) as { message: string; details: { causes: Array<{ reason: string }> } };
    expect(status.details.causes[0]!.reason).toBe('HAWSER_CLUSTER_OFFLINE');
    expect(status.message).toMatch(/offline since \d{4}-\d\d-\d\dT/);
    const unknown = await hubRequest('/clusters/no-such-cluster/api/v1/namespaces');
    expect(unknown.status).toBe(404);
  });
});
