import { describe, expect, it } from 'vitest';
import { percentile, ratio } from '../../bench/common.js';
import { type MetricRow, renderTable, summariseLatency, summariseThroughput, verdict } from '../../bench/proxy/report.js';
import { seeded } from './support.js';

describe('percentile (nearest rank)', () => {
  it('is always one of the values, whatever their order', () => {
    const values = [5, 1, 4, 2, 3];
    expect(percentile(values, 50)).toBe(3);
    expect(percentile(values, 100)).toBe(5);
    expect(percentile(values, 1)).toBe(1);
    expect(values).toEqual([5, 1, 4, 2, 3]);
  });

  it('p99 of 100 values is the 99th smallest; of 1000, the 990th', () => {
    const random = seeded(8);
    const hundred = Array.from({ length: 100 }, (_, i) => i + 1).sort(() => random() - 0.5);
    expect(percentile(hundred, 99)).toBe(99);
    const thousand = Array.from({ length: 1000 }, (_, i) => i + 1).sort(() => random() - 0.5);
    expect(percentile(thousand, 99)).toBe(990);
    expect(percentile(thousand, 50)).toBe(500);
  });

  it('is NaN for no values and refuses p outside (0, 100]', () => {
    expect(percentile([], 50)).toBeNaN();
    expect(() => percentile([1], 0)).toThrow(RangeError);
    expect(() => percentile([1], 101)).toThrow(RangeError);
  });
});

describe('ratio', () => {
  it('divides, and is NaN for a missing or non-positive baseline', () => {
    expect(ratio(3, 2)).toBe(1.5);
    expect(ratio(1, 0)).toBeNaN();
    expect(ratio(Number.NaN, 2)).toBeNaN();
    expect(ratio(2, Number.NaN)).toBeNaN();
  });
});

describe('summaries', () => {
  it('latency: p50 and p99 of the samples', () => {
    const samples = Array.from({ length: 200 }, (_, i) => (i === 199 ? 50 : 1 + i / 1000));
    expect(summariseLatency(samples)).toEqual({ p50Ms: 1.099, p99Ms: 1.197, count: 200 });
  });

  it('throughput: the median rate in MB/s (10^6 bytes), so one slow repetition does not move it', () => {
    const mb64 = 64 * 1e6;
    const t = summariseThroughput([
      { bytes: mb64, ms: 100 },
      { bytes: mb64, ms: 2000 },
      { bytes: mb64, ms: 80 },
    ]);
    expect(t).toEqual({ mbPerSec: 640, bytes: mb64, reps: 3 });
  });
});

describe('verdict against the aims', () => {
  const latency = (direct: number, hawser?: number, remotedialer?: number): MetricRow => ({
    label: 'GET p50',
    kind: 'latency',
    unit: 'ms',
    values: { direct, ...(hawser === undefined ? {} : { hawser }), ...(remotedialer === undefined ? {} : { remotedialer }) },
  });
  const throughput = (direct: number, hawser?: number, remotedialer?: number): MetricRow => ({
    ...latency(direct, hawser, remotedialer),
    label: 'large',
    kind: 'throughput',
    unit: 'MB/s',
  });

  it('latency: at most 1.3x direct is within the aim; lower than remotedialer is ahead', () => {
    expect(verdict(latency(1, 1.3, 1.5))).toEqual({ hawserRatio: 1.3, remotedialerRatio: 1.5, withinAim: true, aheadOfRemotedialer: true });
    expect(verdict(latency(1, 1.31, 1.2))).toMatchObject({ withinAim: false, aheadOfRemotedialer: false });
  });

  it('throughput: at least 0.8x direct is within the aim; higher than remotedialer is ahead', () => {
    expect(verdict(throughput(1000, 800, 500))).toMatchObject({ hawserRatio: 0.8, remotedialerRatio: 0.5, withinAim: true, aheadOfRemotedialer: true });
    expect(verdict(throughput(1000, 790, 900))).toMatchObject({ withinAim: false, aheadOfRemotedialer: false });
  });

  it('a way not measured gives no verdict rather than a false one', () => {
    const v = verdict(latency(1, undefined, 1.5));
    expect(v.hawserRatio).toBeNaN();
    expect(v.withinAim).toBeUndefined();
    expect(v.aheadOfRemotedialer).toBeUndefined();
    expect(verdict(throughput(1000, 900)).aheadOfRemotedialer).toBeUndefined();
  });

  it('the table shows ratios, the aim, and "-" where a way is missing', () => {
    const table = renderTable([latency(2, 2.4, 3), throughput(1000, undefined, 400)]).split('\n');
    expect(table).toHaveLength(4);
    expect(table[2]).toBe('| GET p50 (ms) | 2.00 | 2.40 | 3.00 | 1.20 | 1.50 | yes (≤ 1.3) | yes |');
    expect(table[3]).toBe('| large (MB/s) | 1000 | - | 400 | - | 0.40 | - | - |');
  });
});
