import { request } from 'node:https';
import { request as httpRequest } from 'node:http';
import type { V1Node, VersionInfo } from '@kubernetes/client-node';
import { ErrorCode, HawserError, type wire } from '../tunnel/index.js';
import type { KubeAccess } from './kubeconfig.js';
import { sumQuantities } from './quantity.js';

// What the agent reads from its own cluster. Behind an interface so the
// benchmark can run thousands of agents without thousands of API servers.

export interface ClusterReader {
  read(): Promise<wire.ClusterStatus>;
}

function nodeReadiness(node: V1Node): 'ready' | 'notReady' | 'unknown' {
  const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
  if (!ready || ready.status === 'Unknown') return 'unknown';
  return ready.status === 'True' ? 'ready' : 'notReady';
}

/**
 * Reads the cluster's facts with plain GETs. Every call has a deadline over the
 * whole exchange (not just an idle socket): one API server that accepts and
 * never answers, or trickles, must not hold a status read, and with it every
 * later status report, for ever while the lease keeps renewing.
 */
export class KubeClusterReader implements ClusterReader {
  readonly server: string;

  constructor(
    private readonly kc: KubeAccess,
    private readonly timeoutMs = 10_000,
  ) {
    this.server = kc.getCurrentCluster()!.server;
  }

  /** GET on the API server with the kubeconfig's credentials; returns status and body. */
  private async get(path: string): Promise<{ status: number; body: string }> {
    const url = new URL(path, this.server);
    const deadline = AbortSignal.timeout(this.timeoutMs);
    const options: import('node:https').RequestOptions = { method: 'GET', signal: deadline };
    await this.kc.applyToHTTPSOptions(options);
    const send = url.protocol === 'http:' ? httpRequest : request;
    return new Promise((resolve, reject) => {
      const timedOut = () => new HawserError(ErrorCode.Unavailable, `GET ${path} on ${this.server} got no answer within ${this.timeoutMs}ms`);
      const req = send(url, options, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err) => reject(deadline.aborted ? timedOut() : err));
      });
      req.on('error', (err) => reject(deadline.aborted ? timedOut() : err));
      req.end();
    });
  }

  /** GET that must answer 200 with JSON. */
  private async getJson<T>(path: string): Promise<T> {
    const r = await this.get(path);
    if (r.status !== 200) throw new HawserError(ErrorCode.Unavailable, `GET ${path} on ${this.server}: HTTP ${r.status}`);
    return JSON.parse(r.body) as T;
  }

  private async health(path: string): Promise<string> {
    try {
      const r = await this.get(path);
      return r.status === 200 ? r.body.trim() || 'ok' : `failed: HTTP ${r.status}`;
    } catch (err) {
      return `failed: ${(err as Error).message}`;
    }
  }

  private async serviceCidr(): Promise<string> {
    // networking.k8s.io/v1 ServiceCIDR (GA in 1.33) names the service range when the server has it.
    try {
      const r = await this.get('/apis/networking.k8s.io/v1/servicecidrs/kubernetes');
      if (r.status !== 200) return '';
      return ((JSON.parse(r.body) as { spec?: { cidrs?: string[] } }).spec?.cidrs ?? []).join(',');
    } catch {
      return '';
    }
  }

  async read(): Promise<wire.ClusterStatus> {
    const [version, nodes, healthz, livez, readyz, serviceCidr] = await Promise.all([
      this.getJson<VersionInfo>('/version'),
      this.getJson<{ items: V1Node[] }>('/api/v1/nodes'),
      this.health('/healthz'),
      this.health('/livez'),
      this.health('/readyz'),
      this.serviceCidr(),
    ]);
    const stats = { readyNodes: 0, notReadyNodes: 0, unknownNodes: 0 };
    for (const node of nodes.items) {
      const r = nodeReadiness(node);
      if (r === 'ready') stats.readyNodes++;
      else if (r === 'notReady') stats.notReadyNodes++;
      else stats.unknownNodes++;
    }
    return {
      k8sVersion: version.gitVersion,
      platform: version.platform,
      apiServerUrl: this.server,
      healthz,
      livez,
      readyz,
      nodeStatistics: stats,
      allocatable: sumQuantities(nodes.items.map((n) => n.status?.allocatable)),
      capacity: sumQuantities(nodes.items.map((n) => n.status?.capacity)),
      // The pod range is a controller-manager flag no API exposes; left empty rather than guessed.
      clusterCidr: '',
      serviceCidr,
      observedAtUnixMs: Date.now(),
    };
  }
}

/** Fixed facts, for benchmarks that run many agents with no cluster behind them. */
export class StaticClusterReader implements ClusterReader {
  constructor(private readonly status: wire.ClusterStatus) {}
  async read(): Promise<wire.ClusterStatus> {
    return { ...this.status, observedAtUnixMs: Date.now() };
  }
}
