// Watches the hub and the healthy agents while the fuzz runs: the hub's RSS
// from /proc/PID/status, that it is still running, that every healthy
// agent's ManagedCluster stays Ready=True, and that its session count holds.

import { readFileSync } from 'node:fs';
import { type HubProcess, readyStatus } from '../test/integration/harness.js';
import type { Finding } from './oracle.js';

export function parseVmRssBytes(procStatus: string): number | undefined {
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(procStatus);
  return m ? Number(m[1]) * 1024 : undefined;
}

export interface RssSummary {
  startBytes: number;
  peakBytes: number;
  endBytes: number;
  samples: number;
}

export interface MonitorReport {
  rss: RssSummary;
  /** Per healthy agent: sessions at start and end, Ready checks made and failed. */
  agents: Array<{ name: string; sessionsStart: number; sessionsEnd: number; readyChecks: number; notReady: number }>;
  findings: Finding[];
}

export class Monitor {
  private readonly rss: RssSummary;
  private readonly agentStats = new Map<string, { sessionsStart: number; sessionsEnd: number; readyChecks: number; notReady: number }>();
  private readonly findings: Finding[] = [];
  private rssTimer: NodeJS.Timeout | undefined;
  private healthLoop: Promise<void> | undefined;
  private stopped = false;
  /** Aborted when the hub is gone: the run stops. */
  readonly hubGone = new AbortController();

  private constructor(
    private readonly hub: HubProcess,
    private readonly agentNames: readonly string[],
    startBytes: number,
  ) {
    this.rss = { startBytes, peakBytes: startBytes, endBytes: startBytes, samples: 1 };
  }

  static async start(hub: HubProcess, agentNames: readonly string[], options: { rssIntervalMs?: number; healthIntervalMs?: number } = {}): Promise<Monitor> {
    const pid = hub.proc.pid;
    if (pid === undefined) throw new Error('the hub has no pid');
    const start = parseVmRssBytes(readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (start === undefined) throw new Error(`no VmRSS in /proc/${pid}/status`);
    const m = new Monitor(hub, agentNames, start);
    for (const name of agentNames) {
      const sessions = await hub.metric('hawser_hub_sessions_total', { cluster: name });
      // A Ready agent has had a session; reading 0 means /metrics did not answer, and the check would be vacuous.
      if (sessions < 1) throw new Error(`cannot read hawser_hub_sessions_total for ${name} from the hub's /metrics`);
      m.agentStats.set(name, { sessionsStart: sessions, sessionsEnd: sessions, readyChecks: 0, notReady: 0 });
    }
    m.rssTimer = setInterval(() => m.sampleRss(pid), options.rssIntervalMs ?? 250);
    m.healthLoop = m.watchHealth(options.healthIntervalMs ?? 1_000);
    return m;
  }

  private sampleRss(pid: number): void {
    let status: string;
    try {
      status = readFileSync(`/proc/${pid}/status`, 'utf8');
    } catch {
      return this.hubExited();
    }
    const bytes = parseVmRssBytes(status);
    if (bytes === undefined) return this.hubExited(); // a zombie has no VmRSS
    this.rss.samples++;
    this.rss.endBytes = bytes;
    this.rss.peakBytes = Math.max(this.rss.peakBytes, bytes);
  }

  private hubExited(): void {
    if (this.hubGone.signal.aborted) return;
    const info = this.hub.proc.exitInfo;
    this.findings.push({ signature: 'hub-exited', detail: `hub exited (${JSON.stringify(info)}); last log lines:\n${this.hub.proc.tail(20)}` });
    this.hubGone.abort();
  }

  private async watchHealth(intervalMs: number): Promise<void> {
    while (!this.stopped) {
      if (!this.hub.proc.running) this.hubExited();
      if (this.hubGone.signal.aborted) return;
      await this.checkAgents();
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }

  private async checkAgents(): Promise<void> {
    let clusters;
    try {
      clusters = await this.hub.clusters();
    } catch (err) {
      this.findings.push({ signature: 'hub-api-unreachable', detail: (err as Error).message });
      return;
    }
    for (const name of this.agentNames) {
      const stats = this.agentStats.get(name)!;
      stats.readyChecks++;
      const ready = readyStatus(clusters.find((c) => c.metadata.name === name));
      if (ready !== 'True') {
        stats.notReady++;
        if (stats.notReady === 1) this.findings.push({ signature: `healthy-agent-not-ready`, detail: `${name}: Ready=${ready} at ${new Date().toISOString()}` });
      }
    }
  }

  async stop(): Promise<MonitorReport> {
    this.stopped = true;
    clearInterval(this.rssTimer);
    await this.healthLoop;
    if (!this.hubGone.signal.aborted) {
      const pid = this.hub.proc.pid;
      if (pid !== undefined) this.sampleRss(pid);
      await this.checkAgents();
      for (const name of this.agentNames) {
        const stats = this.agentStats.get(name)!;
        stats.sessionsEnd = await this.hub.metric('hawser_hub_sessions_total', { cluster: name });
        if (stats.sessionsEnd !== stats.sessionsStart) {
          this.findings.push({ signature: 'healthy-agent-reconnected', detail: `${name}: sessions ${stats.sessionsStart} -> ${stats.sessionsEnd}` });
        }
      }
    }
    return {
      rss: { ...this.rss },
      agents: this.agentNames.map((name) => ({ name, ...this.agentStats.get(name)! })),
      findings: [...this.findings],
    };
  }
}
