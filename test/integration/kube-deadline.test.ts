import { writeFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { kubeconfigYaml } from '../../src/testkit/index.js';
import { readyStatus, startAgentProcess, TestBed, until } from './harness.js';

// The agent's reads of its own cluster have deadlines: an API server that
// accepts and then never answers costs the status its health while it hangs,
// and status reports resume when it answers again. Meanwhile the lease keeps
// renewing.

/**
 * A TCP relay in front of the real API server that can be made to hang: while
 * hanging, nothing the server sends reaches the agent, and new connections are
 * accepted and then held without an answer, for ever (until close()).
 */
async function hangableRelay(upstream: { host: string; port: number }) {
  let hanging = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on('error', () => {});
    client.on('close', () => sockets.delete(client));
    if (hanging) return; // accepted, never answered
    const up = connect(upstream);
    sockets.add(up);
    up.on('error', () => client.destroy());
    up.on('close', () => sockets.delete(up));
    client.on('data', (d) => up.write(d));
    up.on('data', (d) => {
      if (!hanging) client.write(d);
    });
    client.on('close', () => up.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    hang: (on: boolean) => (hanging = on),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('cluster reads with a hung API server', () => {
  let bed: TestBed;
  let relay: Awaited<ReturnType<typeof hangableRelay>> | undefined;

  afterAll(async () => {
    await relay?.close();
    await bed?.close();
  });

  it('one hung call does not stop status reports for good', { timeout: 180_000 }, async () => {
    bed = await TestBed.create('kube-deadline');
    const kube = await bed.kube('edge-hang');
    const api = new URL(kube.url);
    relay = await hangableRelay({ host: api.hostname, port: Number(api.port) });
    const kubeconfig = join(bed.dir, 'via-relay.kubeconfig');
    await writeFile(kubeconfig, kubeconfigYaml({ name: 'edge-hang', url: `https://127.0.0.1:${relay.port}`, caPem: kube.caPem, token: kube.token }), { mode: 0o600 });
    const hub = await bed.hub(['--auto-approve']);
    const agent = await startAgentProcess({
      name: 'edge-hang',
      parentUrl: hub.tunnel,
      caFile: hub.caFile,
      cacheDir: join(bed.dir, 'agents', 'edge-hang'),
      kubeconfig,
      logDir: bed.logDir,
      tracker: bed.tracker,
      args: ['--cluster-status-update-frequency=1s', '--cluster-lease-duration=6s'],
    });
    await until('edge-hang healthy', async () => (await hub.cluster('edge-hang'))?.status.healthz === true);
    // The reader's plain GETs bring the same facts the client library did.
    const healthy = await hub.cluster('edge-hang');
    expect(healthy?.status.k8sVersion).toBe(kube.version);
    expect(healthy?.status.platform).toMatch(/^linux\//);
    expect(healthy?.status.nodeStatistics).toBeDefined();
    expect(healthy?.status.readyz).toBe(true);

    // Every byte from the API server is now held, on open connections and new ones.
    relay.hang(true);
    await until('the hung reads reported as failing health', async () => (await hub.cluster('edge-hang'))?.status.healthz === false, 90_000);
    // The lease held throughout: no expiry.
    expect(await hub.metric('hawser_cluster_lease_expiries_total', { cluster: 'edge-hang' })).toBe(0);

    // Calls that went out while it hung stay hung for ever; only new ones get answers.
    relay.hang(false);
    await until('status reports resumed', async () => {
      const c = await hub.cluster('edge-hang');
      return c?.status.healthz === true && readyStatus(c) === 'True';
    }, 90_000);
    expect(agent.running).toBe(true);
  });
});
