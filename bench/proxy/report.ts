import { percentile, ratio } from '../common.js';

// The pure part of bench/proxy: figures from samples, ratios against direct,
// the aims, and the table. No I/O here (test/unit/bench-proxy.test.ts).

export const ways = ['direct', 'hawser', 'remotedialer'] as const;
export type Way = (typeof ways)[number];

/** Issue 8 §6: through hawser, latency at most 1.3x direct and throughput at least 0.8x, both ahead of remotedialer. */
export const aims = { latencyMaxRatio: 1.3, throughputMinRatio: 0.8 } as const;

export interface LatencyFigures {
  p50Ms: number;
  p99Ms: number;
  count: number;
}

export interface ThroughputFigures {
  /** Median over the repetitions, MB = 10^6 bytes. */
  mbPerSec: number;
  /** Bytes of one response. */
  bytes: number;
  reps: number;
}

export function summariseLatency(samplesMs: readonly number[]): LatencyFigures {
  return { p50Ms: percentile(samplesMs, 50), p99Ms: percentile(samplesMs, 99), count: samplesMs.length };
}

/** Each run: bytes received and the time from sending the request to the last byte. */
export function summariseThroughput(runs: ReadonlyArray<{ bytes: number; ms: number }>): ThroughputFigures {
  const rates = runs.map((r) => (r.ms > 0 ? r.bytes / 1e6 / (r.ms / 1000) : Number.NaN));
  return { mbPerSec: percentile(rates, 50), bytes: runs[0]?.bytes ?? 0, reps: runs.length };
}

export type MetricKind = 'latency' | 'throughput';

export interface MetricRow {
  /** What is measured, e.g. "kube-apiserver GET p50". */
  label: string;
  kind: MetricKind;
  unit: string;
  /** Per way; undefined where that way was not measured. */
  values: Partial<Record<Way, number>>;
}

export interface Verdict {
  /** vs direct; NaN where not measured. */
  hawserRatio: number;
  remotedialerRatio: number;
  /** undefined where hawser (or direct) was not measured. */
  withinAim: boolean | undefined;
  /** undefined where hawser or remotedialer was not measured. */
  aheadOfRemotedialer: boolean | undefined;
}

/** Lower is better for latency, higher for throughput; a tie with remotedialer counts as ahead of it. */
export function verdict(row: MetricRow): Verdict {
  const direct = row.values.direct ?? Number.NaN;
  const hawser = row.values.hawser ?? Number.NaN;
  const remotedialer = row.values.remotedialer ?? Number.NaN;
  const hawserRatio = ratio(hawser, direct);
  const remotedialerRatio = ratio(remotedialer, direct);
  const latency = row.kind === 'latency';
  const withinAim = Number.isNaN(hawserRatio)
    ? undefined
    : latency
      ? hawserRatio <= aims.latencyMaxRatio
      : hawserRatio >= aims.throughputMinRatio;
  const bothMeasured = Number.isFinite(hawser) && Number.isFinite(remotedialer);
  const aheadOfRemotedialer = bothMeasured ? (latency ? hawser <= remotedialer : hawser >= remotedialer) : undefined;
  return { hawserRatio, remotedialerRatio, withinAim, aheadOfRemotedialer };
}

function num(n: number | undefined, digits: number): string {
  return n !== undefined && Number.isFinite(n) ? n.toFixed(digits) : '-';
}

function yesNo(b: boolean | undefined): string {
  return b === undefined ? '-' : b ? 'yes' : 'NO';
}

/** A Markdown table (pasted as is into bench/README.md). */
export function renderTable(rows: readonly MetricRow[]): string {
  const header = ['', 'direct', 'hawser', 'remotedialer', 'hawser/direct', 'remotedialer/direct', 'hawser within aim', 'hawser ahead of remotedialer'];
  const lines = [header, header.map(() => '---')];
  for (const row of rows) {
    const v = verdict(row);
    const digits = row.kind === 'latency' ? 2 : 0;
    const aim = row.kind === 'latency' ? `≤ ${aims.latencyMaxRatio}` : `≥ ${aims.throughputMinRatio}`;
    lines.push([
      `${row.label} (${row.unit})`,
      num(row.values.direct, digits),
      num(row.values.hawser, digits),
      num(row.values.remotedialer, digits),
      `${num(v.hawserRatio, 2)}`,
      `${num(v.remotedialerRatio, 2)}`,
      v.withinAim === undefined ? '-' : `${yesNo(v.withinAim)} (${aim})`,
      yesNo(v.aheadOfRemotedialer),
    ]);
  }
  return lines.map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}
