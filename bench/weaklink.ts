// bench/weaklink: a 2 MB desired state over a weak link, from empty to
// converged, against the link's byte-time limit; and heartbeat round trips
// during the transfer against idle.
//
// A real `hawser hub` process, a real agent process (bench/weaklink-agent.ts:
// startAgent with the CLI's defaults) applying to a real kube-apiserver from
// the testkit (--cluster fake: a cluster in memory, as bench/distribution),
// and between them a real toxiproxy: --rate KB/s and --latency ms each way,
// the bandwidth toxic first (toxiproxy's latency toxic buffers ahead of what
// follows it), and a reset of every connection each --reset s from the start
// of the transfer (the proxy disabled and enabled again), the first one
// --first-reset s after the first sync byte (default 3 s, so a compressed
// transfer of a few seconds meets one too; 0: the first after --reset s
// as before). The agent runs the
// reconnect behaviour of its defaults (what this commit has; see README).
//
// The desired state: bench/corpus.ts (seed --seed) until --bytes of compact
// JSON, applied to the hub beforehand as feeds; the clock starts with the
// Subscription that sends them all to the cluster. Measured:
//   synced:  the agent holds every object (its last group durable and acked);
//   applied: an apply report covering every object (errors counted);
//   encoded: sync bytes the hub sent (hawser_hub_sync_sent_bytes_total);
//   limit:   encoded ÷ rate, plus one round trip (the first byte's way out,
//            the last ack's way back) that no protocol avoids;
//   heartbeat RTT p50/p99 (as the agent measures it) while bytes flowed,
//   against the idle figure measured before, and one chunk's transmit time
//   ("no heartbeat during the transfer" when none came back while it ran);
//   apply reports: frames and bytes the hub received, its largest frame.
//
//   npm run bench:weaklink                                    # 2 MB, real kube-apiserver
//   npm run bench:weaklink -- --bytes 300000 --cluster fake   # cheap
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { closeSync, openSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { httpsRequest, type KubeCluster, seeded, startKubeCluster, startToxiproxy, type Toxiproxy } from '../src/testkit/index.js';
import { type BenchHub, benchApi, findRepoRoot, sleep, startBenchHub } from './common.js';
import { generateCorpus, type Manifest } from './corpus.js';
import type { FromWeaklinkAgent, WeaklinkAgentStart } from './weaklink-agent.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = findRepoRoot(here);
const bootstrapToken = 'abcdef.0123456789abcdef';
const operatorToken = 'hwo_bench-admin-0123456789abcdef';

const { values: flags } = parseArgs({
  options: {
    bytes: { type: 'string', default: '2000000' },
    rate: { type: 'string', default: '32' },
    latency: { type: 'string', default: '300' },
    reset: { type: 'string', default: '30' },
    'first-reset': { type: 'string', default: '3' },
    lease: { type: 'string', default: '6000' },
    idle: { type: 'string', default: '10' },
    cluster: { type: 'string', default: 'kube' },
    compression: { type: 'string', default: 'on' },
    seed: { type: 'string', default: '7' },
    timeout: { type: 'string', default: '900' },
  },
});
const targetBytes = Number(flags.bytes);
const rateKBps = Number(flags.rate);
const latencyMs = Number(flags.latency);
const resetMs = Number(flags.reset) * 1000;
const firstResetMs = Number(flags['first-reset']) * 1000;
const leaseMs = Number(flags.lease);
const idleMs = Number(flags.idle) * 1000;
const timeoutMs = Number(flags.timeout) * 1000;
const realCluster = flags.cluster === 'kube';
const compression = flags.compression !== 'off';
if (flags.cluster !== 'kube' && flags.cluster !== 'fake') throw new Error(`--cluster is kube or fake, not ${flags.cluster}`);
for (const [name, v] of [['bytes', targetBytes], ['rate', rateKBps], ['lease', leaseMs], ['idle', idleMs]] as const) {
  if (!(Number.isFinite(v) && v > 0)) throw new Error(`--${name} must be a positive number`);
}

function log(message: string): void {
  console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
}


function corpus(): { objects: Manifest[]; bytes: number } {
  const all = generateCorpus(seeded(Number(flags.seed)), Math.ceil(targetBytes / 300));
  const objects: Manifest[] = [];
  let bytes = 0;
  const seen = new Set<string>();
  for (const m of all) {
    if (bytes >= targetBytes) break;
    const id = `${m.kind}/${m.metadata.namespace ?? ''}/${m.metadata.name}`;
    if (seen.has(id)) continue;
    seen.add(id);
    objects.push(m);
    bytes += Buffer.byteLength(JSON.stringify(m));
  }
  return { objects, bytes };
}

function quantile(values: number[], q: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

const children = new Set<ChildProcess>();

function startHub(dir: string): Promise<BenchHub> {
  return startBenchHub({ bin: join(repoRoot, 'bin/hawser.js'), dir, bootstrapToken, operatorToken, logLevel: 'info', track: (cp) => children.add(cp) });
}


async function metric(hub: BenchHub, name: string): Promise<number> {
  const text = await benchApi(hub, 'GET', '/metrics');
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(`${name}{`) && line.includes('cluster="weaklink"')) sum += Number(line.split(' ').at(-1));
  return sum;
}

/** Namespaces the corpus names, so the apiserver takes its objects. */
async function createNamespaces(kube: KubeCluster, objects: Manifest[]): Promise<void> {
  for (const ns of new Set(objects.map((o) => o.metadata.namespace).filter((n): n is string => Boolean(n)))) {
    const r = await httpsRequest(`${kube.url}/api/v1/namespaces`, {
      method: 'POST',
      ca: kube.caPem,
      token: kube.token,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }),
    });
    if (r.status !== 201 && r.status !== 409) throw new Error(`namespace ${ns}: HTTP ${r.status} ${r.body.slice(0, 200)}`);
  }
}

class Agent {
  readonly cp: ChildProcess;
  readonly rtts: Array<{ at: number; ms: number }> = [];
  readonly committed: Array<{ at: number; objects: number }> = [];
  readonly reports: Array<{ at: number; objects: number; errors: number; firstError?: string }> = [];
  readonly states: Array<{ at: number; kind: string; code?: string }> = [];

  constructor(start: WeaklinkAgentStart, logFile: string) {
    const fd = openSync(logFile, 'a');
    this.cp = fork(join(here, 'weaklink-agent.js'), [], { stdio: ['ignore', fd, fd, 'ipc'], execArgv: ['--no-deprecation'] });
    closeSync(fd);
    children.add(this.cp);
    this.cp.on('message', (m: FromWeaklinkAgent) => {
      if (m.type === 'rtt') this.rtts.push(m);
      else if (m.type === 'committed') this.committed.push(m);
      else if (m.type === 'report') this.reports.push(m);
      else if (m.type === 'state') this.states.push(m);
      else log(`agent: ${m.message}`);
    });
    this.cp.send(start);
  }

  async until<T>(what: string, probe: () => T | undefined, ms: number): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = probe();
      if (v !== undefined) return v;
      if (this.cp.exitCode !== null) throw new Error(`agent exited with ${this.cp.exitCode} waiting for ${what}`);
      if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
      await sleep(50);
    }
  }
}

function gitHead(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: repoRoot, encoding: 'utf8' }).trim();
    return dirty ? `${head}+changes` : head;
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'hawser-weaklink-'));
  let toxi: Toxiproxy | undefined;
  let kube: KubeCluster | undefined;
  let resetTimer: NodeJS.Timeout | undefined;
  try {
    const { objects, bytes } = corpus();
    log(`corpus: ${objects.length} manifests, ${bytes} bytes of JSON (seed ${flags.seed}); cluster: ${realCluster ? 'a real kube-apiserver' : 'in memory'}`);
    [toxi, kube] = await Promise.all([startToxiproxy({ baseDir: root }), realCluster ? startKubeCluster({ name: 'weaklink', baseDir: root }) : Promise.resolve(undefined)]);
    if (kube) await createNamespaces(kube, objects);
    const hub = await startHub(join(root, 'hub'));
    const proxy = await toxi.createProxy('weaklink', hub.target);
    for (const stream of ['downstream', 'upstream'] as const) {
      await proxy.addToxic({ name: `rate_${stream}`, type: 'bandwidth', stream, attributes: { rate: rateKBps } });
      await proxy.addToxic({ name: `delay_${stream}`, type: 'latency', stream, attributes: { latency: latencyMs } });
    }
    const agent = new Agent(
      {
        type: 'start',
        parentUrl: proxy.listen,
        caFile: hub.caFile,
        cacheDir: join(root, 'agent'),
        bootstrapToken,
        leaseDurationMs: leaseMs,
        enableCompression: compression,
        ...(kube ? { kubeconfig: kube.kubeconfigPath } : {}),
      },
      join(root, 'agent.log'),
    );
    await agent.until('the agent synced (empty)', () => agent.committed[0], 120_000);
    log(`agent ready (lease expiries so far: ${await metric(hub, 'hawser_cluster_lease_expiries_total')}); idle heartbeats for ${idleMs / 1000} s`);
    const idleFrom = Date.now();
    await sleep(idleMs);
    const idle = agent.rtts.filter((r) => r.at >= idleFrom).map((r) => r.ms);

    // The feeds into the hub's store first (not timed), then the Subscription: the clock starts.
    await benchApi(hub, 'POST', '/api/v1/apply', objects.map((o) => JSON.stringify(o)).join('\n---\n'));
    const feeds = objects.map((o) => ({ apiVersion: o.apiVersion, kind: o.kind, name: o.metadata.name, ...(o.metadata.namespace ? { namespace: o.metadata.namespace } : {}) }));
    // A Subscription names at most 1,000 feeds: as many as it takes, in one apply.
    const subscriptions: string[] = [];
    for (let i = 0; i < feeds.length; i += 1000) {
      subscriptions.push(
        JSON.stringify({
          apiVersion: 'apps.clusternet.io/v1alpha1',
          kind: 'Subscription',
          metadata: { name: `weaklink-${i / 1000}`, namespace: 'default' },
          spec: { subscribers: [{ clusterAffinity: { matchLabels: { bench: 'weaklink' } } }], feeds: feeds.slice(i, i + 1000) },
        }),
      );
    }
    const sent0 = await metric(hub, 'hawser_hub_sync_sent_bytes_total');
    const reportFrames0 = await metric(hub, 'hawser_hub_apply_report_frames_total');
    const reportBytes0 = await metric(hub, 'hawser_hub_apply_report_bytes_total');
    const raw0 = await metric(hub, 'hawser_hub_sync_raw_bytes_total');
    const sessions0 = await metric(hub, 'hawser_hub_sessions_total');
    const expiries0 = await metric(hub, 'hawser_cluster_lease_expiries_total');
    const t0 = Date.now();
    await benchApi(hub, 'POST', '/api/v1/apply', subscriptions.join('\n---\n'));
    let resets = 0;
    const reset = () => {
      resets++;
      void proxy.disable().then(() => proxy.enable());
      resetTimer = setTimeout(reset, resetMs);
    };
    // Without --first-reset the period starts with the Subscription; with it, at the first sync byte (below).
    if (resetMs > 0 && !(firstResetMs > 0)) resetTimer = setTimeout(reset, resetMs);
    // The first sync byte, seen on the hub's counter.
    let firstByteAt: number | undefined;
    const deadline = t0 + timeoutMs;
    let synced: { at: number } | undefined;
    let applied: { at: number; errors: number; firstError?: string } | undefined;
    while (!synced || !applied) {
      if (Date.now() > deadline) throw new Error(`not converged within ${timeoutMs / 1000} s: ${agent.committed.at(-1)?.objects ?? 0}/${objects.length} held`);
      if (firstByteAt === undefined && (await metric(hub, 'hawser_hub_sync_sent_bytes_total')) > sent0) {
        firstByteAt = Date.now();
        if (resetMs > 0 && firstResetMs > 0) resetTimer = setTimeout(reset, firstResetMs);
      }
      synced ??= agent.committed.find((c) => c.at >= t0 && c.objects >= objects.length);
      applied ??= synced ? agent.reports.find((r) => r.at >= synced!.at && r.objects >= objects.length) : undefined;
      await sleep(100);
    }
    clearTimeout(resetTimer);
    const encoded = (await metric(hub, 'hawser_hub_sync_sent_bytes_total')) - sent0;
    const raw = (await metric(hub, 'hawser_hub_sync_raw_bytes_total')) - raw0;
    const sessions = (await metric(hub, 'hawser_hub_sessions_total')) - sessions0;
    const lostLeases = (await metric(hub, 'hawser_cluster_lease_expiries_total')) - expiries0;
    // Apply reports go in parts, each acked: wait until the hub's count stops moving (3 s, at most 120 s).
    for (let last = -1, quietSince = Date.now(), giveUp = Date.now() + 120_000; Date.now() < giveUp; await sleep(250)) {
      const now = await metric(hub, 'hawser_hub_apply_report_bytes_total');
      if (now !== last) [last, quietSince] = [now, Date.now()];
      else if (Date.now() - quietSince > 3_000) break;
    }
    const reportFrames = (await metric(hub, 'hawser_hub_apply_report_frames_total')) - reportFrames0;
    const reportBytes = (await metric(hub, 'hawser_hub_apply_report_bytes_total')) - reportBytes0;
    const largestReportFrame = await metric(hub, 'hawser_hub_apply_report_largest_frame_bytes');
    const peakInFlight = await metric(hub, 'hawser_hub_sync_peak_in_flight_bytes');
    const start = firstByteAt ?? t0;
    const during = agent.rtts.filter((r) => r.at > start && r.at <= synced.at).map((r) => r.ms);
    const rttMs = 2 * latencyMs;
    const limitS = encoded / (rateKBps * 1024) + rttMs / 1000;
    const chunkS = (32 * 1024) / (rateKBps * 1024);
    const syncS = (synced.at - t0) / 1000;
    const linkS = (synced.at - start) / 1000;
    const appliedS = (applied.at - t0) / 1000;
    const f = (x: number, d = 2) => x.toFixed(d);
    console.log(`\nbench/weaklink at ${gitHead()}: ${objects.length} manifests, ${bytes} B of JSON; ${rateKBps} KB/s, ${latencyMs} ms each way, a reset every ${resetMs / 1000} s${firstResetMs > 0 ? ` (the first ${firstResetMs / 1000} s after the first sync byte)` : ''}; compression ${compression ? 'on' : 'off'}; cluster ${realCluster ? 'kube-apiserver' : 'in memory'}`);
    console.log('| | value | against | ratio |\n|---|---|---|---|');
    console.log(`| encoded bytes (sync, as sent) | ${encoded} | ${raw} before compression, ${bytes} JSON | ${f(bytes / encoded, 1)}x smaller than JSON |`);
    console.log(`| byte-time limit (encoded ÷ rate + 1 RTT) | ${f(limitS)} s | | |`);
    console.log(`| subscription -> all held (synced) | ${f(syncS)} s | limit | ${f(syncS / limitS)}x |`);
    console.log(`| first sync byte -> all held | ${f(linkS)} s | limit | ${f(linkS / limitS)}x |`);
    console.log(`| subscription -> applied (${applied.errors} errors${applied.firstError ? `, e.g. ${applied.firstError}` : ''}) | ${f(appliedS)} s | synced | +${f(appliedS - syncS)} s |`);
    for (const [label, q] of [['p50', 0.5], ['p99', 0.99]] as const) {
      const d = quantile(during, q);
      const i = quantile(idle, q);
      const chunk = q === 0.99 ? ` (one chunk: ${f(chunkS * 1000, 0)} ms)` : '';
      if (d === undefined) console.log(`| heartbeat RTT ${label}, during / idle | no heartbeat during the transfer | ${i === undefined ? 'none idle' : `${f(i, 0)} ms`} | |`);
      else if (i === undefined) console.log(`| heartbeat RTT ${label}, during / idle | ${f(d, 0)} ms | no heartbeat while idle | |`);
      else console.log(`| heartbeat RTT ${label}, during / idle | ${f(d, 0)} ms | ${f(i, 0)} ms | +${f(d - i, 0)} ms${chunk} |`);
    }
    console.log(`| heartbeats during / idle (samples) | ${during.length} | ${idle.length} | |`);
    console.log(`| resets during the run / sessions started / lease expiries | ${resets} | ${sessions} | ${lostLeases} |`);
    console.log(`| apply reports at the hub: frames / bytes / largest frame | ${reportFrames} | ${reportBytes} B | ${largestReportFrame} B |`);
    console.log(`| peak sync bytes in flight (hub, since it started) | ${peakInFlight} B | | |`);
    const drops = agent.states.filter((s) => s.at >= t0 && s.kind === 'backing-off');
    if (drops.length > 0) console.log(`\nreconnects: ${drops.map((d) => `${f((d.at - t0) / 1000, 1)} s ${d.code ?? ''}`).join(', ')}`);
    agent.cp.kill('SIGTERM');
    hub.cp.kill('SIGTERM');
  } finally {
    clearTimeout(resetTimer);
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await toxi?.stop().catch(() => undefined);
    await kube?.stop().catch(() => undefined);
    if (process.env.HAWSER_BENCH_KEEP) log(`kept ${root}`);
    else rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  for (const c of children) c.kill('SIGKILL');
  process.exit(1);
});
