import { spawn } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  assertNoLeaks,
  closeAll,
  criLogLine,
  freePort,
  isPidAlive,
  kubectl,
  requireTestbedBinary,
  startKubeCluster,
  startKubectl,
  waitUntil,
  type KubeCluster,
} from '../../src/testkit/index.js';

// kwok as the fake nodes' kubelet endpoint: the testbed's kubectl talks to the
// child kube-apiserver, which talks HTTPS to kwok, which reads a log file this
// test writes, runs exec'd commands locally and forwards pod ports to a TCP
// server this test runs.

const POD = 'kubelet-pod';
const POD_PORT = 8080;

interface Env {
  cluster: KubeCluster;
  dir: string;
  logsFile: string;
  attachFile: string;
  workDir: string;
  server: Server;
  /** Everything the TCP server received, per connection. */
  received: string[];
}

/** A TCP server that answers each chunk with "pong:<chunk>" and records what it got. */
async function startPongServer(received: string[]): Promise<{ server: Server; port: number }> {
  const server = createServer((socket: Socket) => {
    const i = received.push('') - 1;
    socket.on('data', (chunk: Buffer) => {
      received[i] += chunk.toString('utf8');
      socket.write(`pong:${chunk.toString('utf8')}`);
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('pong server has no port');
  return { server, port: addr.port };
}

function podManifest(): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: POD, namespace: 'default' },
    spec: { containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10', ports: [{ containerPort: POD_PORT }] }] },
  });
}

describe('testkit: kwok serves the kubelet endpoint (logs, exec, port-forward) to the child kube-apiserver', () => {
  let env: Env | undefined;
  const cleanups: Array<() => Promise<unknown>> = [];

  async function setup(): Promise<Env> {
    if (env) return env;
    // realpath: exec's `pwd` prints the resolved directory.
    const dir = await realpath(await mkdtemp(join(tmpdir(), 'hawser-kubelet-test-')));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const logsFile = join(dir, 'app.log');
    const workDir = join(dir, 'exec');
    const attachFile = join(dir, 'attach.log');
    await writeFile(logsFile, '');
    await writeFile(attachFile, criLogLine('written before attach'));
    await mkdir(workDir);
    const received: string[] = [];
    const { server, port } = await startPongServer(received);
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    const cluster = await startKubeCluster({
      name: 'kubelet',
      workloads: true,
      nodes: [{ name: 'kubelet-node-1', cpu: '2', memory: '4Gi', pods: 10 }],
      kubelet: { logsFile, attachFile, exec: { workDir }, portForward: [{ podPorts: [POD_PORT], host: '127.0.0.1', port }] },
    });
    cleanups.unshift(() => cluster.stop());
    await kubectl(cluster, ['apply', '-f', '-'], { input: podManifest() });
    await waitUntil(
      async () => {
        const { stdout } = await kubectl(cluster, ['get', 'pod', POD, '-n', 'default', '-o', 'jsonpath={.status.phase}']);
        return stdout === 'Running';
      },
      { timeoutMs: 60_000, what: `pod ${POD} Running`, intervalMs: 250 },
    );
    env = { cluster, dir, logsFile, attachFile, workDir, server, received };
    return env;
  }

  afterAll(async () => {
    for (const c of cleanups.splice(0)) await c();
    await closeAll();
  }, 90_000);

  it('the fake node advertises 127.0.0.1 and kwok\'s port as its kubelet endpoint', { timeout: 300_000 }, async () => {
    const { cluster } = await setup();
    const { stdout } = await kubectl(cluster, ['get', 'node', 'kubelet-node-1', '-o', 'json']);
    const node = JSON.parse(stdout) as {
      status: { addresses: Array<{ type: string; address: string }>; daemonEndpoints: { kubeletEndpoint: { Port: number } } };
    };
    expect(node.status.addresses).toContainEqual({ type: 'InternalIP', address: '127.0.0.1' });
    expect(node.status.daemonEndpoints.kubeletEndpoint.Port).toBeGreaterThan(0);
    expect(cluster.apiserver.running).toBe(true);
  });

  it('kubectl logs returns the log file\'s lines', { timeout: 300_000 }, async () => {
    const { cluster, logsFile } = await setup();
    await appendFile(logsFile, criLogLine('first line') + criLogLine('second line', 'stderr'));
    const { stdout } = await kubectl(cluster, ['logs', POD, '-n', 'default']);
    expect(stdout).toBe('first line\nsecond line\n');
  });

  it('kubectl logs -f streams a line appended after it started', { timeout: 300_000 }, async () => {
    const { cluster, logsFile } = await setup();
    await appendFile(logsFile, criLogLine('before follow'));
    const follow = await startKubectl(cluster, ['logs', '-f', POD, '-n', 'default'], { name: 'kubectl-logs-f' });
    try {
      await follow.waitFor(/^before follow$/, { timeoutMs: 60_000, what: 'logs -f prints the existing lines' });
      expect(follow.lines()).not.toContain('appended while following');
      await appendFile(logsFile, criLogLine('appended while following'));
      await follow.waitFor(/^appended while following$/, { timeoutMs: 60_000, what: 'logs -f prints the appended line' });
      expect(follow.running).toBe(true);
    } finally {
      await follow.stop();
    }
  });

  it('kubectl attach streams what is appended to the attach file after it attached', { timeout: 300_000 }, async () => {
    const { cluster, attachFile } = await setup();
    const attach = await startKubectl(cluster, ['attach', POD, '-n', 'default'], { name: 'kubectl-attach' });
    try {
      // kubectl says nothing when the stream is up, and kwok attaches at the
      // file's end: append numbered lines until one comes through.
      let n = 0;
      const seen = await waitUntil(
        async () => {
          await appendFile(attachFile, criLogLine(`tick ${++n}`));
          return attach.lines().find((l) => /^tick \d+$/.test(l));
        },
        { timeoutMs: 60_000, what: 'kubectl attach prints an appended line', intervalMs: 250, context: () => attach.tail(10) },
      );
      expect(Number(seen.slice('tick '.length))).toBeGreaterThan(0);
      expect(attach.lines()).not.toContain('written before attach');
      expect(attach.running).toBe(true);
    } finally {
      await attach.stop();
    }
  });

  it('kubectl exec -i runs a local command: stdin reaches it, its stdout comes back, pwd is the configured dir', { timeout: 300_000 }, async () => {
    const { cluster, workDir } = await setup();
    // kwok v0.7.0 never closes the command's stdin when the client's stdin ends
    // (pkg/utils/exec: io.Copy into cmd.StdinPipe, no Close), so a command that
    // reads to EOF never exits; `head -c N` stops after N bytes.
    const data = `hello through the kubelet ${'x'.repeat(100_000)}\nline two\n`;
    const head = await kubectl(cluster, ['exec', '-i', POD, '-n', 'default', '--', 'head', '-c', String(Buffer.byteLength(data))], {
      input: data,
    });
    expect(head.stdout).toBe(data);
    const pwd = await kubectl(cluster, ['exec', POD, '-n', 'default', '--', 'pwd']);
    expect(pwd.stdout).toBe(`${workDir}\n`);
    await expect(kubectl(cluster, ['exec', POD, '-n', 'default', '--', 'sh', '-c', 'exit 3'])).rejects.toMatchObject({
      code: 'TESTKIT_KUBECTL',
    });
  });

  it('kubectl exec -i POD -- cat echoes each chunk of stdin while it runs', { timeout: 300_000 }, async () => {
    const { cluster } = await setup();
    const child = spawn(
      requireTestbedBinary('kubectl'),
      ['--kubeconfig', cluster.kubeconfigPath, '--cache-dir', join(cluster.workDir, 'kubectl-cache'), 'exec', '-i', POD, '-n', 'default', '--', 'cat'],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    child.stdin.on('error', () => {});
    try {
      child.stdin.write('first chunk\n');
      await waitUntil(() => out === 'first chunk\n', { timeoutMs: 60_000, what: 'cat echoes the first chunk', context: () => err });
      child.stdin.write('second chunk\n');
      await waitUntil(() => out === 'first chunk\nsecond chunk\n', { timeoutMs: 60_000, what: 'cat echoes the second chunk', context: () => err });
      expect(child.exitCode).toBeNull();
    } finally {
      // cat would wait for an EOF kwok never passes on (see above): end kubectl.
      child.kill('SIGTERM');
      await exited;
    }
  });

  it('kubectl port-forward reaches the TCP server behind the pod port, data both ways', { timeout: 300_000 }, async () => {
    const { cluster, received } = await setup();
    const local = await freePort({ owner: 'kubectl port-forward (test)' });
    const forward = await startKubectl(cluster, [
      'port-forward',
      '-n',
      'default',
      '--address',
      '127.0.0.1',
      `pod/${POD}`,
      `${local}:${POD_PORT}`,
    ], { name: 'kubectl-port-forward' });
    try {
      await forward.waitFor(new RegExp(`Forwarding from 127\\.0\\.0\\.1:${local} -> ${POD_PORT}`), {
        timeoutMs: 60_000,
        what: 'kubectl port-forward listening',
      });
      const socket = connect({ host: '127.0.0.1', port: local });
      let answer = '';
      socket.on('data', (c: Buffer) => (answer += c.toString('utf8')));
      socket.on('error', () => {});
      socket.write('ping-through-kubelet');
      await waitUntil(() => answer === 'pong:ping-through-kubelet', { timeoutMs: 60_000, what: 'the answer through port-forward' });
      expect(received).toContain('ping-through-kubelet');
      socket.destroy();
    } finally {
      await forward.stop();
    }
  });

  it('stops kwok with the cluster and leaves nothing behind', { timeout: 120_000 }, async () => {
    const { cluster } = await setup();
    const kwokPid = cluster.workloads?.kwok.pid;
    await cluster.stop();
    expect(kwokPid).toBeTypeOf('number');
    expect(isPidAlive(kwokPid as number)).toBe(false);
    for (const c of cleanups.splice(0)) await c();
    env = undefined;
    await assertNoLeaks();
  });
});
