// One fuzz run against a started world: register the workers' clusters, watch
// the hub and the healthy agents, throw the cases, and judge the whole run.

import { Prng } from './prng.js';
import { strangerPool, type GeneratorOptions } from './frames.js';
import { Monitor, type MonitorReport } from './monitor.js';
import type { Finding } from './oracle.js';
import { type RecordedFinding, registerIdentity, runFuzz, type RunOptions, type RunResult, type WorkerIdentity } from './runner.js';
import type { FuzzWorld } from './world.js';

/** What a run takes, less what the campaign supplies itself (generator from the seed, the hub it started, the stop signal). */
export type CampaignOptions = Omit<RunOptions, 'generator' | 'signal' | 'target' | 'caPem'> & { seed: number };

export interface CampaignReport {
  seed: number;
  concurrency: number;
  maxFrameBytes: number;
  run: RunResult;
  monitor: MonitorReport;
  rssBoundBytes: number;
  /** Run-level findings (hub exit, memory, healthy agents), beside the per-frame ones in run.findings. */
  runFindings: Finding[];
}

/**
 * How far the hub's RSS may rise above where it started. Nothing the fuzz
 * does should leave state behind that grows with the frames sent: the
 * clusters it can create are a fixed pool (the workers' own and the
 * strangers'), so what remains is in flight:
 *  - each open stream's inbound queue: at most 64 frames (FrameQueue) of at
 *    most 2x --max-frame-bytes (grpc-js's receive limit), per worker;
 *  - 96 MiB for the rest: V8's young generation (up to 3 x 16 MiB) and the
 *    garbage an old generation holds between major collections, LevelDB's
 *    write buffer (4 MiB) and block cache (8 MiB), TLS and HTTP/2 buffers.
 * It does not grow with the run's length, so a per-frame leak crosses it in a
 * long run: at concurrency 24 (288 MiB) a leak of 300 bytes a frame does
 * within 1,000,000 frames. Smaller leaks hide in V8's heap sizing; compare
 * the end RSS of short and long runs for those.
 */
export function rssBoundBytes(concurrency: number, maxFrameBytes: number): number {
  return 96 * 1024 * 1024 + concurrency * 64 * 2 * maxFrameBytes;
}

export async function runCampaign(world: FuzzWorld, o: CampaignOptions): Promise<CampaignReport> {
  const generator: GeneratorOptions = {
    seed: o.seed,
    bootstrapToken: world.bootstrapToken,
    maxFrameBytes: world.maxFrameBytes,
    strangers: strangerPool(o.seed),
  };
  // Each worker owns one cluster, so its sessions never supersede another worker's.
  const ids = new Prng(o.seed, 0xfffffffd);
  const identities: WorkerIdentity[] = [];
  for (let w = 0; w < o.concurrency; w++) {
    identities.push(await registerIdentity(world.hub.tunnel, world.caPem, generator, ids.uuid(), `fuzz-worker-${w}`));
  }
  const monitor = await Monitor.start(
    world.hub,
    world.agents.map((a) => a.name),
  );
  let run: RunResult;
  try {
    run = await runFuzz(
      {
        target: world.hub.tunnel,
        caPem: world.caPem,
        generator,
        maxFrames: o.maxFrames,
        maxSeconds: o.maxSeconds,
        concurrency: o.concurrency,
        replyDeadlineMs: o.replyDeadlineMs,
        signal: monitor.hubGone.signal,
        ...(o.onlyCases ? { onlyCases: o.onlyCases } : {}),
        ...(o.onFinding ? { onFinding: o.onFinding } : {}),
        ...(o.onProgress ? { onProgress: o.onProgress } : {}),
      },
      identities,
    );
  } catch (err) {
    await monitor.stop();
    throw err;
  }
  const report = await monitor.stop();
  const bound = rssBoundBytes(o.concurrency, world.maxFrameBytes);
  const runFindings = [...report.findings];
  if (report.rss.peakBytes - report.rss.startBytes > bound) {
    runFindings.push({
      signature: 'hub-rss-over-bound',
      detail: `hub RSS rose from ${mib(report.rss.startBytes)} to a peak of ${mib(report.rss.peakBytes)} (bound: start + ${mib(bound)})`,
    });
  }
  for (const a of world.agents) {
    if (!a.proc.running) runFindings.push({ signature: 'healthy-agent-exited', detail: `${a.name}: ${JSON.stringify(a.proc.exitInfo)}` });
  }
  return { seed: o.seed, concurrency: o.concurrency, maxFrameBytes: world.maxFrameBytes, run, monitor: report, rssBoundBytes: bound, runFindings };
}

export const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

/** Every finding signature of a run with its count (frame-level and run-level). */
export function findingSignatures(report: CampaignReport): Record<string, number> {
  const out: Record<string, number> = { ...report.run.findingCounts };
  for (const f of report.runFindings) out[f.signature] = (out[f.signature] ?? 0) + 1;
  return out;
}

export function formatFinding(f: RecordedFinding): string {
  const more = f.frameBytes > f.frameHex.length / 2 ? `… (${f.frameBytes} bytes)` : ` (${f.frameBytes} bytes)`;
  return [
    `FINDING ${f.signature}: ${f.detail}`,
    `  seed ${f.seed}, case ${f.caseIndex} (${f.cls}), step ${f.step < 0 ? 'session hello' : f.step}: ${f.note}`,
    `  frame: ${f.frameHex}${more}`,
    `  replay: npm run fuzz -- --seed ${f.seed} --case ${f.caseIndex}`,
  ].join('\n');
}

export function formatReport(r: CampaignReport): string {
  const lines: string[] = [];
  const secs = r.run.elapsedMs / 1000;
  lines.push(`seed ${r.seed}: ${r.run.frames} frames in ${r.run.cases} cases, ${secs.toFixed(1)} s (${Math.round(r.run.frames / Math.max(secs, 0.001))} frames/s), concurrency ${r.concurrency}, --max-frame-bytes ${r.maxFrameBytes}`);
  if (r.run.redials > 0) lines.push(`fresh connections after a hang or a dropped connection: ${r.run.redials}`);
  lines.push(`classes: ${Object.entries(r.run.classes).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  lines.push(`answers: ${Object.entries(r.run.answers).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  const m = r.monitor;
  lines.push(`hub RSS: start ${mib(m.rss.startBytes)}, peak ${mib(m.rss.peakBytes)}, end ${mib(m.rss.endBytes)} (${m.rss.samples} samples; bound start + ${mib(r.rssBoundBytes)})`);
  for (const a of m.agents) lines.push(`healthy agent ${a.name}: Ready=True in ${a.readyChecks - a.notReady}/${a.readyChecks} checks, sessions ${a.sessionsStart} -> ${a.sessionsEnd}`);
  const sigs = findingSignatures(r);
  if (Object.keys(sigs).length === 0) {
    lines.push('result: no findings');
  } else {
    lines.push(`result: ${Object.values(sigs).reduce((a, b) => a + b, 0)} findings`);
    for (const [s, n] of Object.entries(r.run.findingsByClass).sort((a, b) => b[1] - a[1])) lines.push(`  ${n} x ${s}`);
    for (const f of r.runFindings) lines.push(`FINDING ${f.signature}: ${f.detail}`);
  }
  return lines.join('\n');
}
