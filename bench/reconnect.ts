// bench/reconnect: what a hub restart costs under N agents.
//
// Per phase: a real `hawser hub` process and N real agents (startAgent, all in
// this process, a StaticClusterReader instead of a cluster) connect; once all
// are ready the hub is killed with SIGKILL and started again at once on the
// same ports and data dir (as a supervisor would). Measured from the kill:
// the time until every agent is ready again, the longest wait of any agent
// (its drop to its next ready), the peak of welcomes per second (handshakes
// that succeeded, seen by the agents), HAWSER_HUB_BUSY refusals, and the new
// hub's CPU over the recovery. Two phases in one run, same machine:
//   old: the agent's policy before the quick retry (--reconnect-jitter 0: a
//        drop is a failed dial unless the connection lived 60 s) and no
//        handshake admission at the hub;
//   fixed: the agents' new policy, and the hub's admission of the session before
//        (a fixed limit of 64 handshakes; in this build a fixed limit also queues
//        hellos briefly rather than refusing them at once);
//   new: the defaults (quick retry within 1.5 s then a second window of 5 s; the
//        hub's adaptive handshake limit, a queue, a retry-after from the queue);
//   tight: new, with the limit fixed at 4 handshakes: a herd of 200 on a shared
//        machine then exercises the queue and the booked retry-after as 1,000 would.
// Agents run beside the hub on the same cores: on a 2-core machine their own
// TLS work competes with the hub's, so absolute times are pessimistic; the
// ratio between the phases is the figure.
//
//   npm run bench:reconnect                      # 200 agents
//   npm run bench:reconnect -- --agents 1000     # on demand, not on a shared machine
//   npm run bench:reconnect -- --mode refusal-cost [--dials 500]   # CPU of one refused dial, by where it is refused (bench/refusal-cost.ts)
//   npm run bench:reconnect -- --mode reset --baseline-dir DIR   # one link reset on a weak link (bench/reconnect-reset.ts),
//                                                # DIR: a built checkout to compare against (e.g. main)
import { type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { type RunningAgent, StaticClusterReader, startAgent } from '../src/agent/index.js';
import { agentName, type BenchHub, type BenchPki, benchClusterStatus, findRepoRoot, freePort, makeBenchPki, readCpuMs, sleep, startBenchHub } from './common.js';
import { runRefusalCostBench } from './refusal-cost.js';
import { runResetBench } from './reconnect-reset.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = findRepoRoot(here);
const bootstrapToken = 'abcdef.0123456789abcdef';

const { values: flags } = parseArgs({
  options: {
    agents: { type: 'string', default: '200' },
    ramp: { type: 'string', default: '40' },
    phases: { type: 'string', default: 'old,new' },
    'recover-timeout': { type: 'string', default: '300' },
    mode: { type: 'string', default: 'restart' },
    'baseline-dir': { type: 'string' },
    resets: { type: 'string', default: '5' },
    dials: { type: 'string', default: '500' },
    latency: { type: 'string', default: '300' },
    rate: { type: 'string', default: '32' },
  },
});
const n = Number(flags.agents);
const rampPerSec = Number(flags.ramp);
const recoverTimeoutMs = Number(flags['recover-timeout']) * 1000;
if (!(Number.isInteger(n) && n > 0)) throw new Error(`--agents must be a positive integer, got ${flags.agents}`);

type Phase = 'old' | 'fixed' | 'new' | 'tight';
interface PhaseResult {
  phase: Phase;
  agents: number;
  allBackMs: number;
  longestWaitMs: number;
  medianWaitMs: number;
  peakWelcomesPerSec: number;
  hubBusyRefusals: number;
  failedDials: number;
  hubCpuPercent: number;
  hubCpuMs: number;
  /** SIGKILL to the restarted hub answering /healthz: no dial can succeed before. */
  hubDownMs: number;
}

function log(message: string): void {
  console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
}

/** Hubs this run started: a failed run must not leave one behind. */
const hubProcesses = new Set<ChildProcess>();
process.on('exit', () => {
  for (const cp of hubProcesses) if (cp.exitCode === null && cp.signalCode === null) cp.kill('SIGKILL');
});

function startHub(dir: string, ports: { tunnel: number; api: number }, pki: BenchPki, phase: Phase): Promise<BenchHub> {
  return startBenchHub({
    bin: join(repoRoot, 'bin/hawser.js'),
    dir,
    bootstrapToken,
    operatorToken: 'hwo_bench-admin-0123456789abcdef',
    ports,
    pki,
    // Old: no admission control (a bound no herd reaches).
    hubFlags: {
      old: ['--min-concurrent-handshakes', '1000000', '--max-concurrent-handshakes', '1000000'],
      fixed: ['--min-concurrent-handshakes', '64', '--max-concurrent-handshakes', '64'],
      new: [],
      tight: ['--min-concurrent-handshakes', '4', '--max-concurrent-handshakes', '4'],
    }[phase],
    // A restart under 1,000 redialling agents on a loaded machine took over 30 s to answer.
    healthyWithinMs: 180_000,
    track: (cp) => hubProcesses.add(cp),
  });
}

function killed(cp: ChildProcess): Promise<void> {
  if (cp.exitCode !== null || cp.signalCode !== null) return Promise.resolve();
  return new Promise((r) => cp.once('exit', () => r()));
}

async function runPhase(phase: Phase, root: string, pki: { caFile: string; certFile: string; keyFile: string }): Promise<PhaseResult> {
  const dir = join(root, phase);
  mkdirSync(dir, { recursive: true });
  const ports = { tunnel: await freePort(), api: await freePort() };
  let hub = await startHub(dir, ports, pki, phase);
  const reader = new StaticClusterReader(benchClusterStatus);
  const logger = pino({ level: 'silent' });
  const agents: RunningAgent[] = [];
  const ready = new Set<number>();
  /** Set at the SIGKILL: state changes from then on are the recovery. */
  const kill: { at?: number } = {};
  const droppedAt = new Map<number, number>();
  const backAt = new Map<number, number>();
  let hubBusy = 0;
  let failedDials = 0;

  log(`${phase}: starting ${n} agents at ${rampPerSec}/s`);
  const began = Date.now();
  for (let i = 0; i < n; i++) {
    const due = began + (i / rampPerSec) * 1000;
    if (due > Date.now()) await sleep(due - Date.now());
    const agent = await startAgent(
      {
        parentUrl: `127.0.0.1:${ports.tunnel}`,
        parentCaFile: pki.caFile,
        clusterRegName: agentName(i),
        bootstrapToken,
        cacheDir: join(dir, 'agents', agentName(i)),
        clusterStatusUpdateFrequencyMs: 30_000,
        clusterLeaseDurationMs: 90_000,
        ...(phase === 'old' ? { reconnectJitterMs: 0, reconnectSecondJitterMs: 0 } : {}),
      },
      // No cluster to apply to: sync's applier does nothing.
      { logger, reader, applier: () => ({ reconcile: async () => ({ objects: [], prune: { ran: false, errors: [] } }) }) },
    );
    agent.core.on('state', (s) => {
      const now = Date.now();
      if (s.kind === 'ready') {
        ready.add(i);
        if (kill.at !== undefined && !backAt.has(i)) backAt.set(i, now);
      } else if (ready.delete(i) && kill.at !== undefined && !droppedAt.has(i)) {
        droppedAt.set(i, now);
      }
      if (s.kind === 'backing-off' && kill.at !== undefined) {
        if (s.reason.code === 'HAWSER_HUB_BUSY') hubBusy++;
        else failedDials++;
      }
    });
    agents.push(agent);
  }
  const deadline = Date.now() + 120_000;
  while (ready.size < n) {
    if (Date.now() > deadline) throw new Error(`${phase}: only ${ready.size}/${n} agents ready`);
    await sleep(100);
  }
  // Each agent's first heartbeat acked (the connection counts as healthy): heartbeats go at once on welcome.
  await sleep(2_000);

  log(`${phase}: all ${n} ready; SIGKILL the hub and start it again`);
  const killedAt = Date.now();
  kill.at = killedAt;
  hub.cp.kill('SIGKILL');
  await killed(hub.cp);
  hub = await startHub(dir, ports, pki, phase);
  const pid = hub.cp.pid!;
  const cpu0 = readCpuMs(pid);
  const restartedAt = Date.now();
  const hubDownMs = restartedAt - killedAt;
  const recoverDeadline = Date.now() + recoverTimeoutMs;
  while (backAt.size < n) {
    if (Date.now() > recoverDeadline) throw new Error(`${phase}: only ${backAt.size}/${n} agents back within ${recoverTimeoutMs} ms`);
    await sleep(50);
  }
  const cpu1 = readCpuMs(pid);
  const allBack = Math.max(...backAt.values());

  const waits = [...backAt.entries()].map(([i, at]) => at - (droppedAt.get(i) ?? killedAt)).sort((a, b) => a - b);
  const perSecond = new Map<number, number>();
  for (const at of backAt.values()) {
    const s = Math.floor((at - killedAt) / 1000);
    perSecond.set(s, (perSecond.get(s) ?? 0) + 1);
  }
  const result: PhaseResult = {
    phase,
    agents: n,
    allBackMs: allBack - killedAt,
    longestWaitMs: waits[waits.length - 1]!,
    medianWaitMs: waits[Math.floor(waits.length / 2)]!,
    peakWelcomesPerSec: Math.max(...perSecond.values()),
    hubBusyRefusals: hubBusy,
    failedDials,
    hubCpuMs: cpu1 - cpu0,
    hubDownMs,
    hubCpuPercent: ((cpu1 - cpu0) / Math.max(1, allBack - restartedAt)) * 100,
  };
  log(`${phase}: ${JSON.stringify(result)}`);
  await Promise.all(agents.map((a) => a.stop()));
  hub.cp.kill('SIGTERM');
  await killed(hub.cp);
  return result;
}

function ratio(a: number, b: number): string {
  return b > 0 ? (a / b).toFixed(2) : '-';
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'hawser-bench-reconnect-'));
  try {
    const pki = await makeBenchPki(root);
    if (flags.mode === 'refusal-cost') {
      const costs = await runRefusalCostBench({ pki, dials: Number(flags.dials) });
      console.log('\n| refused at | server CPU per refused dial | vs a TLS refusal |\n|---|---|---|');
      const tls = costs.find((c) => c.mode === 'tls')!.cpuMsPerDial;
      for (const c of costs) console.log(`| ${c.mode} | ${c.cpuMsPerDial.toFixed(3)} ms | ${ratio(c.cpuMsPerDial, tls)} |`);
      return;
    }
    if (flags.mode === 'reset') {
      const builds = [...(flags['baseline-dir'] ? [{ label: 'baseline', dir: flags['baseline-dir'] }] : []), { label: 'this', dir: repoRoot }];
      const reset = await runResetBench({ builds, resets: Number(flags.resets), latencyMs: Number(flags.latency), rateKBps: Number(flags.rate), root, pki });
      const out = join(repoRoot, 'bench', 'results', `reconnect-reset-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}.json`);
      mkdirSync(dirname(out), { recursive: true });
      writeFileSync(out, `${JSON.stringify({ builds, results: reset }, null, 2)}\n`);
      console.log(`\nresults: ${out}`);
      return;
    }
    const results = new Map<Phase, PhaseResult>();
    const phases = flags.phases!.split(',');
    for (const phase of phases) if (!['old', 'fixed', 'new', 'tight'].includes(phase)) throw new Error(`--phases takes old, fixed, new and tight, got "${phase}"`);
    for (const phase of phases as Phase[]) results.set(phase, await runPhase(phase, root, pki));

    const rows: Array<[string, (r: PhaseResult) => number, string]> = [
      ['hub down (SIGKILL to healthy again)', (r) => r.hubDownMs / 1000, 's'],
      ['all agents back after the kill', (r) => r.allBackMs / 1000, 's'],
      ['longest wait of any agent', (r) => r.longestWaitMs / 1000, 's'],
      ['median wait', (r) => r.medianWaitMs / 1000, 's'],
      ['peak welcomes per second', (r) => r.peakWelcomesPerSec, '/s'],
      ['HAWSER_HUB_BUSY refusals', (r) => r.hubBusyRefusals, ''],
      ['other failed dials', (r) => r.failedDials, ''],
      ['hub CPU from restart to all back', (r) => r.hubCpuMs / 1000, 'CPU s'],
      ['hub CPU over the recovery', (r) => r.hubCpuPercent, '% of a core'],
    ];
    const old = results.get('old');
    const neu = results.get('new');
    const ran = [...results.values()];
    console.log(`\nhub restart under ${n} agents (${cpus().length} cores, ${process.version})\n`);
    console.log(`| | ${ran.map((r) => r.phase).join(' | ')} | new/old |\n|---|${ran.map(() => '---|').join('')}---|`);
    for (const [what, get, unit] of rows) {
      const cells = ran.map((r) => get(r).toFixed(1)).join(' | ');
      console.log(`| ${what} (${unit || 'count'}) | ${cells} | ${old && neu ? ratio(get(neu), get(old)) : '-'} |`);
    }
    const out = join(repoRoot, 'bench', 'results', `reconnect-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}.json`);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify({ agents: n, rampPerSec, results: [...results.values()] }, null, 2)}\n`);
    console.log(`\nresults: ${out}`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
