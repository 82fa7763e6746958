import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { createCertificateAuthority, createServingCertificate, type wire } from '../src/tunnel/index.js';

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

/** A `hawser hub` process a benchmark started. */
export interface BenchHub {
  cp: ChildProcess;
  pid: number;
  /** host:port agents dial. */
  target: string;
  apiUrl: string;
  /** The CA agents trust when the hub generated its own certificate. */
  caFile: string;
  logFile: string;
  /** The admin operator's token the hub was started with. */
  operatorToken: string;
}

export interface BenchHubOptions {
  /** bin/hawser.js of the build to run. */
  bin: string;
  /** Holds data/, hub.log and operator-tokens (reused across restarts). */
  dir: string;
  bootstrapToken: string;
  operatorToken: string;
  /** Fixed ports (a restart keeps them); default: free ones. */
  ports?: { tunnel: number; api: number };
  /** Serving certificate; default: the hub generates one from its data dir. */
  pki?: { certFile: string; keyFile: string };
  /** node flags before the script (GC exposure, --cpu-prof). */
  nodeFlags?: readonly string[];
  /** hub flags after the common ones. */
  hubFlags?: readonly string[];
  logLevel?: string;
  /** A restart under many redialling agents on a loaded machine can take long to answer. */
  healthyWithinMs?: number;
  /** Sees the process as soon as it is spawned, so a benchmark can kill it on exit. */
  track?: (cp: ChildProcess) => void;
}

/** Starts a real hub with an admin operator and auto-approval, and waits until /healthz answers. */
export async function startBenchHub(o: BenchHubOptions): Promise<BenchHub> {
  mkdirSync(o.dir, { recursive: true });
  const ports = o.ports ?? { tunnel: await freePort(), api: await freePort() };
  const logFile = join(o.dir, 'hub.log');
  const operatorTokensFile = join(o.dir, 'operator-tokens');
  writeFileSync(operatorTokensFile, `operators: [{ name: bench, role: admin, token: ${o.operatorToken} }]\n`, { mode: 0o600 });
  const logFd = openSync(logFile, 'a');
  const cp = spawn(
    process.execPath,
    [
      ...(o.nodeFlags ?? []),
      o.bin,
      'hub',
      '--data-dir', join(o.dir, 'data'),
      '--listen', `127.0.0.1:${ports.tunnel}`,
      '--api-address', `127.0.0.1:${ports.api}`,
      '--auto-approve',
      '--operator-tokens-file', operatorTokensFile,
      ...(o.pki ? ['--tls-cert-file', o.pki.certFile, '--tls-key-file', o.pki.keyFile] : []),
      ...(o.hubFlags ?? []),
    ],
    // The bootstrap token goes by environment, never on a command line.
    { env: { ...process.env, HAWSER_LOG_LEVEL: o.logLevel ?? 'warn', HAWSER_BOOTSTRAP_TOKEN: o.bootstrapToken }, stdio: ['ignore', logFd, logFd] },
  );
  closeSync(logFd);
  o.track?.(cp);
  const apiUrl = `http://127.0.0.1:${ports.api}`;
  const withinMs = o.healthyWithinMs ?? 30_000;
  const deadline = Date.now() + withinMs;
  for (;;) {
    if (cp.exitCode !== null) throw new Error(`hub exited with ${cp.exitCode}:\n${logTail(logFile)}`);
    if (await fetch(`${apiUrl}/healthz`).then((r) => r.ok, () => false)) break;
    if (Date.now() > deadline) throw new Error(`hub not healthy within ${withinMs / 1000}s:\n${logTail(logFile)}`);
    await sleep(100);
  }
  return { cp, pid: cp.pid!, target: `127.0.0.1:${ports.tunnel}`, apiUrl, caFile: join(o.dir, 'data', 'pki', 'ca.crt'), logFile, operatorToken: o.operatorToken };
}

/** A request to the hub's API as its admin operator (YAML bodies); the response text, or an error naming the status. */
export async function benchApi(hub: BenchHub, method: string, path: string, body?: string): Promise<string> {
  const res = await fetch(`${hub.apiUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${hub.operatorToken}`, ...(body ? { 'content-type': 'application/yaml' } : {}) },
    ...(body ? { body } : {}),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 500)}`);
  return text;
}

/** The end of a log file, for an error message. */
export function logTail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Files of a bench CA and the hub's serving certificate for loopback. */
export interface BenchPki {
  caFile: string;
  certFile: string;
  keyFile: string;
}

export async function makeBenchPki(dir: string): Promise<BenchPki> {
  mkdirSync(dir, { recursive: true });
  const ca = await createCertificateAuthority('hawser-bench-ca');
  const serving = await createServingCertificate(ca, ['localhost', '127.0.0.1', '::1']);
  const pki = { caFile: join(dir, 'ca.crt'), certFile: join(dir, 'hub.crt'), keyFile: join(dir, 'hub.key') };
  writeFileSync(pki.caFile, ca.certPem);
  writeFileSync(pki.certFile, serving.certPem);
  writeFileSync(pki.keyFile, serving.keyPem, { mode: 0o600 });
  return pki;
}
