import { execFile } from 'node:child_process';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, kubectl, startProcess, Tracker } from '../../src/testkit/index.js';
import { hawser, hawserBin, tempDir } from './harness.js';

// The main job (README's first command runs `hawser demo`): it brings up
// clusters, a hub and agents, and Ctrl-C takes every one of them down.

const run = promisify(execFile);

async function processesMentioning(text: string): Promise<Array<{ pid: number; line: string }>> {
  const { stdout } = await run('ps', ['-eo', 'pid=,stat=,args=']);
  return stdout
    .split('\n')
    .filter((l) => l.includes(text) && !/^\s*\d+\s+Z/.test(l))
    .map((line) => ({ pid: Number(line.trim().split(/\s+/)[0]), line }));
}

/** Every file below `dir`, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

describe('hawser demo (the main job)', () => {
  const tracker = new Tracker();
  let dir: Awaited<ReturnType<typeof tempDir>>;

  afterAll(async () => {
    await tracker.closeAll();
    await tracker.assertNoLeaks();
    await dir?.remove();
  });

  it('starts a hub and agents beside real kube-apiservers, keeps its secrets off command lines and out of logs, and stops them all on SIGINT', async () => {
    dir = await tempDir('demo');
    const dataDir = `${dir.path}/demo`;
    // Never the real ~/.hawser/config.
    const config = join(dir.path, 'home', '.hawser', 'config');
    const listen = await freePort({ tracker });
    const api = await freePort({ tracker });
    const demo = await startProcess({
      name: 'demo',
      command: process.execPath,
      args: [
        hawserBin,
        'demo',
        '--cluster=edge-1:environment=production,region=us-west',
        '--cluster=edge-2:environment=staging',
        `--data-dir=${dataDir}`,
        `--listen=127.0.0.1:${listen}`,
        `--api-address=127.0.0.1:${api}`,
      ],
      env: { HAWSER_CONFIG: config },
      logDir: dir.path,
      tracker,
    });
    await demo.waitFor(/Press Ctrl-C to stop everything/, { timeoutMs: 150_000, what: 'demo running' });
    // The first cluster shows Push (AppPusher on); the other registers Dual without the gate and runs as Pull.
    expect(demo.lines().join('\n')).toMatch(/edge-1\s+[0-9a-f-]{36}\s+Push\s+v1\.\d+\.\d+\s+ok\s+True/);
    expect(demo.lines().join('\n')).toMatch(/edge-2\s+[0-9a-f-]{36}\s+(Pull \(Dual asked\)|Dual)\s+v1\./);
    expect(demo.lines().join('\n')).toContain('sync modes: edge-1 Push (AppPusher=true');

    // clusters.json names what the examples ask to be filled in: ids, namespaces, labels, kubeconfigs.
    const clustersFile = join(dataDir, 'clusters.json');
    expect((await stat(clustersFile)).mode & 0o777).toBe(0o600);
    const records = JSON.parse(await readFile(clustersFile, 'utf8')) as Array<{ name: string; id: string; labels: Record<string, string>; dedicatedNamespace: string; kubeconfig: string }>;
    expect(records.map((r) => [r.name, r.labels])).toEqual([
      ['edge-1', { environment: 'production', region: 'us-west' }],
      ['edge-2', { environment: 'staging' }],
    ]);
    for (const r of records) {
      expect(r.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(r.dedicatedNamespace).toBe(`hawser-${r.id.slice(0, 8)}`);
      expect((await stat(r.kubeconfig)).isFile()).toBe(true);
    }
    expect(demo.lines().join('\n')).toContain(`bin/hawser.js get clusters`);
    // kubectl through the hub: the exact commands, and the demo operator bound to cluster-admin in each edge cluster.
    expect(demo.lines().join('\n')).toContain('bin/hawser.js kubeconfig edge-1 --output edge-1.kubeconfig');
    expect(demo.lines().join('\n')).toMatch(/kubectl --kubeconfig edge-1\.kubeconfig get ns/);
    for (const r of records) {
      const binding = await kubectl({ kubeconfigPath: r.kubeconfig, workDir: dir.path }, ['get', 'clusterrolebinding', 'hawser-operator-admin', '-o', 'jsonpath={.roleRef.name} {.subjects[0].kind}/{.subjects[0].name}']);
      expect(binding.stdout).toBe('cluster-admin User/admin');
    }

    // The demo made its context current: no hub, no token given.
    const cli = { HAWSER_CONFIG: config, HAWSER_TOKEN: undefined, HAWSER_HUB: undefined };
    const table = await hawser(['get', 'clusters'], cli);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^edge-2\s+/m);
    const approve = await hawser(['approve', 'edge-1'], cli);
    expect(approve.code).toBe(0);
    expect((await stat(config)).mode & 0o777).toBe(0o600);
    const operatorToken = /token: (\S+)/.exec(await readFile(config, 'utf8'))![1]!;

    // Beside the running demo, `hawser kubeconfig edge-1 > edge-1.kubeconfig` works with no token flag, and kubectl with it, unmodified.
    const printed = await hawser(['kubeconfig', 'edge-1'], cli);
    expect(printed.code).toBe(0);
    expect(printed.stderr).not.toContain(operatorToken);
    const kubeconfigFile = join(dir.path, 'edge-1.kubeconfig');
    await writeFile(kubeconfigFile, printed.stdout, { mode: 0o600 });
    const namespaces = await kubectl({ kubeconfigPath: kubeconfigFile, workDir: dir.path }, ['get', 'ns', '-o', 'name']);
    expect(namespaces.stdout).toContain('namespace/kube-system');

    const processes = await processesMentioning(dataDir);
    expect(processes.length).toBeGreaterThanOrEqual(5);
    // Each edge cluster runs workloads: controller manager, scheduler and kwok beside its apiserver.
    for (const component of ['kube-controller-manager', 'kube-scheduler', 'kwok']) {
      expect({ component, count: processes.filter((p) => p.line.includes(`/${component}.kubeconfig`)).length }).toEqual({ component, count: 2 });
    }
    // The bootstrap token reaches hub and agents by environment only.
    const hub = processes.find((p) => / hub --data-dir/.test(p.line))!;
    const hubEnv = (await readFile(`/proc/${hub.pid}/environ`, 'utf8')).split('\0');
    const bootstrapToken = hubEnv.find((e) => e.startsWith('HAWSER_BOOTSTRAP_TOKEN='))!.split('=')[1]!;
    expect(bootstrapToken).toMatch(/^[a-z0-9]{6}\.[a-z0-9]{16}$/);
    const credentialPattern = /hwc_[A-Za-z0-9_-]{20,}/;
    for (const p of [...processes, { pid: demo.pid!, line: 'demo' }]) {
      const cmdline = await readFile(`/proc/${p.pid}/cmdline`, 'utf8').catch(() => '');
      expect(cmdline).not.toContain(bootstrapToken);
      expect(cmdline).not.toContain(operatorToken);
      expect(cmdline).not.toMatch(credentialPattern);
    }

    demo.kill('SIGINT');
    const exit = await demo.exited;
    expect(exit.code).toBe(0);
    expect(demo.lines().join('\n')).toContain('stopped.');
    expect(await processesMentioning(dataDir)).toEqual([]);

    // Every log of the run, the demo's own output included: no secret, and only their owner reads them.
    const logDir = join(dataDir, 'logs');
    expect((await stat(logDir)).mode & 0o777).toBe(0o700);
    const logs = [...(await filesUnder(dataDir)).filter((f) => f.endsWith('.log') && !/\/\d+\.log$/.test(f)) /* LevelDB's write-ahead logs hold data, not log lines */, demo.logPath];
    expect(logs.length).toBeGreaterThanOrEqual(4);
    for (const log of logs) {
      const text = await readFile(log, 'utf8');
      expect({ log, bootstrap: text.includes(bootstrapToken) }).toEqual({ log, bootstrap: false });
      expect({ log, operator: text.includes(operatorToken) }).toEqual({ log, operator: false });
      expect({ log, credential: credentialPattern.exec(text)?.[0] }).toEqual({ log, credential: undefined });
    }
    // The demo's own logs (hub, agents, clusters, and its output) are 0600.
    const ownLogs = logs.filter((log) => log.startsWith(logDir) || log === demo.logPath);
    expect(ownLogs.length).toBeGreaterThanOrEqual(4);
    for (const log of ownLogs) expect({ log, mode: (await stat(log)).mode & 0o777 }).toEqual({ log, mode: 0o600 });
  });
});
