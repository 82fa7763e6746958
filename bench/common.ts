import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import type { wire } from '../src/tunnel/index.js';

// Shared by bench/agents.ts (the orchestrator) and the processes it forks:
// bench/agent-swarm.ts (many agents or baseline clients) and
// bench/baseline-server.ts (the bare gRPC server).

/** Parent -> swarm: start `count` agents (or baseline clients) through a counting relay to `target`. */
export interface SwarmStart {
  type: 'start';
  mode: 'hawser' | 'baseline';
  /** host:port of the hub tunnel or the baseline server; the swarm's relay dials it. */
  target: string;
  caFile: string;
  /** Agents are named bench-<first+1 ... first+count>, zero-padded to 5 digits. */
  first: number;
  count: number;
  /** New connections per second for this swarm. */
  rampPerSec: number;
  /** Each agent's offline cache lives in <cacheRoot>/<name>. */
  cacheRoot: string;
  bootstrapToken: string;
  statusFrequencyMs: number;
  leaseDurationMs: number;
  keepaliveTimeMs: number;
  keepaliveTimeoutMs: number;
  registerTimeoutMs: number;
  reconnectPeriodMs: number;
  maxReconnectPeriodMs: number;
}

export interface SwarmSampleRequest {
  type: 'sample';
  id: number;
}

export type ToSwarm = SwarmStart | SwarmSampleRequest;

export interface SwarmStats {
  type: 'stats';
  /** Set when answering a sample request. */
  id?: number;
  started: number;
  ready: number;
  /** Times an agent left the ready state (a dropped session). */
  drops: number;
  /** Why sessions ended or failed, by error code. */
  errors: Record<string, number>;
  /** TCP payload bytes through the relay: in = agent -> server, out = server -> agent. */
  relayIn: number;
  relayOut: number;
  relayConnections: number;
  /** Epoch ms of the first connection attempt, and of the moment all `count` were ready (first time). */
  rampStartedAt?: number;
  allReadyAt?: number;
}

export type FromSwarm = SwarmStats | { type: 'fatal'; message: string };

export type FromBaselineServer =
  | { type: 'listening'; port: number }
  | { type: 'stats'; streams: number }
  | { type: 'fatal'; message: string };

/** The bare server's one method; its messages are opaque bytes. */
export const baselinePath = '/hawser.bench.Baseline/Hold';

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** VmRSS of a process in bytes (Linux). */
export function readRssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

/** User + system CPU time of a process in ms (clock ticks assumed 100/s, the Linux default). */
export function readCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Machine-wide CPU jiffies from /proc/stat: all, and those idle or waiting for I/O. */
export function readMachineCpu(): { total: number; idle: number; iowait: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return { total, idle: v[3]!, iowait: v[4]! };
}

/** MemAvailable of the machine in bytes. */
export function memAvailableBytes(): number {
  const m = /^MemAvailable:\s+(\d+)\s+kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

/** A loopback port that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const a = s.address();
      s.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

export function agentName(index: number): string {
  return `bench-${String(index + 1).padStart(5, '0')}`;
}

/** What every bench agent reports (StaticClusterReader): a plausible 3-node cluster. */
export const benchClusterStatus: wire.ClusterStatus = {
  k8sVersion: 'v1.33.1',
  platform: 'linux/amd64',
  apiServerUrl: 'https://10.0.0.1:6443',
  healthz: 'ok',
  livez: 'ok',
  readyz: 'ok',
  nodeStatistics: { readyNodes: 3, notReadyNodes: 0, unknownNodes: 0 },
  allocatable: { cpu: '11700m', memory: '46Gi', pods: '330', 'ephemeral-storage': '180Gi' },
  capacity: { cpu: '12', memory: '48Gi', pods: '330', 'ephemeral-storage': '200Gi' },
  clusterCidr: '',
  serviceCidr: '10.96.0.0/12',
  observedAtUnixMs: 0,
};

/** The checkout a compiled benchmark runs from (its package.json says hawser). */
export function findRepoRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'hawser') return dir;
    if (dirname(dir) === dir) throw new Error(`no hawser package.json above ${from}`);
  }
}

/**
 * The p-th percentile (0 < p <= 100) of `values` by nearest rank: the smallest
 * value with at least p % of the values at or below it, so always one of the
 * values measured. NaN for no values.
 */
export function percentile(values: readonly number[], p: number): number {
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile: p must be in (0, 100], got ${p}`);
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.ceil((p / 100) * sorted.length) - 1]!;
}

/** a / b, or NaN when either is not a finite number or b is not positive. */
export function ratio(a: number, b: number): number {
  return Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : Number.NaN;
}
