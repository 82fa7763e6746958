import { X509Certificate } from 'node:crypto';
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KubeCluster, ManagedProcess } from '../../src/testkit/index.js';
import { hawser, type HubProcess, readyStatus, sampleValue, startAgentProcess, TestBed, until, viewerToken } from './harness.js';

// Certificate rotation under live agents, with real hub, agent and kube-apiserver processes.
// The agents are given the hub's ORIGINAL CA as --parent-ca-file and never anything else:
// after the rotation only the bundle the hub pushed over the tunnel lets them verify it.

interface PkiView {
  cas: Array<{ fingerprint: string; current: boolean }>;
  agents: Array<{ cluster: string; bundleVersionSent: number; upToDate: boolean }>;
  bundleVersion: number;
  servingCertificate: { fingerprint: string; issuerFingerprint: string };
}

/** Every JSON log line a process wrote, across restarts (its log file; the in-memory tail is short). */
async function logLines(proc: ManagedProcess): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(proc.logPath, 'utf8');
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The certificate the tunnel serves to a new handshake, and whether `ca` alone verifies it. */
function servedCertificate(port: number, ca: string): Promise<{ fingerprint: string; trusted: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ca, rejectUnauthorized: false, ALPNProtocols: ['h2'] }, () => {
      const peer = socket.getPeerX509Certificate();
      const result = { fingerprint: peer ? new X509Certificate(peer.raw).fingerprint256 : '', trusted: socket.authorized };
      socket.destroy();
      resolve(result);
    });
    socket.once('error', reject);
  });
}

describe('CA and serving certificate rotation under live agents', () => {
  let bed: TestBed;
  let kubes: KubeCluster[];
  let hub: HubProcess;
  let oldCaFile: string;
  const names = ['edge-rot-a', 'edge-rot-b', 'edge-rot-c'];
  const agents = new Map<string, ManagedProcess>();
  const agentArgs = ['--cluster-lease-duration=3s', '--cluster-status-update-frequency=1s', '--reconnect-period=200ms', '--max-reconnect-period=1s', '--register-timeout=5s'];

  beforeAll(async () => {
    bed = await TestBed.create('rotation');
    kubes = await Promise.all([bed.kube('edge-rot-1'), bed.kube('edge-rot-2')]);
    hub = await bed.hub(['--auto-approve']);
    oldCaFile = join(bed.dir, 'original-ca.crt');
    await copyFile(hub.caFile, oldCaFile);
    for (const [i, name] of names.entries()) {
      agents.set(
        name,
        await startAgentProcess({
          name,
          parentUrl: hub.tunnel,
          caFile: oldCaFile,
          cacheDir: cacheDir(name),
          kubeconfig: kubes[i % 2]!.kubeconfigPath,
          logDir: bed.logDir,
          tracker: bed.tracker,
          args: agentArgs,
        }),
      );
    }
  }, 180_000);

  afterAll(async () => {
    await bed?.close();
  });

  function cacheDir(name: string): string {
    return join(bed.dir, 'agents', name);
  }

  async function pki(): Promise<PkiView> {
    const res = await hub.api('GET', '/api/v1/pki', viewerToken);
    if (!res.ok) throw new Error(`GET /api/v1/pki: HTTP ${res.status}`);
    return (await res.json()) as PkiView;
  }

  /** The bundle an agent has durably stored, as fingerprints. */
  async function storedBundle(name: string): Promise<{ version: number; fingerprints: string[] } | undefined> {
    const text = await readFile(join(cacheDir(name), 'trust-bundle.json'), 'utf8').catch(() => undefined);
    if (text === undefined) return undefined;
    const file = JSON.parse(text) as { bundle: { version: number; caPems: string[] } };
    return { version: file.bundle.version, fingerprints: file.bundle.caPems.map((p) => new X509Certificate(p).fingerprint256) };
  }

  async function sessions(): Promise<Record<string, number>> {
    const text = await hub.metrics();
    return Object.fromEntries(names.map((n) => [n, sampleValue(text, 'hawser_hub_sessions_total', { cluster: n })]));
  }

  async function allReady(): Promise<boolean> {
    const clusters = await hub.clusters();
    return names.every((n) => readyStatus(clusters.find((c) => c.metadata.name === n)) === 'True');
  }

  it('rotates the CA, then the serving certificate, with no reconnect; redialled agents trust only what the hub pushed', async () => {
    await until('three agents ready', allReady, 120_000);
    const before = await sessions();
    expect(Object.values(before).every((v) => v >= 1)).toBe(true);
    const original = await pki();
    expect(original.cas).toHaveLength(1);
    const oldCa = await readFile(oldCaFile, 'utf8');
    const hubPid = hub.proc.pid;

    // A viewer may look but not rotate.
    expect((await hub.api('POST', '/api/v1/pki/ca/rotate', viewerToken)).status).toBe(403);

    const rotateCa = await hawser(['rotate', 'ca', '--hub', hub.apiUrl]);
    expect(rotateCa.stderr).toBe('');
    expect(rotateCa.code).toBe(0);
    const afterCa = await pki();
    expect(afterCa.cas).toHaveLength(2);
    const newCa = afterCa.cas.find((c) => c.current)!.fingerprint;
    expect(newCa).not.toBe(original.cas[0]!.fingerprint);
    // Still served with the old certificate: the overlap.
    expect(afterCa.servingCertificate.fingerprint).toBe(original.servingCertificate.fingerprint);

    // Every live agent stored the new bundle (both CAs) over its open tunnel.
    for (const name of names) {
      const stored = await until(`${name} stored the bundle`, async () => {
        const b = await storedBundle(name);
        return b?.version === afterCa.bundleVersion ? b : undefined;
      });
      expect(stored.fingerprints.sort()).toEqual(afterCa.cas.map((c) => c.fingerprint).sort());
    }

    // The hub shows every cluster was sent the new bundle: the serving certificate may follow.
    expect((await pki()).agents.filter((a) => names.includes(a.cluster) && a.upToDate).map((a) => a.cluster).sort()).toEqual([...names].sort());

    // Retiring the old CA while it still signs the serving certificate is refused.
    const early = await hawser(['rotate', 'ca', '--finish', '--hub', hub.apiUrl]);
    expect(early.code).not.toBe(0);
    expect(early.stderr).toContain('HAWSER_ROTATION_INCOMPLETE');

    const rotateServing = await hawser(['rotate', 'serving-cert', '--hub', hub.apiUrl]);
    expect(rotateServing.code).toBe(0);
    const afterServing = await pki();
    expect(afterServing.servingCertificate.issuerFingerprint).toBe(newCa);
    // Viewers see the same through the CLI.
    const shown = await hawser(['get', 'pki', '--hub', hub.apiUrl], { HAWSER_TOKEN: viewerToken });
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(newCa);
    expect(shown.stdout).toContain(afterServing.servingCertificate.fingerprint);
    expect(shown.stdout).toContain(`clusters sent this bundle: ${names.length}/${names.length}`);

    // New handshakes get the new certificate from the same process, which the old CA alone cannot verify.
    const served = await servedCertificate(hub.tunnelPort, oldCa);
    expect(served.fingerprint).toBe(afterServing.servingCertificate.fingerprint);
    expect(served.trusted).toBe(false);
    expect(hub.proc.pid).toBe(hubPid);

    // No reconnect storm: not one session more for any cluster, all still Ready.
    expect(await sessions()).toEqual(before);
    expect(await allReady()).toBe(true);

    // An agent with only the old CA and no stored bundle cannot trust the hub any more.
    const stranger = await startAgentProcess({
      name: 'edge-rot-stranger',
      parentUrl: hub.tunnel,
      caFile: oldCaFile,
      cacheDir: cacheDir('edge-rot-stranger'),
      kubeconfig: kubes[0]!.kubeconfigPath,
      logDir: bed.logDir,
      tracker: bed.tracker,
      args: agentArgs,
    });
    await until('the stranger refuses the hub', async () => (await logLines(stranger)).some((l) => JSON.stringify(l).includes('HAWSER_UNTRUSTED_HUB')));
    await stranger.stop();

    // Every agent must redial: the hub restarts. They verify the new certificate with the stored bundle.
    await hub.proc.restart();
    await until(
      'every agent back on the restarted hub',
      async () => {
        const s = await sessions();
        return names.every((n) => (s[n] ?? 0) >= 1) && (await allReady());
      },
      120_000,
    );
    for (const [name, agent] of agents) {
      expect((await logLines(agent)).some((l) => JSON.stringify(l).includes('HAWSER_UNTRUSTED_HUB')), name).toBe(false);
    }

    // Retire the old CA: agents get the one-CA bundle live, and still come back after their own restart.
    const finish = await hawser(['rotate', 'ca', '--finish', '--hub', hub.apiUrl]);
    expect(finish.code).toBe(0);
    const finished = await pki();
    expect(finished.cas.map((c) => c.fingerprint)).toEqual([newCa]);
    const sessionsBeforeAgentRestart = await sessions();
    for (const name of names) {
      await until(`${name} stored the finished bundle`, async () => (await storedBundle(name))?.version === finished.bundleVersion);
      expect((await storedBundle(name))!.fingerprints).toEqual([newCa]);
    }
    for (const agent of agents.values()) await agent.restart();
    await until(
      'every agent back after its own restart',
      async () => {
        const s = await sessions();
        return names.every((n) => (s[n] ?? 0) > (sessionsBeforeAgentRestart[n] ?? 0)) && (await allReady());
      },
      120_000,
    );

    // Each step was audited with the admin's name.
    const audits = (await logLines(hub.proc)).filter((l) => l.audit === true).map((l) => `${String(l.action)}:${String(l.user)}:${String(l.outcome)}`);
    expect(audits).toEqual(
      expect.arrayContaining(['rotate-ca:harness-admin:ok', 'finish-ca-rotation:harness-admin:failed', 'rotate-serving-cert:harness-admin:ok', 'finish-ca-rotation:harness-admin:ok']),
    );
  }, 300_000);
});
