// The real processes a fuzz run needs, started the way the integration tests
// start them (test/integration/harness.ts): a hub with its own CA over
// gRPC+TLS, and healthy agents beside real kube-apiservers.

import { readFile } from 'node:fs/promises';
import type { KubeCluster, ManagedProcess } from '../src/testkit/index.js';
import { bootstrapToken, type HubProcess, readyStatus, TestBed, until } from '../test/integration/harness.js';

export interface FuzzWorld {
  bed: TestBed;
  hub: HubProcess;
  caPem: string;
  bootstrapToken: string;
  maxFrameBytes: number;
  agents: Array<{ name: string; proc: ManagedProcess; kube: KubeCluster }>;
  close(): Promise<void>;
}

export interface WorldOptions {
  /** Healthy agents (each beside its own kube-apiserver and etcd). */
  agents: number;
  maxFrameBytes: number;
}

export async function startWorld(options: WorldOptions): Promise<FuzzWorld> {
  const bed = await TestBed.create('fuzz');
  try {
    const kubes = [];
    for (let i = 0; i < options.agents; i++) kubes.push(await bed.kube(`edge-healthy-${i}`));
    // --auto-approve: the fuzzer registers its own session clusters without an operator.
    const hub = await bed.hub(['--auto-approve', `--max-frame-bytes=${options.maxFrameBytes}`]);
    const caPem = await readFile(hub.caFile, 'utf8');
    const agents = [];
    for (const [i, kube] of kubes.entries()) {
      const name = `edge-healthy-${i}`;
      // Short status period and lease: a hub that stalls under the fuzz shows up as a lost lease.
      const proc = await bed.agent(name, hub, kube, ['--cluster-status-update-frequency=2s', '--cluster-lease-duration=15s']);
      agents.push({ name, proc, kube });
    }
    for (const { name } of agents) await until(`${name} ready`, async () => readyStatus(await hub.cluster(name)) === 'True', 120_000);
    return { bed, hub, caPem, bootstrapToken, maxFrameBytes: options.maxFrameBytes, agents, close: () => bed.close() };
  } catch (err) {
    await bed.close().catch(() => undefined);
    throw err;
  }
}
