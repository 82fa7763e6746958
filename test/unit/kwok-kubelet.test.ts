import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { criLogLine, kwokKubeletConfigYaml, makeKubeletTls, startKubeCluster, validateKubeletOptions } from '../../src/testkit/index.js';

describe('kwok kubelet endpoint config', () => {
  it('writes a KwokConfiguration and one cluster-wide rule per option, with kwok\'s field names', () => {
    const docs = parseAllDocuments(
      kwokKubeletConfigYaml({
        logsFile: '/tmp/a.log',
        attachFile: '/tmp/b.log',
        exec: { workDir: '/tmp/w', env: { A: '1' } },
        portForward: [{ podPorts: [8080], host: '127.0.0.1', port: 9000 }, { host: '127.0.0.1', port: 9001 }],
      }),
    ).map((d) => d.toJS() as { apiVersion: string; kind: string; spec?: unknown; options?: unknown });
    expect(docs.map((d) => `${d.apiVersion}/${d.kind}`)).toEqual([
      'config.kwok.x-k8s.io/v1alpha1/KwokConfiguration',
      'kwok.x-k8s.io/v1alpha1/ClusterLogs',
      'kwok.x-k8s.io/v1alpha1/ClusterAttach',
      'kwok.x-k8s.io/v1alpha1/ClusterExec',
      'kwok.x-k8s.io/v1alpha1/ClusterPortForward',
    ]);
    expect(docs[0]?.options).toEqual({ enableDebuggingHandlers: true });
    expect(docs[1]?.spec).toEqual({ logs: [{ logsFile: '/tmp/a.log', follow: true }] });
    expect(docs[2]?.spec).toEqual({ attaches: [{ logsFile: '/tmp/b.log' }] });
    expect(docs[3]?.spec).toEqual({ execs: [{ local: { workDir: '/tmp/w', envs: [{ name: 'A', value: '1' }] } }] });
    expect(docs[4]?.spec).toEqual({
      forwards: [{ ports: [8080], target: { address: '127.0.0.1', port: 9000 } }, { target: { address: '127.0.0.1', port: 9001 } }],
    });
  });

  it('refuses relative paths and bad ports, naming the field', () => {
    expect(() => validateKubeletOptions({ logsFile: 'rel.log' })).toThrow(/kubelet\.logsFile/);
    expect(() => validateKubeletOptions({ exec: { workDir: 'x' } })).toThrow(/kubelet\.exec\.workDir/);
    expect(() => validateKubeletOptions({ portForward: [{ host: '127.0.0.1', port: 0 }] })).toThrow(/kubelet\.portForward\[0\]\.port/);
    expect(() => validateKubeletOptions({ portForward: [{ host: '127.0.0.1', port: 1, podPorts: [70000] }] })).toThrow(/podPorts/);
    expect(() => validateKubeletOptions({ logsFile: '/abs.log', portForward: [{ host: '127.0.0.1', port: 80 }] })).not.toThrow();
  });

  it('startKubeCluster refuses kubelet without workloads', async () => {
    await expect(startKubeCluster({ name: 'nokubelet', kubelet: { logsFile: '/tmp/x.log' } })).rejects.toMatchObject({
      code: 'TESTKIT_INVALID_ARGUMENT',
    });
  });

  it('writes CRI log lines and refuses a newline inside one', () => {
    expect(criLogLine('hi', 'stderr', new Date('2026-01-02T03:04:05.678Z'))).toBe('2026-01-02T03:04:05.678Z stderr F hi\n');
    expect(() => criLogLine('a\nb')).toThrow(/newline/);
  });

  it('makes a serving certificate for 127.0.0.1 that its CA verifies and nothing else does', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hawser-kubelet-tls-'));
    try {
      const tlsFiles = await makeKubeletTls(join(dir, 'tls'));
      expect((await stat(tlsFiles.keyFile)).mode & 0o077).toBe(0);
      const [cert, key, ca] = await Promise.all([readFile(tlsFiles.certFile), readFile(tlsFiles.keyFile), readFile(tlsFiles.caFile)]);
      const server = createServer({ cert, key }, (s) => s.end('ok'));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const port = (server.address() as { port: number }).port;
      const handshake = (options: { ca?: Buffer }): Promise<string> =>
        new Promise((resolve, reject) => {
          const s = connect({ host: '127.0.0.1', port, ...options }, () => s.end());
          let body = '';
          s.on('data', (c: Buffer) => (body += c.toString('utf8')));
          s.on('end', () => resolve(body));
          s.on('error', reject);
        });
      try {
        expect(await handshake({ ca })).toBe('ok');
        await expect(handshake({})).rejects.toThrow(/certificate/i);
      } finally {
        await new Promise((resolve) => server.close(resolve));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
