import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { kubeconfigYaml, startToxiproxy, type Toxiproxy } from '../../src/testkit/index.js';
import { readyStatus, startAgentProcess, TestBed, until } from './harness.js';

// The agent's reads of its own cluster have deadlines: an API server that
// accepts and then never answers (toxiproxy's timeout toxic holds every byte)
// costs the status its health while it hangs, and status reports resume when
// it answers again. Meanwhile the lease keeps renewing.

describe('cluster reads with a hung API server', () => {
  let bed: TestBed;
  let toxi: Toxiproxy | undefined;

  afterAll(async () => {
    await toxi?.stop();
    await bed?.close();
  });

  it('one hung call does not stop status reports for good', { timeout: 180_000 }, async () => {
    bed = await TestBed.create('kube-deadline');
    const kube = await bed.kube('edge-hang');
    toxi = await startToxiproxy();
    const proxy = await toxi.createProxy('kube-edge-hang', new URL(kube.url).host);
    const kubeconfig = join(bed.dir, 'via-proxy.kubeconfig');
    await writeFile(kubeconfig, kubeconfigYaml({ name: 'edge-hang', url: `https://127.0.0.1:${proxy.port}`, caPem: kube.caPem, token: kube.token }), { mode: 0o600 });
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

    // Every byte from the API server is now held, on open connections and new ones.
    await proxy.addToxic({ type: 'timeout', name: 'hang', stream: 'downstream', attributes: { timeout: 0 } });
    await until('the hung reads reported as failing health', async () => (await hub.cluster('edge-hang'))?.status.healthz === false, 90_000);
    // The lease held throughout: no expiry.
    expect(await hub.metric('hawser_cluster_lease_expiries_total', { cluster: 'edge-hang' })).toBe(0);

    await proxy.removeToxic('hang');
    await until('status reports resumed', async () => {
      const c = await hub.cluster('edge-hang');
      return c?.status.healthz === true && readyStatus(c) === 'True';
    }, 90_000);
    expect(agent.running).toBe(true);
  });
});
