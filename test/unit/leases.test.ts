import { describe, expect, it } from 'vitest';
import { LeaseTracker } from '../../src/hub/leases.js';
import { ManualClock } from '../../src/tunnel/clock.js';

function tracker(start = 1_000_000) {
  const clock = new ManualClock(start);
  const expired: Array<{ name: string; at: number }> = [];
  const leases = new LeaseTracker(clock, { expired: (name) => expired.push({ name, at: clock.now() }) });
  return { clock, leases, expired, start };
}

describe('LeaseTracker', () => {
  it('expires a lease exactly once, at its deadline and not before', () => {
    const { clock, leases, expired, start } = tracker();
    const { expiresAt, wasExpired } = leases.renew('edge-1', 60_000);
    expect(expiresAt).toBe(start + 60_000);
    expect(wasExpired).toBe(false);
    expect(leases.expiresAt('edge-1')).toBe(start + 60_000);

    clock.advance(59_999);
    expect(expired).toEqual([]);
    expect(leases.isExpired('edge-1')).toBe(false);

    clock.advance(1);
    expect(expired).toEqual([{ name: 'edge-1', at: start + 60_000 }]);
    expect(leases.isExpired('edge-1')).toBe(true);
    expect(leases.expiresAt('edge-1')).toBeUndefined();

    clock.advance(10 * 60_000);
    expect(expired).toHaveLength(1);
    expect(clock.pendingTimers).toBe(0);
  });

  it('fires at the deadline even when time jumps far past it in one step', () => {
    const { clock, leases, expired, start } = tracker();
    leases.renew('edge-1', 1_000);
    clock.advance(1_000_000);
    expect(expired).toEqual([{ name: 'edge-1', at: start + 1_000 }]);
  });

  it('postpones expiry when renewed before the deadline', () => {
    const { clock, leases, expired, start } = tracker();
    leases.renew('edge-1', 10_000);
    clock.advance(9_000);
    const renewed = leases.renew('edge-1', 10_000);
    expect(renewed).toEqual({ expiresAt: start + 19_000, wasExpired: false });

    clock.advance(1_000); // the original deadline passes
    expect(expired).toEqual([]);
    expect(leases.isExpired('edge-1')).toBe(false);

    clock.advance(8_999);
    expect(expired).toEqual([]);
    clock.advance(1);
    expect(expired).toEqual([{ name: 'edge-1', at: start + 19_000 }]);
  });

  it('honours a renewal with a shorter duration than before', () => {
    const { clock, leases, expired, start } = tracker();
    leases.renew('edge-1', 60_000);
    leases.renew('edge-1', 5_000);
    clock.advance(5_000);
    expect(expired).toEqual([{ name: 'edge-1', at: start + 5_000 }]);
    clock.advance(60_000);
    expect(expired).toHaveLength(1);
  });

  it('reports wasExpired=true for a renewal after expiry, and only once', () => {
    const { clock, leases, expired } = tracker();
    leases.renew('edge-1', 1_000);
    clock.advance(1_000);
    expect(expired).toHaveLength(1);

    expect(leases.renew('edge-1', 1_000).wasExpired).toBe(true);
    expect(leases.isExpired('edge-1')).toBe(false);
    expect(leases.renew('edge-1', 1_000).wasExpired).toBe(false);

    // The renewed lease runs out again and fires again.
    clock.advance(1_000);
    expect(expired.map((e) => e.name)).toEqual(['edge-1', 'edge-1']);
  });

  it('expires many leases with different durations in deadline order, each at its own instant', () => {
    const { clock, leases, expired, start } = tracker();
    const durations = [7_000, 1_000, 50_000, 3_000, 3_500, 20_000, 999, 12_345];
    durations.forEach((d, i) => leases.renew(`c${i}`, d));

    clock.advance(60_000);
    const expected = durations
      .map((d, i) => ({ name: `c${i}`, at: start + d }))
      .sort((a, b) => a.at - b.at);
    expect(expired).toEqual(expected);
  });

  it('fires leases that share a deadline together, once each', () => {
    const { clock, leases, expired } = tracker();
    for (const name of ['a', 'b', 'c']) leases.renew(name, 2_000);
    leases.renew('d', 4_000);
    clock.advance(2_000);
    expect(expired.map((e) => e.name).sort()).toEqual(['a', 'b', 'c']);
    clock.advance(2_000);
    expect(expired.map((e) => e.name)).toHaveLength(4);
    expect(expired[3]!.name).toBe('d');
  });

  it('keeps a single pending timer however many leases it holds', () => {
    const { clock, leases, expired } = tracker();
    expect(clock.pendingTimers).toBe(0);
    for (let i = 0; i < 1_000; i++) {
      leases.renew(`cluster-${i}`, 1_000 + ((i * 7919) % 100_000));
      expect(clock.pendingTimers).toBe(1);
    }
    // Renewals of every lease, sooner and later, still leave one timer.
    for (let i = 0; i < 1_000; i += 3) leases.renew(`cluster-${i}`, 500 + i);
    expect(clock.pendingTimers).toBe(1);

    for (let step = 0; step < 200; step++) {
      clock.advance(700);
      expect(clock.pendingTimers).toBeLessThanOrEqual(1);
    }
    expect(expired).toHaveLength(1_000);
    expect(new Set(expired.map((e) => e.name)).size).toBe(1_000);
    for (let i = 1; i < expired.length; i++) expect(expired[i]!.at).toBeGreaterThanOrEqual(expired[i - 1]!.at);
    expect(clock.pendingTimers).toBe(0);
  });

  it('forgets a lease: it never fires and is not reported expired', () => {
    const { clock, leases, expired } = tracker();
    leases.renew('gone', 1_000);
    leases.renew('kept', 2_000);
    leases.forget('gone');
    expect(leases.expiresAt('gone')).toBeUndefined();
    clock.advance(5_000);
    expect(expired.map((e) => e.name)).toEqual(['kept']);
    expect(leases.isExpired('gone')).toBe(false);
  });

  it('fires nothing after stop()', () => {
    const { clock, leases, expired } = tracker();
    leases.renew('a', 1_000);
    leases.stop();
    expect(clock.pendingTimers).toBe(0);
    clock.advance(10_000);
    expect(expired).toEqual([]);
  });

  it('lets an expiry callback renew the lease it is told about', () => {
    const clock = new ManualClock(0);
    const fired: number[] = [];
    const leases: LeaseTracker = new LeaseTracker(clock, {
      expired: (name) => {
        fired.push(clock.now());
        if (fired.length < 3) leases.renew(name, 1_000);
      },
    });
    leases.renew('loop', 1_000);
    clock.advance(10_000);
    expect(fired).toEqual([1_000, 2_000, 3_000]);
    expect(clock.pendingTimers).toBe(0);
  });
});
