// bench/agents: what one hub pays per connected agent, in memory and on the wire.
//
//   npm run bench:agents -- --agents 100,1000,5000 --window 60s
//
// For each N it runs two phases, one after the other on the same machine:
//
//   baseline  a bare grpc-js server (bench/baseline-server.ts) with the hub's
//             TLS certificate and server options, holding N idle bidi streams
//             from N clients that use the agent's channel options and
//             keepalive. What any gRPC server pays to hold N TLS connections.
//   hawser    the real hub (`node bin/hawser.js hub`, HAWSER_LOG_LEVEL=warn,
//             --auto-approve, 90 s lease) and N real agents (startAgent with a
//             StaticClusterReader, status every 30 s, 90 s lease: one
//             heartbeat every 30 s acked within 10 s, keepalive as the agent's
//             defaults, own LevelDB cache each).
//
// Both sides of both phases are measured the same way, and the table prints
// hawser / baseline ratios (project rule: no absolute thresholds).
//
// Choices:
// - Clients run in forked swarm processes (bench/agent-swarm.ts), up to
//   --per-worker (1000) each, started at --ramp connections per second in
//   total (default 40/s). A connection costs the clients about twice what it
//   costs the hub, and both share this machine's 2 cores: offered 100/s, the
//   backlog outgrew the agents' 30 s register timeout beyond ~4,600 agents
//   and the retries snowballed; at 40/s 10,000 connect without a timeout.
//   So "connect" time is mostly the ramp; "CPU ms/conn" is the hub's cost.
// - Bytes are real wire bytes: each swarm runs a TCP relay its clients dial,
//   counting TLS payload both ways (HTTP/2, gRPC, keepalive pings, TLS record
//   overhead; TCP/IP headers excluded). One relay per swarm rather than one
//   in this process: 10,000 agents through one relay need 20,000 sockets,
//   over the 20,000 open-file limit here. Counted over --window after all
//   clients are connected plus --settle, so registration is excluded.
// - RSS: VmRSS of the server process, read twice: idle (before any client)
//   and loaded (end of the window), each after forced full GCs (repeated
//   until RSS holds still: bytecode is flushed only after several). The
//   measured processes get --expose-gc and a preload (bench/gc-on-signal.ts)
//   that collects on SIGUSR2; the hub is otherwise the shipped CLI. Reported:
//   RSS/conn = (loaded - idle) / connected, and "as found" = (highest RSS seen
//   in the window without forcing GC - idle) / connected, which includes the
//   garbage heartbeats leave between collections.
//   The window puts one full heartbeat period of churn between connecting
//   and reading. Small N (100) is within noise of a Node process's RSS.
// - One PKI made here (CA + serving certificate from src/tunnel) serves both
//   phases: the hub gets it through --tls-cert-file/--tls-key-file, agents
//   trust the CA, so TLS is identical (ECDSA P-256) in both phases.
// - Swarms run at nice 19: on 2 cores, 10,000 clients' TLS handshakes and
//   retries would otherwise take most of the CPU from the server under test
//   and its measured connect time would be the clients' (same in both phases).
// - Agent defaults, except --max-reconnect-period (60 s instead of 5 min) so
//   that an agent refused under load comes back within the run.
// - A phase stops ramping when MemAvailable falls below --min-free-mem, or
//   when not all are connected after --connect-timeout; it is then measured
//   with those that connected and marked incomplete, and larger N are skipped.
// - Build output goes to dist/bench (tsconfig.bench.json), not dist-bench:
//   dist/ is already ignored by git and by eslint, which would otherwise lint
//   the compiled JavaScript.
//
// Results: tables on stdout, progress on stderr, JSON in bench/results/.

import { type ChildProcess, fork } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { cpus, setPriority, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { defaultAgentOptions } from '../src/agent/index.js';
import { defaultHubOptions } from '../src/hub/index.js';
import { agentFrameCodec, parseDuration } from '../src/tunnel/index.js';
import {
  benchClusterStatus,
  type BenchPki,
  findRepoRoot,
  type FromBaselineServer,
  type FromSwarm,
  memAvailableBytes,
  readCpuMs,
  readMachineCpu,
  logTail,
  makeBenchPki,
  readRssBytes,
  sleep,
  startBenchHub,
  type SwarmStart,
  type SwarmStats,
} from './common.js';

const here = dirname(fileURLToPath(import.meta.url));

const repoRoot = findRepoRoot(here);
/** node flags for measured processes: GC on SIGUSR2 (see header). */
const gcFlags = ['--expose-gc', '--import', pathToFileURL(join(here, 'gc-on-signal.js')).href];

const bootstrapToken = 'abcdef.0123456789abcdef';
const operatorToken = 'hwo_bench-admin-0123456789abcdef';
const hubKeepaliveMs = defaultHubOptions().keepaliveTimeMs;
const hubKeepaliveTimeoutMs = 10_000; // GrpcServerTransport's default; the CLI has no flag for it
// hawser runs its defaults: heartbeats are the liveness probe, pings only the fallback.
const agentKeepaliveMs = defaultAgentOptions().keepaliveTimeMs;
const agentKeepaliveTimeoutMs = defaultAgentOptions().keepaliveTimeoutMs;
// The bare tunnel probes the way one must without heartbeats: client pings every 20 s
// (NAT mappings, dead links found within 30 s), server pings every 30 s.
const baselineClientKeepaliveMs = 20_000;
const baselineServerKeepaliveMs = 30_000;
const statusFrequencyMs = 30_000;
const leaseDurationMs = 90_000; // the hub asks for a heartbeat every lease / 3 = 30 s
const swarmNice = 19;

// ---------------------------------------------------------------- arguments

const { values: flags } = parseArgs({
  options: {
    agents: { type: 'string', default: '100,1000' },
    window: { type: 'string', default: '60s' },
    settle: { type: 'string', default: '10s' },
    ramp: { type: 'string', default: '40' },
    'per-worker': { type: 'string', default: '1000' },
    'connect-timeout': { type: 'string', default: '10m' },
    'min-free-mem': { type: 'string', default: '1500' },
    phases: { type: 'string', default: 'baseline,hawser' },
    'register-timeout': { type: 'string', default: '30s' },
    'reconnect-period': { type: 'string', default: '10s' },
    'max-reconnect-period': { type: 'string', default: '60s' },
    'agent-cache-root': { type: 'string', default: existsSync('/dev/shm') ? '/dev/shm' : tmpdir() },
    'hub-cpu-prof': { type: 'string' },
    'swarm-cpu-prof': { type: 'string' },
    'heap-snapshot': { type: 'string' },
    'hawser-bin': { type: 'string' },
    'keep-tmp': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

if (flags.help) {
  console.log(`usage: node dist/bench/bench/agents.js [flags]
  --agents 100,1000,5000     agent counts to run, in order (default 100,1000)
  --window 60s               measuring window after all are connected (default 60s)
  --settle 10s               wait between "all connected" and the window
  --ramp 40                  new connections per second, all swarms together
  --per-worker 1000          agents (or baseline clients) per swarm process
  --connect-timeout 10m      give up waiting for all N to connect
  --min-free-mem 1500        MB of MemAvailable below which the ramp stops
  --phases baseline,hawser   which phases to run
  --register-timeout 30s --reconnect-period 10s --max-reconnect-period 60s   agent options
  --agent-cache-root DIR     where the agents' LevelDB caches go (default /dev/shm: agents' fsyncs
                             stay off the disk the hub writes to, as on real, separate machines)
  --hub-cpu-prof DIR         write the hub's V8 CPU profile (node --cpu-prof) into DIR
  --swarm-cpu-prof DIR       write each swarm's V8 CPU profile (the agents' side) into DIR
  --hawser-bin PATH          the hub to measure (default: this checkout's bin/hawser.js), e.g. a built
                             main to compare with; the agents are always this checkout's
  --heap-snapshot DIR        write heap snapshots of the server (hub and bare) into DIR, idle and
                             loaded, after the RSS readings (compare them in Chrome DevTools)
  --keep-tmp                 keep the temp directories (hub data, logs, agent caches)`);
  process.exit(0);
}

function positiveInt(text: string, what: string): number {
  const n = Number(text.replace(/_/g, ''));
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${what}: "${text}" is not a positive integer`);
  return n;
}

const args = {
  agents: flags.agents.split(',').map((s) => positiveInt(s.trim(), '--agents')),
  windowMs: parseDuration(flags.window, '--window'),
  settleMs: parseDuration(flags.settle, '--settle'),
  rampPerSec: positiveInt(flags.ramp, '--ramp'),
  perWorker: positiveInt(flags['per-worker'], '--per-worker'),
  connectTimeoutMs: parseDuration(flags['connect-timeout'], '--connect-timeout'),
  minFreeMemBytes: positiveInt(flags['min-free-mem'], '--min-free-mem') * 1024 * 1024,
  phases: flags.phases.split(',').map((s) => s.trim()) as Phase[],
  registerTimeoutMs: parseDuration(flags['register-timeout'], '--register-timeout'),
  reconnectPeriodMs: parseDuration(flags['reconnect-period'], '--reconnect-period'),
  maxReconnectPeriodMs: parseDuration(flags['max-reconnect-period'], '--max-reconnect-period'),
  agentCacheRoot: flags['agent-cache-root'],
  keepTmp: flags['keep-tmp'],
  hubCpuProf: flags['hub-cpu-prof'],
  swarmCpuProf: flags['swarm-cpu-prof'],
  hawserBin: flags['hawser-bin'] === undefined ? undefined : resolve(flags['hawser-bin']),
  heapSnapshotDir: flags['heap-snapshot'] === undefined ? undefined : resolve(flags['heap-snapshot']),
};
if (args.heapSnapshotDir) {
  mkdirSync(args.heapSnapshotDir, { recursive: true });
  // Read by gc-on-signal.ts in the measured processes (both inherit this environment).
  process.env.HAWSER_BENCH_HEAP_SNAPSHOT_DIR = args.heapSnapshotDir;
}
type Phase = 'baseline' | 'hawser';
for (const p of args.phases) if (p !== 'baseline' && p !== 'hawser') throw new Error(`--phases: unknown phase "${p}"`);
if (args.windowMs < 1_000) throw new Error('--window must be at least 1s');

// ------------------------------------------------------- processes, cleanup

const children = new Set<ChildProcess>();
let tmpRoot: string | undefined;
let agentCacheTmp: string | undefined;

function track<T extends ChildProcess>(cp: T): T {
  children.add(cp);
  cp.once('exit', () => children.delete(cp));
  return cp;
}

function waitExit(cp: ChildProcess, ms: number): Promise<boolean> {
  if (cp.exitCode !== null || cp.signalCode !== null) return Promise.resolve(true);
  return new Promise((r) => {
    const t = setTimeout(() => r(false), ms);
    cp.once('exit', () => {
      clearTimeout(t);
      r(true);
    });
  });
}

async function stopProcess(cp: ChildProcess, graceMs: number): Promise<void> {
  if (cp.exitCode !== null || cp.signalCode !== null) return;
  cp.kill(graceMs > 0 ? 'SIGTERM' : 'SIGKILL');
  if (!(await waitExit(cp, graceMs || 5_000))) {
    cp.kill('SIGKILL');
    await waitExit(cp, 5_000);
  }
}

function cleanupSync(): void {
  for (const cp of children) cp.kill('SIGKILL');
  children.clear();
  for (const dir of [tmpRoot, agentCacheTmp]) if (dir && !args.keepTmp) rmSync(dir, { recursive: true, force: true });
  tmpRoot = undefined;
  agentCacheTmp = undefined;
}
process.on('exit', cleanupSync);
for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  process.on(signal, () => {
    console.error(`\n${signal}: stopping children and removing ${tmpRoot ?? 'nothing'}`);
    cleanupSync();
    process.exit(code);
  });
}

function log(message: string): void {
  console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
}

// ------------------------------------------------------------------ servers

interface ServerProcess {
  pid: number;
  /** host:port the relays dial. */
  target: string;
  cp: ChildProcess;
  apiUrl?: string;
  logFile?: string;
  /** Open streams as the server itself counts them (baseline only). */
  streams?: () => number;
  stop(): Promise<void>;
}

async function startHub(dir: string, pki: BenchPki): Promise<ServerProcess> {
  const hub = await startBenchHub({
    bin: args.hawserBin ?? join(repoRoot, 'bin/hawser.js'),
    dir,
    bootstrapToken,
    operatorToken,
    pki,
    nodeFlags: [...gcFlags, ...(args.hubCpuProf ? ['--cpu-prof', '--cpu-prof-dir', resolve(args.hubCpuProf)] : [])],
    hubFlags: ['--metrics-anonymous', '--cluster-lease-duration', `${leaseDurationMs / 1000}s`, '--keepalive-time', `${hubKeepaliveMs / 1000}s`],
    track,
  });
  return { ...hub, stop: () => stopProcess(hub.cp, 5_000) };
}

async function startBaselineServer(pki: BenchPki): Promise<ServerProcess> {
  const cp = track(
    fork(
      join(here, 'baseline-server.js'),
      [pki.certFile, pki.keyFile, String(baselineServerKeepaliveMs), String(hubKeepaliveTimeoutMs)],
      { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: gcFlags },
    ),
  );
  let streams = 0;
  const port = await new Promise<number>((resolve, reject) => {
    cp.on('message', (m: FromBaselineServer) => {
      if (m.type === 'listening') resolve(m.port);
      else if (m.type === 'stats') streams = m.streams;
      else reject(new Error(`baseline server: ${m.message}`));
    });
    cp.once('exit', (code) => reject(new Error(`baseline server exited with ${code}`)));
  });
  return { pid: cp.pid!, target: `127.0.0.1:${port}`, cp, streams: () => streams, stop: () => stopProcess(cp, 0) };
}

// ------------------------------------------------------------------- swarms

class Swarm {
  last: SwarmStats | undefined;
  readonly fatal: string[] = [];
  private nextId = 0;
  private readonly waiting = new Map<number, (s: SwarmStats) => void>();
  readonly cp: ChildProcess;

  constructor(start: SwarmStart) {
    // --no-deprecation: grpc-js sets an IP address as TLS server name (DEP0123), once per swarm.
    this.cp = track(fork(join(here, 'agent-swarm.js'), [], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        execArgv: ['--no-deprecation', ...(args.swarmCpuProf ? ['--cpu-prof', '--cpu-prof-dir', resolve(args.swarmCpuProf)] : [])],
      }));
    // Clients yield the CPU to the server under test (see header).
    if (this.cp.pid) setPriority(this.cp.pid, swarmNice);
    this.cp.on('message', (m: FromSwarm) => {
      if (m.type === 'fatal') {
        if (this.fatal.length < 5) this.fatal.push(m.message);
        return;
      }
      this.last = m;
      if (m.id !== undefined) {
        this.waiting.get(m.id)?.(m);
        this.waiting.delete(m.id);
      }
    });
    this.cp.send(start);
  }

  get alive(): boolean {
    return this.cp.exitCode === null && this.cp.signalCode === null;
  }

  /** Current counters, answered by the swarm itself (not the last periodic report). */
  sample(): Promise<SwarmStats> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('swarm did not answer a sample request within 10s')), 10_000);
      this.waiting.set(id, (s) => {
        clearTimeout(t);
        resolve(s);
      });
      this.cp.send({ type: 'sample', id });
    });
  }
}

interface Totals {
  started: number;
  ready: number;
  drops: number;
  relayIn: number;
  relayOut: number;
  errors: Record<string, number>;
  rampStartedAt: number;
  /** When every swarm had all its clients ready; NaN if one has not. */
  allReadyAt: number;
}

function total(stats: Array<SwarmStats | undefined>): Totals {
  const t: Totals = { started: 0, ready: 0, drops: 0, relayIn: 0, relayOut: 0, errors: {}, rampStartedAt: Infinity, allReadyAt: -Infinity };
  for (const s of stats) {
    if (!s) {
      t.allReadyAt = Number.NaN;
      continue;
    }
    t.rampStartedAt = Math.min(t.rampStartedAt, s.rampStartedAt ?? Infinity);
    t.allReadyAt = Math.max(t.allReadyAt, s.allReadyAt ?? Number.NaN);
    t.started += s.started;
    t.ready += s.ready;
    t.drops += s.drops;
    t.relayIn += s.relayIn;
    t.relayOut += s.relayOut;
    for (const [k, v] of Object.entries(s.errors)) t.errors[k] = (t.errors[k] ?? 0) + v;
  }
  return t;
}

// -------------------------------------------------------------------- phase

interface HubDiagnostics {
  connectedAgentsGauge: number;
  sessionsTotal: number;
  registrations: Record<string, number>;
  rejectedTotal: number;
  rejectedByCode: Record<string, number>;
  leaseExpiriesTotal: number;
  /** The hub's warn/error log lines (pino JSON), counted by message, most frequent first. */
  logMessages: Record<string, number>;
  payloadBytesInTotal: number;
  metricsScrapeBytes: number;
  metricsScrapeMs: number;
  clustersListed: number;
  clustersReady: number;
  clustersListBytes: number;
  clustersListMs: number;
}

interface PhaseResult {
  phase: Phase;
  requested: number;
  connected: number;
  complete: boolean;
  stoppedBecause?: string;
  connectMs: number;
  /** Server CPU spent from the start of the ramp until all were connected, per connection. */
  connectCpuMsPerConn: number;
  /** Swarm processes' CPU during the ramp per connection: the agents' (or bare clients') side. */
  clientConnectCpuMsPerConn: number;
  /** Every 10 s of the ramp: [seconds since start, connected, server CPU seconds since start]. */
  connectTimeline: Array<[number, number, number]>;
  /** Sum of the swarm processes' RSS at the end of the window (the client side, for sizing runs). */
  clientRssBytes: number;
  /** After a forced GC. */
  idleRssBytes: number;
  loadedRssBytes: number;
  /** Highest RSS seen during the window, no GC forced. */
  peakRssBytes: number;
  rssPerConnKB: number;
  rssPerConnAsFoundKB: number;
  windowMs: number;
  wireInPerConnPerMin: number;
  wireOutPerConnPerMin: number;
  serverCpuPercent: number;
  serverCpuMsPerConnPerMin: number;
  /** Swarm processes' CPU per connected agent per minute of the window: what an idle agent costs its own host. */
  clientCpuMsPerConnPerMin: number;
  dropsInWindow: number;
  /** Hub only, from its own metrics over the window: heartbeats received and their protobuf payload. */
  heartbeatsPerAgentPerMin?: number;
  payloadInPerAgentPerMin?: number;
  errors: Record<string, number>;
  serverStreams?: number;
  hub?: HubDiagnostics;
}

function sumMetric(text: string, name: string, labelFilter?: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    if (labelFilter && !rest.includes(labelFilter)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

function labeledValues(text: string, name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  const re = new RegExp(`^${name}\\{[^}]*${label}="([^"]*)"[^}]*\\} (\\S+)$`, 'gm');
  for (const m of text.matchAll(re)) out[m[1]!] = (out[m[1]!] ?? 0) + Number(m[2]);
  return out;
}

function logSummary(file: string | undefined): Record<string, number> {
  const counts = new Map<string, number>();
  if (file && existsSync(file)) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (!line) continue;
      let msg = line.slice(0, 120);
      try {
        msg = String((JSON.parse(line) as { msg?: unknown }).msg ?? msg);
      } catch {
        // not pino JSON: keep the line's start
      }
      counts.set(msg, (counts.get(msg) ?? 0) + 1);
    }
  }
  return Object.fromEntries([...counts].sort((a, b) => b[1] - a[1]).slice(0, 10));
}

async function hubDiagnostics(apiUrl: string, logFile: string | undefined): Promise<HubDiagnostics> {
  let t = performance.now();
  const metrics = await (await fetch(`${apiUrl}/metrics`)).text();
  const metricsScrapeMs = performance.now() - t;
  const registrations: Record<string, number> = {};
  for (const result of ['registered', 'reconnected', 'pending', 'refused']) {
    registrations[result] = sumMetric(metrics, 'hawser_hub_registrations_total', `result="${result}"`);
  }
  t = performance.now();
  const clustersText = await (await fetch(`${apiUrl}/api/v1/clusters`, { headers: { authorization: `Bearer ${operatorToken}` } })).text();
  const clustersListMs = performance.now() - t;
  const clusters = (JSON.parse(clustersText) as { items: Array<{ status?: { conditions?: Array<{ type: string; status: string }> } }> })
    .items;
  return {
    connectedAgentsGauge: sumMetric(metrics, 'hawser_hub_connected_agents'),
    sessionsTotal: sumMetric(metrics, 'hawser_hub_sessions_total'),
    registrations,
    rejectedTotal: sumMetric(metrics, 'hawser_hub_rejected_total'),
    rejectedByCode: labeledValues(metrics, 'hawser_hub_rejected_total', 'code'),
    logMessages: logSummary(logFile),
    leaseExpiriesTotal: sumMetric(metrics, 'hawser_cluster_lease_expiries_total'),
    payloadBytesInTotal: sumMetric(metrics, 'hawser_tunnel_bytes_total', 'direction="in"'),
    metricsScrapeBytes: Buffer.byteLength(metrics),
    metricsScrapeMs: Math.round(metricsScrapeMs),
    clustersListed: clusters.length,
    clustersReady: clusters.filter((c) => c.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True')).length,
    clustersListBytes: Buffer.byteLength(clustersText),
    clustersListMs: Math.round(clustersListMs),
  };
}

/**
 * RSS after forced full GCs (SIGUSR2, see gc-on-signal.ts), repeated until it
 * stops moving: V8 drops unused bytecode only after several collections, so
 * the first one after start-up still holds ~25 MB the hub will shed anyway.
 */
async function rssAfterGc(pid: number): Promise<number> {
  const readings: number[] = [];
  for (let i = 0; i < 25; i++) {
    process.kill(pid, 'SIGUSR2');
    await sleep(1_500);
    readings.push(readRssBytes(pid));
    const last = readings.slice(-3);
    if (i >= 5 && Math.max(...last) - Math.min(...last) < 1024 * 1024) break;
  }
  return readings[readings.length - 1]!;
}

/** With --heap-snapshot, a heap snapshot of pid (SIGWINCH, see gc-on-signal.ts), taken after its RSS was read. */
async function heapSnapshot(pid: number, label: string): Promise<void> {
  if (!args.heapSnapshotDir) return;
  const dir = args.heapSnapshotDir;
  const files = () => readdirSync(dir).filter((f) => f.startsWith(`heap-${pid}-`));
  const before = files().length;
  process.kill(pid, 'SIGWINCH');
  // The file appears when writing starts: wait until it has stopped growing.
  const deadline = Date.now() + 300_000;
  let size = -1;
  while (Date.now() < deadline) {
    await sleep(1_000);
    const list = files();
    if (list.length === before) continue;
    const now = statSync(join(dir, list.sort().at(-1)!)).size;
    if (now > 0 && now === size) break;
    size = now;
  }
  log(`heap snapshot (${label}) of ${pid} in ${dir}`);
}

async function runPhase(phase: Phase, n: number, pki: BenchPki, dir: string, cacheRoot: string): Promise<PhaseResult> {
  log(`${phase} N=${n}: starting ${phase === 'hawser' ? 'hub' : 'bare gRPC server'}`);
  const server = phase === 'hawser' ? await startHub(join(dir, 'hub'), pki) : await startBaselineServer(pki);
  const swarms: Swarm[] = [];
  try {
    await sleep(3_000);
    const idleRssBytes = await rssAfterGc(server.pid);
    log(`${phase} N=${n}: idle RSS ${(idleRssBytes / 1048576).toFixed(1)} MB; ramping at ${args.rampPerSec}/s`);
    await heapSnapshot(server.pid, `${phase} idle`);

    const workers = Math.ceil(n / args.perWorker);
    for (let w = 0; w < workers; w++) {
      const first = w * args.perWorker;
      const count = Math.min(args.perWorker, n - first);
      swarms.push(
        new Swarm({
          type: 'start',
          mode: phase,
          target: server.target,
          caFile: pki.caFile,
          first,
          count,
          rampPerSec: (args.rampPerSec * count) / n,
          cacheRoot,
          bootstrapToken,
          statusFrequencyMs,
          leaseDurationMs,
          keepaliveTimeMs: phase === 'hawser' ? agentKeepaliveMs : baselineClientKeepaliveMs,
          keepaliveTimeoutMs: agentKeepaliveTimeoutMs,
          registerTimeoutMs: args.registerTimeoutMs,
          reconnectPeriodMs: args.reconnectPeriodMs,
          maxReconnectPeriodMs: args.maxReconnectPeriodMs,
        }),
      );
    }

    const began = Date.now();
    const rampCpu0 = readCpuMs(server.pid);
    let machine0 = readMachineCpu();
    const swarmCpu = () => swarms.reduce((sum, s) => sum + (s.alive && s.cp.pid ? readCpuMs(s.cp.pid) : 0), 0);
    let swarmCpu0 = swarmCpu();
    const rampSwarmCpu0 = swarmCpu0;
    let lastLogAt = Date.now();
    const connectTimeline: Array<[number, number, number]> = [];
    let stoppedBecause: string | undefined;
    let lastLog = 0;
    for (;;) {
      await sleep(500);
      const t = total(swarms.map((s) => s.last));
      const elapsed = Date.now() - began;
      if (t.ready >= n) break;
      const fatal = swarms.flatMap((s) => s.fatal);
      if (fatal.length > 0) throw new Error(`swarm failed: ${fatal.join('; ')}`);
      if (server.cp.exitCode !== null || server.cp.signalCode !== null) {
        throw new Error(`${phase} server exited (${server.cp.exitCode ?? server.cp.signalCode})${server.logFile ? `:\n${logTail(server.logFile)}` : ''}`);
      }
      if (swarms.some((s) => !s.alive)) throw new Error('a swarm process exited');
      if (memAvailableBytes() < args.minFreeMemBytes) {
        stoppedBecause = `MemAvailable below ${args.minFreeMemBytes / 1048576} MB`;
        break;
      }
      if (elapsed > args.connectTimeoutMs) {
        stoppedBecause = `not all connected after ${args.connectTimeoutMs / 1000}s`;
        break;
      }
      if (elapsed - lastLog >= 10_000) {
        lastLog = elapsed;
        const errs = Object.entries(t.errors).map(([k, v]) => `${k}=${v}`).join(' ');
        const machine1 = readMachineCpu();
        const jiffies = Math.max(1, machine1.total - machine0.total);
        const busy = (100 * (jiffies - (machine1.idle - machine0.idle) - (machine1.iowait - machine0.iowait))) / jiffies;
        const iowait = (100 * (machine1.iowait - machine0.iowait)) / jiffies;
        const swarmCpu1 = swarmCpu();
        const swarmCores = (swarmCpu1 - swarmCpu0) / Math.max(1, Date.now() - lastLogAt);
        machine0 = machine1;
        swarmCpu0 = swarmCpu1;
        lastLogAt = Date.now();
        connectTimeline.push([Math.round(elapsed / 1000), t.ready, Math.round((readCpuMs(server.pid) - rampCpu0) / 100) / 10]);
        log(
          `${phase} N=${n}: ${Math.round(elapsed / 1000)}s started ${t.started} ready ${t.ready}; server RSS ` +
            `${(readRssBytes(server.pid) / 1048576).toFixed(0)} MB, CPU ${((readCpuMs(server.pid) - rampCpu0) / 1000).toFixed(0)}s; ` +
            `machine busy ${busy.toFixed(0)}% iowait ${iowait.toFixed(0)}%, swarms ${swarmCores.toFixed(2)} cores; ` +
            `MemAvailable ${(memAvailableBytes() / 1073741824).toFixed(1)} GB${errs ? `; errors ${errs}` : ''}`,
        );
      }
    }
    const rampCpuMs = readCpuMs(server.pid) - rampCpu0;
    // The agents' side of the ramp (swarm processes; includes each swarm's counting relay).
    const rampSwarmCpuMs = swarmCpu() - rampSwarmCpu0;
    const ramp = total(swarms.map((s) => s.last));
    const connectMs = Number.isFinite(ramp.allReadyAt) ? ramp.allReadyAt - ramp.rampStartedAt : Date.now() - ramp.rampStartedAt;
    if (stoppedBecause) {
      // Stop offering more: a swarm still ramping would change N during the window.
      log(`${phase} N=${n}: ${stoppedBecause}; measuring those connected`);
    }
    log(
      `${phase} N=${n}: ${ramp.ready} connected in ${(connectMs / 1000).toFixed(1)}s, server CPU ${(rampCpuMs / 1000).toFixed(1)}s ` +
        `(${(rampCpuMs / Math.max(1, ramp.ready)).toFixed(1)} ms/conn), swarms CPU ${(rampSwarmCpuMs / 1000).toFixed(1)}s ` +
        `(${(rampSwarmCpuMs / Math.max(1, ramp.ready)).toFixed(1)} ms/conn); settling ${args.settleMs / 1000}s`,
    );
    await sleep(args.settleMs);

    const hubCounters = async () => {
      if (!server.apiUrl) return undefined;
      const text = await (await fetch(`${server.apiUrl}/metrics`)).text();
      return {
        heartbeats: sumMetric(text, 'hawser_tunnel_rtt_seconds_count'),
        payloadIn: sumMetric(text, 'hawser_tunnel_bytes_total', 'direction="in"'),
      };
    };
    const h0 = await hubCounters();
    const s0 = total(await Promise.all(swarms.map((s) => s.sample())));
    const cpu0 = readCpuMs(server.pid);
    const windowSwarmCpu0 = swarmCpu();
    const t0 = performance.now();
    log(`${phase} N=${n}: measuring for ${args.windowMs / 1000}s`);
    let peakRssBytes = readRssBytes(server.pid);
    while (performance.now() - t0 < args.windowMs) {
      await sleep(Math.min(5_000, Math.max(0, args.windowMs - (performance.now() - t0))));
      peakRssBytes = Math.max(peakRssBytes, readRssBytes(server.pid));
    }
    const s1 = total(await Promise.all(swarms.map((s) => s.sample())));
    const cpu1 = readCpuMs(server.pid);
    const windowSwarmCpu1 = swarmCpu();
    const windowMs = performance.now() - t0;
    const clientRssBytes = swarms.reduce((sum, s) => sum + (s.cp.pid ? readRssBytes(s.cp.pid) : 0), 0);
    const h1 = await hubCounters();
    peakRssBytes = Math.max(peakRssBytes, readRssBytes(server.pid));
    const loadedRssBytes = await rssAfterGc(server.pid);
    await heapSnapshot(server.pid, `${phase} N=${n} loaded`);
    const connected = Math.min(s0.ready, s1.ready);
    const perMin = (bytes: number) => (connected > 0 ? bytes / connected / (windowMs / 60_000) : Number.NaN);
    const result: PhaseResult = {
      phase,
      requested: n,
      connected,
      complete: !stoppedBecause && connected === n,
      ...(stoppedBecause ? { stoppedBecause } : {}),
      connectMs,
      connectCpuMsPerConn: rampCpuMs / Math.max(1, ramp.ready),
      clientConnectCpuMsPerConn: rampSwarmCpuMs / Math.max(1, ramp.ready),
      connectTimeline,
      clientRssBytes,
      idleRssBytes,
      loadedRssBytes,
      peakRssBytes,
      rssPerConnKB: connected > 0 ? (loadedRssBytes - idleRssBytes) / connected / 1024 : Number.NaN,
      rssPerConnAsFoundKB: connected > 0 ? (peakRssBytes - idleRssBytes) / connected / 1024 : Number.NaN,
      windowMs: Math.round(windowMs),
      wireInPerConnPerMin: perMin(s1.relayIn - s0.relayIn),
      wireOutPerConnPerMin: perMin(s1.relayOut - s0.relayOut),
      serverCpuPercent: ((cpu1 - cpu0) / windowMs) * 100,
      serverCpuMsPerConnPerMin: perMin(cpu1 - cpu0),
      clientCpuMsPerConnPerMin: perMin(windowSwarmCpu1 - windowSwarmCpu0),
      dropsInWindow: s1.drops - s0.drops,
      errors: s1.errors,
    };
    if (h0 && h1) {
      result.heartbeatsPerAgentPerMin = perMin(h1.heartbeats - h0.heartbeats);
      result.payloadInPerAgentPerMin = perMin(h1.payloadIn - h0.payloadIn);
    }
    if (server.streams) result.serverStreams = server.streams();
    if (server.apiUrl) {
      // After the RSS readings: listing N clusters and N label sets is O(N) work in the hub.
      result.hub = await hubDiagnostics(server.apiUrl, server.logFile);
    }
    log(
      `${phase} N=${n}: ${connected} connected, RSS/conn ${result.rssPerConnKB.toFixed(1)} KB, wire in/out ` +
        `${result.wireInPerConnPerMin.toFixed(0)}/${result.wireOutPerConnPerMin.toFixed(0)} B/conn/min, CPU in the window ` +
        `server ${result.serverCpuMsPerConnPerMin.toFixed(1)} / swarms ${result.clientCpuMsPerConnPerMin.toFixed(1)} ms/conn/min`,
    );
    return result;
  } finally {
    // A profiled swarm gets SIGTERM (it exits, writing its profile); otherwise SIGKILL.
    await Promise.all(swarms.map((s) => stopProcess(s.cp, args.swarmCpuProf ? 10_000 : 0)));
    await server.stop();
  }
}

// ------------------------------------------------------------------- report

function fmt(n: number, digits = 0): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '-';
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a !== undefined && b !== undefined && Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : '-';
}

function table(n: number, baseline: PhaseResult | undefined, hawser: PhaseResult | undefined, heartbeatPayload: number): string {
  const header = ['', 'connected', 'connect', 'CPU ms/conn', 'RSS idle MB', 'RSS loaded MB', 'RSS/conn KB', 'as found KB', 'in B/conn/min', 'out B/conn/min', 'total B/conn/min', 'CPU %', 'drops'];
  const row = (label: string, r: PhaseResult | undefined): string[] =>
    r
      ? [
          label,
          `${r.connected}/${r.requested}`,
          `${(r.connectMs / 1000).toFixed(1)}s`,
          fmt(r.connectCpuMsPerConn, 1),
          fmt(r.idleRssBytes / 1048576, 1),
          fmt(r.loadedRssBytes / 1048576, 1),
          fmt(r.rssPerConnKB, 1),
          fmt(r.rssPerConnAsFoundKB, 1),
          fmt(r.wireInPerConnPerMin),
          fmt(r.wireOutPerConnPerMin),
          fmt(r.wireInPerConnPerMin + r.wireOutPerConnPerMin),
          fmt(r.serverCpuPercent, 1),
          String(r.dropsInWindow),
        ]
      : [label, 'not run', '', '', '', '', '', '', '', '', '', '', ''];
  const rows = [
    header,
    row('baseline (bare grpc-js)', baseline),
    row('hawser hub', hawser),
    [
      'ratio hawser/baseline',
      '',
      ratio(hawser?.connectMs, baseline?.connectMs),
      ratio(hawser?.connectCpuMsPerConn, baseline?.connectCpuMsPerConn),
      '',
      '',
      ratio(hawser?.rssPerConnKB, baseline?.rssPerConnKB),
      ratio(hawser?.rssPerConnAsFoundKB, baseline?.rssPerConnAsFoundKB),
      ratio(hawser?.wireInPerConnPerMin, baseline?.wireInPerConnPerMin),
      ratio(hawser?.wireOutPerConnPerMin, baseline?.wireOutPerConnPerMin),
      ratio(
        hawser && hawser.wireInPerConnPerMin + hawser.wireOutPerConnPerMin,
        baseline && baseline.wireInPerConnPerMin + baseline.wireOutPerConnPerMin,
      ),
      ratio(hawser?.serverCpuPercent, baseline?.serverCpuPercent),
      '',
    ],
  ];
  const widths = header.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const lines = rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
  const window = hawser?.windowMs ?? baseline?.windowMs ?? args.windowMs;
  const notes = [
    `N = ${n}: window ${(window / 1000).toFixed(0)}s after all connected + ${args.settleMs / 1000}s; heartbeat every ${statusFrequencyMs / 1000}s; keepalive agent ${agentKeepaliveMs / 1000}s, hub ${hubKeepaliveMs / 1000}s (bare: ${baselineClientKeepaliveMs / 1000}s, ${baselineServerKeepaliveMs / 1000}s); ramp ${args.rampPerSec}/s (floor ${(n / args.rampPerSec).toFixed(1)}s)`,
    ...lines,
    `  connect = ramp start to all ready; CPU ms/conn = server CPU during it / connected (TLS handshake, registration, and the heartbeats of those already connected).`,
    `  RSS/conn = (loaded - idle) / connected, both after a forced GC; as found = (highest RSS in the window, no forced GC - idle) / connected.`,
    `  in = agent -> hub, out = hub -> agent: TLS payload bytes through the relay (TCP/IP headers excluded). CPU % of one core, server process, over the window.`,
    `  heartbeat frame payload (protobuf, with status): ${heartbeatPayload} B, i.e. ${fmt((heartbeatPayload * 60_000) / statusFrequencyMs)} B/agent/min before gRPC/HTTP/2/TLS framing.`,
  ];
  if (hawser?.hub) {
    const h = hawser.hub;
    notes.push(
      `  hub counted ${fmt(hawser.heartbeatsPerAgentPerMin ?? Number.NaN, 2)} heartbeats/agent/min, ${fmt(hawser.payloadInPerAgentPerMin ?? Number.NaN)} B/agent/min of protobuf payload in: ` +
        `wire in / payload in = ${ratio(hawser.wireInPerConnPerMin, hawser.payloadInPerAgentPerMin)}`,
    );
    notes.push(
      `  hub: gauge connected_agents ${h.connectedAgentsGauge}, sessions ${h.sessionsTotal}, registered ${h.registrations.registered}, ` +
        `rejected ${h.rejectedTotal}, lease expiries ${h.leaseExpiriesTotal}; API lists ${h.clustersListed} clusters (${h.clustersReady} Ready) ` +
        `in ${h.clustersListMs} ms / ${fmt(h.clustersListBytes / 1024)} KB; /metrics ${fmt(h.metricsScrapeBytes / 1024)} KB in ${h.metricsScrapeMs} ms`,
    );
    const rejected = Object.entries(h.rejectedByCode).map(([k, v]) => `${k}=${v}`).join(', ');
    if (rejected) notes.push(`  hub rejected: ${rejected}`);
    const logs = Object.entries(h.logMessages).slice(0, 5).map(([k, v]) => `${v}x "${k}"`).join('; ');
    if (logs) notes.push(`  hub warn/error log: ${logs}`);
    notes.push(`  target 10,000 agents at <= 100 KB/agent: ${fmt(hawser.rssPerConnKB, 1)} KB/agent at ${hawser.connected} agents`);
  }
  for (const r of [baseline, hawser]) {
    if (!r) continue;
    if (!r.complete) notes.push(`  ${r.phase}: INCOMPLETE (${r.stoppedBecause ?? `${r.connected} of ${r.requested} connected`})`);
    const errs = Object.entries(r.errors);
    if (errs.length > 0) notes.push(`  ${r.phase} session errors during the run: ${errs.map(([k, v]) => `${k}=${v}`).join(', ')}`);
  }
  return notes.join('\n');
}

// --------------------------------------------------------------------- main

async function main(): Promise<void> {
  tmpRoot = await mkdtemp(join(tmpdir(), 'hawser-bench-agents-'));
  agentCacheTmp = await mkdtemp(join(args.agentCacheRoot, 'hawser-bench-agent-caches-'));
  log(`temp dirs ${tmpRoot}, ${agentCacheTmp}${args.keepTmp ? ' (kept)' : ''}`);
  const pki = await makeBenchPki(join(tmpRoot, 'pki'));
  const heartbeatPayload = agentFrameCodec().encode({
    frame: { $case: 'heartbeat', value: { sequence: 1000, sentAtUnixMs: Date.now(), status: { ...benchClusterStatus, observedAtUnixMs: Date.now() }, lastRttMs: 0, statusUnchanged: false } },
  }).length;
  const started = new Date();
  const resultsDir = join(repoRoot, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  const resultsFile = join(resultsDir, `agents-${started.toISOString().slice(0, 19).replace(/:/g, '-')}.json`);
  const report = {
    benchmark: 'bench/agents',
    startedAt: started.toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memTotalBytes: totalmem(), node: process.version },
    settings: {
      ...args,
      heartbeatIntervalMs: statusFrequencyMs,
      leaseDurationMs,
      agentKeepaliveMs,
      hubKeepaliveMs,
      heartbeatFramePayloadBytes: heartbeatPayload,
    },
    results: [] as Array<{ n: number; baseline?: PhaseResult; hawser?: PhaseResult; ratios: Record<string, number> }>,
    highestHawserNConnected: 0,
  };
  for (const n of args.agents) {
    const entry: (typeof report.results)[number] = { n, ratios: {} };
    for (const phase of args.phases) {
      const dir = join(tmpRoot, `n${n}-${phase}`);
      const cacheRoot = join(agentCacheTmp, `n${n}-${phase}`);
      entry[phase] = await runPhase(phase, n, pki, dir, cacheRoot);
      for (const d of [dir, cacheRoot]) rmSync(d, { recursive: true, force: true });
    }
    const { baseline: b, hawser: h } = entry;
    if (b && h) {
      entry.ratios = {
        rssPerConn: h.rssPerConnKB / b.rssPerConnKB,
        rssPerConnAsFound: h.rssPerConnAsFoundKB / b.rssPerConnAsFoundKB,
        wireIn: h.wireInPerConnPerMin / b.wireInPerConnPerMin,
        wireOut: h.wireOutPerConnPerMin / b.wireOutPerConnPerMin,
        wireTotal: (h.wireInPerConnPerMin + h.wireOutPerConnPerMin) / (b.wireInPerConnPerMin + b.wireOutPerConnPerMin),
        connectTime: h.connectMs / b.connectMs,
        connectCpuPerConn: h.connectCpuMsPerConn / b.connectCpuMsPerConn,
      };
    }
    if (h) report.highestHawserNConnected = Math.max(report.highestHawserNConnected, h.connected);
    report.results.push(entry);
    writeFileSync(resultsFile, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`\n${table(n, b, h, heartbeatPayload)}\n`);
    if ((b && !b.complete) || (h && !h.complete)) {
      log(`N=${n} was incomplete; skipping larger N`);
      break;
    }
  }
  console.log(`\nresults: ${resolve(resultsFile)}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench:agents failed: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
