import { describe, expect, it } from 'vitest';
import { FailureLimiter, peerAddress, TokenBucket } from '../../src/hub/ratelimit.js';
import { ManualClock } from '../../src/tunnel/clock.js';

describe('TokenBucket', () => {
  it('allows the burst, then one token per refill period', () => {
    const clock = new ManualClock(0);
    const bucket = new TokenBucket({ capacity: 3, refillPerSecond: 2 }, clock);
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true, false]);
    expect(bucket.msUntilToken()).toBe(500);
    clock.advance(499);
    expect(bucket.take()).toBe(false);
    clock.advance(1);
    expect(bucket.take()).toBe(true);
    clock.advance(60_000);
    expect(bucket.isFull).toBe(true);
  });

  it('refuses a policy that could never admit anything', () => {
    const clock = new ManualClock(0);
    expect(() => new TokenBucket({ capacity: 0, refillPerSecond: 1 }, clock)).toThrow(RangeError);
    expect(() => new TokenBucket({ capacity: 1, refillPerSecond: 0 }, clock)).toThrow(RangeError);
  });
});

describe('FailureLimiter', () => {
  const options = { capacity: 3, refillPerSecond: 1, maxPeers: 2 };

  it('lets a peer fail its budget, then asks it to wait, and forgets it once refilled', () => {
    const clock = new ManualClock(0);
    const limiter = new FailureLimiter(options, clock);
    expect(limiter.retryAfterMs('a')).toBe(0);
    expect([limiter.recordFailure('a'), limiter.recordFailure('a')]).toEqual([0, 0]);
    expect(limiter.recordFailure('a')).toBe(1_000);
    expect(limiter.retryAfterMs('a')).toBe(1_000);
    clock.advance(400);
    expect(limiter.retryAfterMs('a')).toBe(600);
    clock.advance(600);
    expect(limiter.retryAfterMs('a')).toBe(0);
    clock.advance(10_000);
    expect(limiter.retryAfterMs('a')).toBe(0);
    expect(limiter.trackedPeers).toBe(0);
  });

  it('keeps one budget per peer: another peer is never slowed', () => {
    const clock = new ManualClock(0);
    const limiter = new FailureLimiter(options, clock);
    for (let i = 0; i < 10; i++) limiter.recordFailure('a');
    expect(limiter.retryAfterMs('a')).toBeGreaterThan(0);
    expect(limiter.retryAfterMs('b')).toBe(0);
  });

  it('remembers at most maxPeers, forgetting the least recently failing', () => {
    const clock = new ManualClock(0);
    const limiter = new FailureLimiter(options, clock);
    for (let i = 0; i < 3; i++) limiter.recordFailure('a');
    for (let i = 0; i < 3; i++) limiter.recordFailure('b');
    limiter.recordFailure('a');
    for (let i = 0; i < 3; i++) limiter.recordFailure('c');
    expect(limiter.trackedPeers).toBe(2);
    expect(limiter.retryAfterMs('b')).toBe(0);
    expect(limiter.retryAfterMs('a')).toBeGreaterThan(0);
    expect(limiter.retryAfterMs('c')).toBeGreaterThan(0);
  });
});

describe('peerAddress', () => {
  it('drops the port and the transport prefix', () => {
    expect(peerAddress('10.0.0.7:51234')).toBe('10.0.0.7');
    expect(peerAddress('ipv4:10.0.0.7:51234')).toBe('10.0.0.7');
    expect(peerAddress('[::1]:51234')).toBe('::1');
    expect(peerAddress('ipv6:[2001:db8::1]:443')).toBe('2001:db8::1');
    expect(peerAddress('2001:db8::1')).toBe('2001:db8::1');
    expect(peerAddress('memory-agent')).toBe('memory-agent');
  });
});
