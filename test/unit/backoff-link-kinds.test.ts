import { describe, expect, it } from 'vitest';
import { Backoff, type BackoffPolicy, backoffCeilingMs, defaultBackoffPolicy } from '../../src/tunnel/backoff.js';
import { ManualClock } from '../../src/tunnel/clock.js';
import { seeded } from './support.js';

// The three ways a dial ends, each leading to its own wait: a dial that
// failed (exponential backoff), a connection that worked and dropped (quick,
// then second retry window), and a hub that answered busy with a retry-after.

const policy: BackoffPolicy = defaultBackoffPolicy;
const quickMs = policy.quickRetryMs!;
const secondMs = policy.secondRetryMs!;
/** A dial through 300 ms each way: TCP, TLS and hello take about three round trips. */
const dialMs = 1_800;

/**
 * A link up for 30 s, then down for a random while in [0, maxDownMs), over
 * many cycles: the agent waits what Backoff says, dials, fails while the link
 * is down, and is welcomed and acked once it is up. Returns, per drop, the
 * time from the drop to the agent's next welcome and the most failed dials
 * counted at any point.
 */
function flappingLink(seed: number, cycles: number, maxDownMs: number): { backMs: number[]; maxAttempts: number } {
  const clock = new ManualClock(0);
  const linkRandom = seeded(seed);
  const backoff = new Backoff(policy, seeded(seed + 1));
  const backMs: number[] = [];
  let maxAttempts = 0;
  backoff.markConnected(clock.now());
  for (let i = 0; i < cycles; i++) {
    clock.advance(600);
    backoff.markHealthy();
    clock.advance(30_000 - 600);
    const droppedAt = clock.now();
    const upAgainAt = droppedAt + Math.floor(linkRandom() * maxDownMs);
    backoff.markDisconnected(clock.now());
    for (;;) {
      clock.advance(backoff.next());
      maxAttempts = Math.max(maxAttempts, backoff.attempts);
      if (clock.now() >= upAgainAt) break;
      clock.advance(dialMs); // the dial times out against a dead link
      backoff.markDisconnected(clock.now());
    }
    clock.advance(dialMs);
    backoff.markConnected(clock.now());
    backMs.push(clock.now() - droppedAt);
  }
  return { backMs, maxAttempts };
}

describe('Backoff tells a failed dial, a dropped working connection and a busy hub apart', () => {
  it('a link that drops every 30 s and comes back at once returns within the quick window plus a dial, for 5,000 cycles', () => {
    for (const seed of [1, 7, 99]) {
      const { backMs, maxAttempts } = flappingLink(seed, 5_000, 1);
      expect(maxAttempts).toBe(0);
      expect(Math.max(...backMs)).toBeLessThan(quickMs + dialMs);
    }
  });

  it('a link down for up to 4 s after each drop: every return is bounded and the backoff never climbs, over 5,000 cycles', () => {
    for (const seed of [2, 3, 1234]) {
      const { backMs, maxAttempts } = flappingLink(seed, 5_000, 4_000);
      // At worst: quick and second windows fail, then one first backoff step.
      expect(maxAttempts).toBeLessThanOrEqual(1);
      expect(Math.max(...backMs)).toBeLessThan(quickMs + secondMs + policy.baseMs + 3 * dialMs);
      // The last cycles return as fast as the first ones: nothing accumulates.
      const late = backMs.slice(-1_000);
      expect(Math.max(...late)).toBeLessThan(quickMs + secondMs + policy.baseMs + 3 * dialMs);
    }
  });

  it('a hub that stays down after a working connection dropped: quick, second, then waits that grow to the cap', () => {
    const backoff = new Backoff(policy, () => 0.999);
    backoff.markConnected(0);
    backoff.markHealthy();
    backoff.markDisconnected(30_000);
    const kinds: string[] = [];
    const waits: number[] = [];
    for (let i = 0; i < 12; i++) {
      waits.push(backoff.next());
      kinds.push(backoff.lastRetryKind!);
      backoff.markDisconnected(0); // the dial failed: no welcome
    }
    expect(kinds.slice(0, 3)).toEqual(['quick', 'second', 'backoff']);
    expect(waits[0]).toBeLessThan(quickMs);
    expect(waits[1]).toBeLessThan(secondMs);
    const backoffWaits = waits.slice(2);
    expect(backoffWaits).toEqual(backoffWaits.map((_, attempt) => Math.floor(0.999 * backoffCeilingMs(policy, attempt))));
    for (let i = 1; i < backoffWaits.length; i++) expect(backoffWaits[i]).toBeGreaterThanOrEqual(backoffWaits[i - 1]!);
    expect(waits.at(-1)).toBeGreaterThan(policy.capMs * 0.99);
  });

  it('dials that fail from the start never get a retry window', () => {
    const backoff = new Backoff(policy, () => 0.5);
    for (let attempt = 0; attempt < 6; attempt++) {
      backoff.markDisconnected(attempt);
      expect(backoff.next()).toBe(Math.floor(0.5 * backoffCeilingMs(policy, attempt)));
      expect(backoff.lastRetryKind).toBe('backoff');
    }
  });

  it('a busy hub: its retry-after is the wait, and neither the failed-dial count nor the windows still due change', () => {
    const backoff = new Backoff(policy, () => 0.5);
    backoff.markConnected(0);
    backoff.markHealthy();
    backoff.markDisconnected(30_000);
    expect(backoff.nextAfterBusy(3_200)).toBe(3_200);
    expect(backoff.lastRetryKind).toBe('retry-after');
    expect(backoff.quickRetryDue).toBe(true);
    expect(backoff.next()).toBe(750);
    // Busy over and over while the hub recovers: the count stays 0.
    for (let i = 0; i < 50; i++) expect(backoff.nextAfterBusy(4_000)).toBe(4_000);
    expect(backoff.attempts).toBe(0);
    expect(backoff.next()).toBe(2_500);
    expect(backoff.lastRetryKind).toBe('second');
    // A junk or absent retry-after is a failed dial's wait; a huge one is capped.
    expect(backoff.nextAfterBusy(Number.NaN)).toBe(Math.floor(0.5 * policy.baseMs));
    expect(backoff.nextAfterBusy(1e12)).toBe(policy.capMs);
  });

  it('a failed dial with a retry-after (a rate limit) still counts and uses the retry-after as a floor', () => {
    const backoff = new Backoff(policy, () => 0.5);
    expect(backoff.next(60_000)).toBe(60_000);
    expect(backoff.lastRetryKind).toBe('retry-after');
    expect(backoff.attempts).toBe(1);
  });
});
