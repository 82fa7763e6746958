import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import {
  LeakError,
  ManagedProcess,
  TestkitError,
  TestkitErrorCode,
  assertNoLeaks,
  closeAll,
  freePort,
  httpsRequest,
  isPidAlive,
  isPortOpen,
  kubectl,
  requireTestbedBinary,
  startKubeCluster,
  startToxiproxy,
  type KubeCluster,
  type Toxiproxy,
} from '../../src/testkit/index.js';

const run = promisify(execFile);

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected the promise to reject, but it resolved');
}

describe('testkit: kube cluster and toxiproxy', () => {
  let cluster: KubeCluster | undefined;
  let toxi: Toxiproxy | undefined;

  // Each test starts what it needs if no earlier test did, so any one runs alone (-t).
  async function kubeCluster(): Promise<KubeCluster> {
    cluster ??= await startKubeCluster({ name: 'tk-a' });
    return cluster;
  }
  async function toxiproxy(): Promise<Toxiproxy> {
    toxi ??= await startToxiproxy();
    return toxi;
  }

  afterAll(async () => {
    await Promise.allSettled([cluster?.stop(), toxi?.stop()]);
    await closeAll();
  }, 60_000);

  it('starts etcd + kube-apiserver that answer /version and real kubectl', { timeout: 180_000 }, async () => {
    const cluster = await kubeCluster();
    console.log(`[testkit] kube cluster ${cluster.name} ready in ${cluster.startupMs} ms at ${cluster.url}`);
    expect(cluster.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(cluster.caPem).toContain('BEGIN CERTIFICATE');
    expect(cluster.etcd.running).toBe(true);
    expect(cluster.apiserver.running).toBe(true);

    const res = await httpsRequest(`${cluster.url}/version`, { ca: cluster.caPem, token: cluster.token });
    expect(res.status).toBe(200);
    const version = JSON.parse(res.body) as { gitVersion: string };
    expect(version.gitVersion).toBe(cluster.version);
    expect(cluster.version).toMatch(/^v1\.\d+\.\d+/);

    // A wrong token is refused: the token file is really in force.
    const denied = await httpsRequest(`${cluster.url}/api/v1/namespaces`, { ca: cluster.caPem, token: 'not-the-token' });
    expect(denied.status).toBe(401);

    // The testbed's kubectl, built from the same module: its client version is the server's.
    const client = JSON.parse((await kubectl(cluster, ['version', '--client', '-o', 'json'])).stdout) as { clientVersion: { gitVersion: string } };
    expect(client.clientVersion.gitVersion).toBe(cluster.version);
    expect(requireTestbedBinary('kubectl')).toMatch(/\/bin\/kubectl$/);
    expect(requireTestbedBinary('kubectl')).not.toBe('/usr/bin/kubectl');
    const { stdout } = await kubectl(cluster, ['get', 'namespaces', '-o', 'json']);
    const list = JSON.parse(stdout) as { items: Array<{ metadata: { name: string } }> };
    expect(list.items.map((ns) => ns.metadata.name)).toContain('default');

    // Its failures carry the code and kubectl's own words.
    const failed = await rejection(kubectl(cluster, ['get', 'namespace', 'no-such-namespace']));
    expect((failed as TestkitError).code).toBe(TestkitErrorCode.Kubectl);
    expect((failed as Error).message).toContain('no-such-namespace');
    // Without workloads, no controller manager, scheduler or kwok runs.
    expect(cluster.workloads).toBeUndefined();
  });

  it('proxies the API server through toxiproxy; disabling the proxy cuts it', { timeout: 180_000 }, async () => {
    const kube = await kubeCluster();
    const toxi = await toxiproxy();
    const apiPort = new URL(kube.url).port;
    const proxy = await toxi.createProxy('kube-tk-a', `127.0.0.1:${apiPort}`);
    expect(proxy.listen).toBe(`127.0.0.1:${proxy.port}`);

    const viaProxy = `https://127.0.0.1:${proxy.port}/version`;
    const opts = { ca: kube.caPem, token: kube.token, timeoutMs: 5_000 };
    const ok = await httpsRequest(viaProxy, opts);
    expect(ok.status).toBe(200);
    expect((JSON.parse(ok.body) as { gitVersion: string }).gitVersion).toBe(kube.version);

    await proxy.disable();
    const err = await rejection(httpsRequest(viaProxy, opts));
    expect(err).toBeInstanceOf(TestkitError);
    expect((err as TestkitError).code).toBe(TestkitErrorCode.Http);
    expect((await toxi.proxies())['kube-tk-a']?.enabled).toBe(false);

    await proxy.enable();
    expect((await httpsRequest(viaProxy, opts)).status).toBe(200);

    // A latency toxic delays every answer by at least its latency.
    const toxic = await proxy.addToxic({ type: 'latency', name: 'slow', stream: 'downstream', attributes: { latency: 300 } });
    expect(toxic).toMatchObject({ name: 'slow', type: 'latency', stream: 'downstream', toxicity: 1 });
    expect((await proxy.toxics()).map((t) => t.name)).toEqual(['slow']);
    const t0 = performance.now();
    expect((await httpsRequest(viaProxy, opts)).status).toBe(200);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
    const updated = await proxy.updateToxic('slow', { attributes: { latency: 50 } });
    expect(updated.attributes).toMatchObject({ latency: 50 });
    await proxy.removeToxic('slow');
    expect(await proxy.toxics()).toEqual([]);

    // The API's errors carry the status.
    const missing = await rejection(proxy.removeToxic('slow'));
    expect((missing as TestkitError).code).toBe(TestkitErrorCode.ToxiproxyApi);
    expect(missing).toMatchObject({ status: 404 });
  });

  it('stops everything and leaves no process or port behind', { timeout: 180_000 }, async () => {
    const kube = await kubeCluster();
    const proxy = await toxiproxy();
    const pids = [kube.etcd.pid, kube.apiserver.pid, proxy.process.pid];
    await kube.stop();
    await proxy.stop();
    cluster = undefined;
    toxi = undefined;
    for (const pid of pids) {
      expect(pid).toBeTypeOf('number');
      expect(isPidAlive(pid as number)).toBe(false);
    }
    await expect(run('ls', [kube.workDir])).rejects.toThrow();
    await assertNoLeaks();
  });
});

describe('testkit: processes and leak detection', () => {
  let logDir = '';
  afterAll(async () => {
    await closeAll();
    if (logDir) await rm(logDir, { recursive: true, force: true });
  });
  const dir = async (): Promise<string> => (logDir ||= await mkdtemp(join(tmpdir(), 'hawser-testkit-test-')));

  it('assertNoLeaks throws naming a tracked process that is still alive', { timeout: 30_000 }, async () => {
    const sleeper = await ManagedProcess.start({ name: 'sleeper', command: 'sleep', args: ['30'], logDir: await dir() });
    try {
      const err = await rejection(assertNoLeaks());
      expect(err).toBeInstanceOf(LeakError);
      expect((err as LeakError).code).toBe(TestkitErrorCode.Leak);
      expect((err as LeakError).leaks).toContainEqual(expect.objectContaining({ kind: 'process', name: 'sleeper', pid: sleeper.pid }));
      expect((err as Error).message).toContain(`"sleeper" (pid ${sleeper.pid})`);
    } finally {
      await sleeper.stop();
    }
    expect(sleeper.exitInfo).toEqual({ code: null, signal: 'SIGTERM' });
    await assertNoLeaks();
  });

  it('assertNoLeaks throws naming a tracked port that still listens', { timeout: 30_000 }, async () => {
    const port = await freePort({ owner: 'test listener' });
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    try {
      const err = await rejection(assertNoLeaks());
      expect((err as LeakError).leaks).toEqual([expect.objectContaining({ kind: 'port', port, name: 'test listener' })]);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    expect(await isPortOpen(port)).toBe(false);
    await assertNoLeaks();
  });

  it('waitFor matches a log line, and fails fast with the log tail when the process exits', { timeout: 30_000 }, async () => {
    const proc = await ManagedProcess.start({
      name: 'short-lived',
      command: 'sh',
      args: ['-c', 'echo starting; echo "listening on 1234" >&2; read -r _ ; echo boom; exit 3'],
      logDir: await dir(),
    });
    await proc.waitFor(/listening on \d+/, { timeoutMs: 10_000, what: 'listening line' });
    // The line was printed before this wait began: still found.
    await proc.waitFor('starting', { timeoutMs: 10_000, what: 'starting line' });
    const t0 = Date.now();
    // stdin is ignored, so `read` hits EOF and the script exits with 3.
    const err = await rejection(proc.waitFor(/never printed/, { timeoutMs: 20_000, what: 'a line that never comes' }));
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect((err as TestkitError).code).toBe(TestkitErrorCode.ProcessExited);
    expect((err as Error).message).toContain('a line that never comes');
    expect((err as Error).message).toContain('boom');
    expect(proc.exitInfo).toEqual({ code: 3, signal: null });
  });

  it('waitFor times out with what was awaited and the log tail', { timeout: 30_000 }, async () => {
    const proc = await ManagedProcess.start({ name: 'quiet', command: 'sh', args: ['-c', 'echo hello-from-quiet; exec sleep 30'], logDir: await dir() });
    try {
      await proc.waitFor('hello-from-quiet', { timeoutMs: 10_000, what: 'greeting' });
      const err = await rejection(proc.waitFor(() => false, { timeoutMs: 300, what: 'a condition that never holds' }));
      expect((err as TestkitError).code).toBe(TestkitErrorCode.Timeout);
      expect((err as Error).message).toContain('a condition that never holds');
      expect((err as Error).message).toContain('hello-from-quiet');
    } finally {
      await proc.stop();
    }
  });

  it('stop escalates to SIGKILL when SIGTERM is ignored; restart runs the same command again', { timeout: 30_000 }, async () => {
    const proc = await ManagedProcess.start({
      name: 'stubborn',
      command: process.execPath,
      args: ['-e', "process.on('SIGTERM', () => console.log('ignoring SIGTERM')); console.log('ready'); setInterval(() => {}, 1000);"],
      logDir: await dir(),
      stopGraceMs: 500,
    });
    await proc.waitFor('ready', { timeoutMs: 10_000, what: 'ready' });
    const firstPid = proc.pid;
    await proc.restart();
    expect(proc.pid).not.toBe(firstPid);
    expect(isPidAlive(firstPid as number)).toBe(false);
    await proc.waitFor('ready', { timeoutMs: 10_000, what: 'ready after restart' });
    const info = await proc.stop();
    expect(info.signal).toBe('SIGKILL');
    expect(proc.lines()).toContain('ignoring SIGTERM');
    await assertNoLeaks();
  });

  it('startKubeCluster refuses fake nodes without workloads, and bad node fields, before starting anything', async () => {
    const node = { name: 'n1', cpu: '2', memory: '4Gi', pods: 10 };
    const without = await rejection(startKubeCluster({ name: 'tk-bad', nodes: [node] }));
    expect((without as TestkitError).code).toBe(TestkitErrorCode.InvalidArgument);
    for (const bad of [{ ...node, cpu: 'two' }, { ...node, memory: '' }, { ...node, pods: 0 }, { ...node, name: 'Not_A_Name' }]) {
      const err = await rejection(startKubeCluster({ name: 'tk-bad', workloads: true, nodes: [bad] }));
      expect((err as TestkitError).code).toBe(TestkitErrorCode.InvalidArgument);
    }
    const none = await rejection(startKubeCluster({ name: 'tk-bad', workloads: true, nodes: [] }));
    expect((none as TestkitError).code).toBe(TestkitErrorCode.InvalidArgument);
    await assertNoLeaks();
  });

  it('a missing command or testbed binary fails with a clear error', async () => {
    const err = await rejection(ManagedProcess.start({ name: 'nope', command: 'hawser-no-such-binary', logDir: await dir() }));
    expect((err as TestkitError).code).toBe(TestkitErrorCode.SpawnFailed);
    const previous = process.env['HAWSER_TESTBED_DIR'];
    process.env['HAWSER_TESTBED_DIR'] = join(await dir(), 'no-testbed');
    try {
      expect(() => requireTestbedBinary('etcd')).toThrow(/scripts\/build-testbed\.sh/);
    } finally {
      if (previous === undefined) delete process.env['HAWSER_TESTBED_DIR'];
      else process.env['HAWSER_TESTBED_DIR'] = previous;
    }
  });
});
