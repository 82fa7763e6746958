import { cp, readFile, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import type { ManagedCluster } from '../../src/api/index.js';
import {
  freePort,
  type KubeCluster,
  kubectl,
  type ManagedProcess,
  startToxiproxy,
  type Toxiproxy,
  type ToxiproxyProxy,
  type Tracker,
  waitUntil,
} from '../../src/testkit/index.js';
import { hawser, type HubProcess, repoRoot, TestBed, until } from './harness.js';

// A hub and N child clusters that really run workloads (kube-controller-manager,
// kube-scheduler, kwok nodes), each with its agent, started once per test
// file: a cluster costs an etcd, a kube-apiserver and three more processes.
// An agent dials the hub directly, through a toxiproxy (to cut its link), or
// through a CountingRelay (to count the bytes on its wire).

export const examplesDir = resolve(repoRoot, '../shared/examples/clusternet');

export type Link = 'direct' | 'toxiproxy' | 'relay';

export interface MemberSpec {
  name: string;
  labels: Record<string, string>;
  link?: Link;
  /** Appended to the agent's flags. */
  agentArgs?: string[];
}

export interface Member {
  name: string;
  kube: KubeCluster;
  agent: ManagedProcess;
  /** As the hub registered it: its clusterId and dedicated namespace. */
  cluster: ManagedCluster;
  proxy?: ToxiproxyProxy;
  relay?: CountingRelay;
}

/**
 * A TCP relay between an agent and the hub that counts the bytes it carries
 * each way (TLS records of the real gRPC connection), and can cut the link:
 * open connections are destroyed and new ones refused until restore().
 */
export class CountingRelay {
  /** Bytes hub -> agent. */
  downstream = 0;
  /** Bytes agent -> hub. */
  upstream = 0;
  /** Connections accepted and forwarded. */
  connections = 0;
  private cut = false;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(upstreamPort: number, tracker: Tracker): Promise<CountingRelay> {
    const port = await freePort({ owner: 'counting relay', tracker });
    const server = createServer();
    const relay = new CountingRelay(server, port);
    server.on('connection', (client) => relay.accept(client, upstreamPort));
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen(port, '127.0.0.1', ok);
    });
    return relay;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  private accept(client: Socket, upstreamPort: number): void {
    if (this.cut) {
      client.destroy();
      return;
    }
    this.connections++;
    const hub = connect(upstreamPort, '127.0.0.1');
    for (const s of [client, hub]) {
      this.sockets.add(s);
      s.on('close', () => {
        this.sockets.delete(s);
        client.destroy();
        hub.destroy();
      });
      s.on('error', () => {});
    }
    client.on('data', (chunk: Buffer) => {
      this.upstream += chunk.length;
      hub.write(chunk);
    });
    hub.on('data', (chunk: Buffer) => {
      this.downstream += chunk.length;
      client.write(chunk);
    });
  }

  /** Destroys every open connection and refuses new ones. */
  cutLink(): void {
    this.cut = true;
    for (const s of this.sockets) s.destroy();
  }

  restore(): void {
    this.cut = false;
  }

  async close(): Promise<void> {
    this.cutLink();
    await new Promise<void>((ok) => this.server.close(() => ok()));
  }
}

export class Fleet {
  private readonly members = new Map<string, Member>();

  private constructor(
    readonly bed: TestBed,
    readonly hub: HubProcess,
    private readonly toxi: Toxiproxy | undefined,
  ) {}

  /**
   * Starts the clusters (in parallel), the hub (auto-approving), and one agent
   * per cluster, and waits until every cluster is registered and Ready.
   */
  static async start(prefix: string, specs: MemberSpec[], options: { hubArgs?: string[] } = {}): Promise<Fleet> {
    const bed = await TestBed.create(prefix);
    try {
      const needsToxi = specs.some((s) => s.link === 'toxiproxy');
      const [kubes, toxi] = await Promise.all([
        Promise.all(specs.map((s) => bed.kube(s.name, { workloads: true, startTimeoutMs: 480_000 }))),
        needsToxi ? startToxiproxy({ baseDir: bed.dir, tracker: bed.tracker }) : Promise.resolve(undefined),
      ]);
      const hub = await bed.hub(['--auto-approve', ...(options.hubArgs ?? [])]);
      const fleet = new Fleet(bed, hub, toxi);
      await Promise.all(
        specs.map(async (spec, i) => {
          const kube = kubes[i]!;
          let parentUrl = hub.tunnel;
          let proxy: ToxiproxyProxy | undefined;
          let relay: CountingRelay | undefined;
          if (spec.link === 'toxiproxy') {
            proxy = await toxi!.createProxy(`hub-${spec.name}`, hub.tunnel);
            parentUrl = proxy.listen;
          } else if (spec.link === 'relay') {
            relay = await CountingRelay.start(hub.tunnelPort, bed.tracker);
            parentUrl = relay.address;
          }
          const labels = Object.entries(spec.labels).map(([k, v]) => `${k}=${v}`).join(',');
          const agent = await bed.agent(
            spec.name,
            hub,
            kube,
            ['--reconnect-period=200ms', '--max-reconnect-period=1s', ...(labels ? [`--cluster-labels=${labels}`] : []), ...(spec.agentArgs ?? [])],
            parentUrl,
          );
          const cluster = await until(
            `${spec.name} registered and Ready`,
            async () => {
              const c = await hub.cluster(spec.name);
              return c?.metadata.namespace && c.status.conditions.some((x) => x.type === 'Ready' && x.status === 'True') ? c : undefined;
            },
            120_000,
          );
          fleet.members.set(spec.name, { name: spec.name, kube, agent, cluster, ...(proxy ? { proxy } : {}), ...(relay ? { relay } : {}) });
        }),
      );
      return fleet;
    } catch (error) {
      await bed.close().catch(() => {});
      throw error;
    }
  }

  member(name: string): Member {
    const m = this.members.get(name);
    if (!m) throw new Error(`no member ${name}`);
    return m;
  }

  get all(): Member[] {
    return [...this.members.values()];
  }

  /** The real CLI against this hub, as the admin. */
  cli(args: string[]): ReturnType<typeof hawser> {
    return hawser([...args, `--hub=${this.hub.apiUrl}`]);
  }

  /** The CLI's stdout; throws (with stderr) unless it exits 0 with nothing on stderr. */
  async ok(args: string[]): Promise<string> {
    const r = await this.cli(args);
    if (r.code !== 0 || r.stderr !== '') throw new Error(`hawser ${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    return r.stdout;
  }

  async subscription<T = Record<string, unknown>>(name: string, namespace = 'default'): Promise<T> {
    return JSON.parse(await this.ok(['get', 'subscription', name, '-n', namespace, '-o', 'json'])) as T;
  }

  /** The testbed's kubectl against a member's cluster. */
  async kubectl(name: string, args: string[], input?: string): Promise<string> {
    return (await kubectl(this.member(name).kube, args, input === undefined ? {} : { input })).stdout;
  }

  /** An object from a member's cluster as JSON, or undefined when it is not there. */
  async object<T = KubeJson>(name: string, kind: string, objectName: string, namespace?: string): Promise<T | undefined> {
    const out = await this.kubectl(name, ['get', kind, objectName, ...(namespace ? ['-n', namespace] : []), '-o', 'json', '--ignore-not-found']);
    return out.trim() === '' ? undefined : (JSON.parse(out) as T);
  }

  /** Polls a member's cluster with kubectl (1 s apart: each call is a process) until `check` gives a value. */
  eventually<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 180_000): Promise<T> {
    return waitUntil(async () => (await check()) || undefined, { timeoutMs, what, intervalMs: 1_000 }) as Promise<T>;
  }

  /** A copy of an example directory with the ids and namespaces its comments ask to replace. */
  async example(dir: string, replace: Record<string, string> = {}): Promise<string> {
    const target = join(this.bed.dir, 'examples', `${dir}-${Date.now()}`);
    await cp(join(examplesDir, dir), target, { recursive: true });
    for (const file of ['subscription.yaml', 'localization.yaml', 'globalization.yaml']) {
      const path = join(target, file);
      const text = await readFile(path, 'utf8').catch(() => undefined);
      if (text === undefined) continue;
      let replaced = text;
      for (const [from, to] of Object.entries(replace)) replaced = replaced.replaceAll(from, to);
      await writeFile(path, replaced);
    }
    return target;
  }

  async close(): Promise<void> {
    for (const m of this.members.values()) await m.relay?.close();
    await this.toxi?.stop();
    await this.bed.close();
  }
}

export interface KubeJson {
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
  data?: Record<string, string>;
}

export interface DeploymentJson extends KubeJson {
  spec: { replicas: number; template: { spec: { containers: Array<{ name: string; image: string }> } } };
  status?: { replicas?: number; readyReplicas?: number; availableReplicas?: number };
}
