import { describe, expect, it } from 'vitest';
import { Backoff, type BackoffPolicy, backoffCeilingMs, defaultBackoffPolicy } from '../../src/tunnel/backoff.js';
import { seeded } from './support.js';
import { ManualClock } from '../../src/tunnel/clock.js';

// The quick retry after a healthy connection dropped, against the old policy
// (only a connection up for stableAfterMs resets the backoff).

const quick: BackoffPolicy = defaultBackoffPolicy;
const old: BackoffPolicy = { baseMs: quick.baseMs, capMs: quick.capMs, stableAfterMs: quick.stableAfterMs };

/**
 * The link: the agent is welcomed, a heartbeat is acked, and the link
 * drops 30 s later; the agent waits the delay it is given and dials again.
 * Returns the waits.
 */
function dropEvery30s(policy: BackoffPolicy, seed: number, drops: number): number[] {
  const clock = new ManualClock(0);
  const backoff = new Backoff(policy, seeded(seed));
  const waits: number[] = [];
  for (let i = 0; i < drops; i++) {
    backoff.markConnected(clock.now());
    clock.advance(600); // a round trip at 300 ms each way
    backoff.markHealthy();
    clock.advance(30_000 - 600);
    backoff.markDisconnected(clock.now());
    const wait = backoff.next();
    waits.push(wait);
    clock.advance(wait);
  }
  return waits;
}

describe('Backoff quick retry after a healthy connection', () => {
  it('keeps every wait within the jitter window on a link that drops every 30 s (the old policy grows to minutes)', () => {
    for (const seed of [1, 2, 3, 42, 1234]) {
      const waits = dropEvery30s(quick, seed, 50);
      for (const wait of waits) {
        expect(wait).toBeGreaterThanOrEqual(0);
        expect(wait).toBeLessThan(quick.quickRetryMs!);
      }
      // The same link and random draws under the old policy: the envelope reaches the cap.
      const before = dropEvery30s(old, seed, 50);
      expect(Math.max(...before)).toBeGreaterThan(60_000);
    }
  });

  it('still grows exponentially for dials that fail', () => {
    const backoff = new Backoff(quick, () => 0.999);
    const delays = Array.from({ length: 8 }, () => backoff.next());
    expect(delays).toEqual(Array.from({ length: 8 }, (_, attempt) => Math.floor(0.999 * backoffCeilingMs(quick, attempt))));
    expect(delays[7]).toBeGreaterThan(quick.capMs * 0.99);
  });

  it('grants the quick and the second retry once per healthy connection, then backs off from the first step', () => {
    const backoff = new Backoff(quick, () => 0.5);
    for (let i = 0; i < 5; i++) backoff.next(); // earlier failed dials
    backoff.markConnected(0);
    backoff.markHealthy();
    backoff.markDisconnected(30_000);
    expect(backoff.quickRetryDue).toBe(true);
    expect(backoff.next()).toBe(750);
    expect(backoff.lastRetryKind).toBe('quick');
    expect(backoff.quickRetryDue).toBe(false);
    // The quick redial failed (no welcome): the second window, still not a failed dial.
    backoff.markDisconnected(31_000);
    expect(backoff.next()).toBe(2_500);
    expect(backoff.lastRetryKind).toBe('second');
    expect(backoff.attempts).toBe(0);
    // That failed too: the usual backoff, starting over (the connection worked).
    backoff.markDisconnected(34_000);
    expect(backoff.next()).toBe(Math.floor(0.5 * backoffCeilingMs(quick, 0)));
    expect(backoff.lastRetryKind).toBe('backoff');
    expect(backoff.next()).toBe(Math.floor(0.5 * backoffCeilingMs(quick, 1)));
    // A disconnect without a connection in between earns nothing.
    backoff.markDisconnected(90_000);
    expect(backoff.quickRetryDue).toBe(false);
    expect(backoff.next()).toBe(Math.floor(0.5 * backoffCeilingMs(quick, 2)));
  });

  it('a welcomed connection that drops before its ack, without the allowance (maxUnackedWelcomes 0), ends the windows still due', () => {
    const backoff = new Backoff({ ...quick, maxUnackedWelcomes: 0 }, () => 0.5);
    backoff.markConnected(0);
    backoff.markHealthy();
    backoff.markDisconnected(30_000);
    expect(backoff.next()).toBe(750);
    // The quick redial was welcomed but died before any heartbeat ack: a failed dial.
    backoff.markConnected(31_000);
    backoff.markDisconnected(31_500);
    expect(backoff.next()).toBe(Math.floor(0.5 * backoffCeilingMs(quick, 0)));
    expect(backoff.lastRetryKind).toBe('backoff');
  });

  it('a reset right after a welcome, before any ack, is a working link that dropped: the windows again, earlier failed dials forgotten', () => {
    const backoff = new Backoff({ ...quick, maxUnackedWelcomes: 3 }, () => 0.5);
    // Four failed dials first (the hub was down): the count is 4.
    for (let i = 0; i < 4; i++) {
      backoff.markDisconnected(i);
      backoff.next();
    }
    expect(backoff.attempts).toBe(4);
    backoff.markConnected(100_000);
    backoff.markDisconnected(100_300); // welcomed, reset before the first ack
    expect(backoff.attempts).toBe(0);
    expect(backoff.quickRetryDue).toBe(true);
    expect(backoff.next()).toBe(750);
    expect(backoff.lastRetryKind).toBe('quick');
  });

  it('welcomed-then-reset connections in a row: the windows for maxUnackedWelcomes of them, then failed dials that back off; an ack restores the allowance', () => {
    const backoff = new Backoff({ ...quick, maxUnackedWelcomes: 3 }, () => 0.5);
    const kinds: string[] = [];
    for (let i = 0; i < 6; i++) {
      backoff.markConnected(i * 10_000);
      backoff.markDisconnected(i * 10_000 + 500); // no markHealthy(): dropped before any ack
      backoff.next();
      kinds.push(`${backoff.lastRetryKind}@${backoff.attempts}`);
    }
    expect(kinds).toEqual(['quick@0', 'quick@0', 'quick@0', 'backoff@1', 'backoff@2', 'backoff@3']);
    // One connection that was acked: the next reset before an ack earns the windows again.
    backoff.markConnected(100_000);
    backoff.markHealthy();
    backoff.markDisconnected(130_000);
    backoff.next();
    backoff.markConnected(131_000);
    backoff.markDisconnected(131_400);
    expect(backoff.next()).toBe(750);
    expect(backoff.lastRetryKind).toBe('quick');
  });

  it('on the defaults, a link where every other connection is reset before its first ack never waits past the quick window', () => {
    const backoff = new Backoff(defaultBackoffPolicy, () => 0.999);
    backoff.markConnected(0);
    backoff.markHealthy();
    const waits: number[] = [];
    let now = 60_000;
    for (let reset = 0; reset < 1_000; reset++) {
      backoff.markDisconnected(now);
      const wait = backoff.next();
      waits.push(wait);
      now += wait + 1_800; // dial, welcomed
      backoff.markConnected(now);
      if (reset % 2 === 1) backoff.markHealthy();
      now += reset % 2 === 1 ? 30_000 : 300;
    }
    expect(Math.max(...waits)).toBeLessThan(defaultBackoffPolicy.quickRetryMs!);
    expect(backoff.attempts).toBe(0);
  });

  it('ignores an ack before any welcome', () => {
    const backoff = new Backoff(quick, () => 0.5);
    backoff.markHealthy();
    backoff.markDisconnected(1_000);
    expect(backoff.quickRetryDue).toBe(false);
    expect(backoff.next()).toBe(Math.floor(0.5 * quick.baseMs));
  });

  it('honours a hub retry-after as a floor on the quick retry', () => {
    const backoff = new Backoff(quick, () => 0.5);
    backoff.markConnected(0);
    backoff.markHealthy();
    backoff.markDisconnected(10_000);
    expect(backoff.next(4_000)).toBe(4_000);
    backoff.markConnected(20_000);
    backoff.markHealthy();
    backoff.markDisconnected(30_000);
    expect(backoff.next(100)).toBe(750); // the jitter is over the floor: jitter wins
    expect(backoff.lastRetryKind).toBe('quick');
  });

  it('without a window keeps the old policy: a healthy but short connection resets nothing', () => {
    const backoff = new Backoff(old, () => 0.5);
    backoff.next();
    backoff.next();
    backoff.markConnected(0);
    backoff.markHealthy();
    backoff.markDisconnected(30_000);
    expect(backoff.quickRetryDue).toBe(false);
    expect(backoff.next()).toBe(Math.floor(0.5 * backoffCeilingMs(old, 2)));
  });

  it('refuses a window below zero or above the cap', () => {
    expect(() => new Backoff({ ...quick, quickRetryMs: -1 })).toThrow(RangeError);
    expect(() => new Backoff({ ...quick, quickRetryMs: quick.capMs + 1 })).toThrow(RangeError);
    expect(() => new Backoff({ ...quick, quickRetryMs: Number.NaN })).toThrow(RangeError);
    expect(() => new Backoff({ ...quick, quickRetryMs: 0 })).not.toThrow();
    expect(() => new Backoff({ ...quick, secondRetryMs: -1 })).toThrow(RangeError);
    expect(() => new Backoff({ ...quick, secondRetryMs: quick.capMs + 1 })).toThrow(RangeError);
  });
});
