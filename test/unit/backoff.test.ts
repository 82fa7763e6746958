import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Backoff, type BackoffPolicy, backoffCeilingMs, backoffDelayMs, defaultBackoffPolicy } from '../../src/tunnel/backoff.js';
import { seeded } from './support.js';

/** A random source that replays the given values, then fails loudly if asked for more. */
function sequence(values: readonly number[]): () => number {
  let i = 0;
  return () => {
    if (i >= values.length) throw new Error(`random source exhausted after ${values.length} values`);
    return values[i++]!;
  };
}

const policy: BackoffPolicy = { baseMs: 100, capMs: 10_000, stableAfterMs: 5_000 };

describe('backoffCeilingMs', () => {
  it('doubles from base on each attempt until the cap', () => {
    const ceilings = Array.from({ length: 10 }, (_, attempt) => backoffCeilingMs(policy, attempt));
    expect(ceilings).toEqual([100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]);
  });

  it('stays at the cap (and finite) for huge attempt numbers', () => {
    expect(backoffCeilingMs(policy, 1_000)).toBe(policy.capMs);
    expect(backoffCeilingMs(policy, 1e9)).toBe(policy.capMs);
    expect(Number.isFinite(backoffCeilingMs(defaultBackoffPolicy, 5_000))).toBe(true);
  });

  it('treats a negative attempt as the first one', () => {
    expect(backoffCeilingMs(policy, -3)).toBe(policy.baseMs);
  });

  it('has the documented defaults: 10 s base, 5 min cap', () => {
    expect(backoffCeilingMs(defaultBackoffPolicy, 0)).toBe(10_000);
    expect(backoffCeilingMs(defaultBackoffPolicy, 20)).toBe(300_000);
  });
});

describe('backoffDelayMs', () => {
  it('is full jitter: random 0 gives 0, random near 1 gives just under the ceiling', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const ceiling = backoffCeilingMs(policy, attempt);
      expect(backoffDelayMs(policy, attempt, () => 0)).toBe(0);
      const high = backoffDelayMs(policy, attempt, () => 0.999);
      expect(high).toBeLessThan(ceiling);
      expect(high).toBeGreaterThanOrEqual(Math.floor(ceiling * 0.999));
      expect(backoffDelayMs(policy, attempt, () => 0.5)).toBe(Math.floor(ceiling / 2));
    }
  });

  it('stays in [0, min(cap, base * 2^attempt)) over many attempts with a seeded random source', () => {
    const random = seeded(42);
    for (let attempt = 0; attempt < 200; attempt++) {
      for (let draw = 0; draw < 50; draw++) {
        const delay = backoffDelayMs(policy, attempt, random);
        expect(Number.isInteger(delay)).toBe(true);
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThan(Math.min(policy.capMs, policy.baseMs * 2 ** attempt));
      }
    }
  });

  it('follows the exponential envelope: the largest delay seen per attempt grows until the cap', () => {
    const random = seeded(7);
    const maxima: number[] = [];
    for (let attempt = 0; attempt < 9; attempt++) {
      let max = 0;
      for (let draw = 0; draw < 2_000; draw++) max = Math.max(max, backoffDelayMs(policy, attempt, random));
      maxima.push(max);
    }
    // With 2,000 uniform draws the maximum lies within 1% of the ceiling.
    for (let attempt = 0; attempt < maxima.length; attempt++) {
      const ceiling = backoffCeilingMs(policy, attempt);
      expect(maxima[attempt]!).toBeLessThan(ceiling);
      expect(maxima[attempt]!).toBeGreaterThanOrEqual(Math.floor(ceiling * 0.99));
    }
    expect(maxima[7]!).toBeLessThan(policy.capMs);
    expect(maxima[8]!).toBeLessThan(policy.capMs);
  });

  it('rejects a random source that leaves [0, 1)', () => {
    for (const bad of [1, 1.5, -0.01, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => backoffDelayMs(policy, 0, () => bad)).toThrow(RangeError);
      expect(() => backoffDelayMs(policy, 0, () => bad)).toThrow(String(bad));
    }
  });
});

describe('Backoff', () => {
  it('refuses a policy with a non-positive base or a cap below the base', () => {
    expect(() => new Backoff({ baseMs: 0, capMs: 10, stableAfterMs: 1 })).toThrow(RangeError);
    expect(() => new Backoff({ baseMs: -5, capMs: 10, stableAfterMs: 1 })).toThrow(RangeError);
    expect(() => new Backoff({ baseMs: 100, capMs: 99, stableAfterMs: 1 })).toThrow(RangeError);
    expect(() => new Backoff({ baseMs: 100, capMs: 100, stableAfterMs: 1 })).not.toThrow();
  });

  it('draws each delay from the ceiling of its own attempt', () => {
    const draws = [0.5, 0.5, 0.25, 0.999, 0, 0.75, 0.5, 0.5, 0.5];
    const backoff = new Backoff(policy, sequence(draws));
    const delays = draws.map(() => backoff.next());
    expect(delays).toEqual(draws.map((r, attempt) => Math.floor(r * backoffCeilingMs(policy, attempt))));
    expect(delays).toEqual([50, 100, 100, 799, 0, 2400, 3200, 5000, 5000]);
    expect(backoff.attempts).toBe(draws.length);
  });

  it('never exceeds the cap however many attempts fail', () => {
    const backoff = new Backoff(policy, () => 0.999_999);
    let last = 0;
    for (let i = 0; i < 100; i++) {
      last = backoff.next();
      expect(last).toBeLessThan(policy.capMs);
    }
    expect(last).toBeGreaterThan(policy.capMs * 0.99);
  });

  it('uses the hub retry-after as a floor, not as a replacement', () => {
    const backoff = new Backoff(policy, sequence([0.5, 0.5, 0.5]));
    expect(backoff.next(5_000)).toBe(5_000); // jittered 50 < 5000: the floor wins
    expect(backoff.next(10)).toBe(100); // jittered 100 > 10: jitter wins
    expect(backoff.next(0)).toBe(200);
    expect(backoff.attempts).toBe(3);
  });

  it('resets the attempt count only after a connection stable for stableAfterMs', () => {
    const backoff = new Backoff(policy, () => 0.5);
    for (let i = 0; i < 4; i++) backoff.next();
    expect(backoff.attempts).toBe(4);

    // A connection that drops one millisecond short of stable keeps the count.
    backoff.markConnected(10_000);
    backoff.markDisconnected(10_000 + policy.stableAfterMs - 1);
    expect(backoff.attempts).toBe(4);
    expect(backoff.next()).toBe(Math.floor(0.5 * backoffCeilingMs(policy, 4)));
    expect(backoff.attempts).toBe(5);

    // A disconnect without a connection in between changes nothing.
    backoff.markDisconnected(1_000_000);
    expect(backoff.attempts).toBe(5);

    // Exactly stableAfterMs counts as stable.
    backoff.markConnected(50_000);
    backoff.markDisconnected(50_000 + policy.stableAfterMs);
    expect(backoff.attempts).toBe(0);
    expect(backoff.next()).toBe(Math.floor(0.5 * policy.baseMs));
  });

  it('forgets the connection time after a disconnect, so a second disconnect cannot reset', () => {
    const backoff = new Backoff(policy, () => 0.5);
    backoff.markConnected(0);
    backoff.markDisconnected(1); // short: no reset, connection forgotten
    backoff.next();
    backoff.next();
    backoff.markDisconnected(policy.stableAfterMs * 10);
    expect(backoff.attempts).toBe(2);
  });
});

describe('backoff properties', () => {
  const policyArb = fc
    .record({
      baseMs: fc.integer({ min: 1, max: 1_000_000 }),
      extra: fc.integer({ min: 0, max: 100_000_000 }),
      stableAfterMs: fc.integer({ min: 0, max: 1_000_000 }),
    })
    .map(({ baseMs, extra, stableAfterMs }) => ({ baseMs, capMs: baseMs + extra, stableAfterMs }));
  const randomArb = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });

  it('every delay is an integer in [0, min(cap, base * 2^attempt))', () => {
    fc.assert(
      fc.property(policyArb, fc.integer({ min: 0, max: 2_000 }), randomArb, (p, attempt, r) => {
        const ceiling = Math.min(p.capMs, p.baseMs * 2 ** attempt);
        expect(backoffCeilingMs(p, attempt)).toBe(ceiling);
        const delay = backoffDelayMs(p, attempt, () => r);
        expect(Number.isInteger(delay)).toBe(true);
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThan(ceiling);
        expect(delay).toBe(Math.floor(r * ceiling));
      }),
      { numRuns: 2_000 },
    );
  });

  it('the ceiling never shrinks from one attempt to the next and never passes the cap', () => {
    fc.assert(
      fc.property(policyArb, fc.integer({ min: 0, max: 2_000 }), (p, attempt) => {
        const now = backoffCeilingMs(p, attempt);
        const after = backoffCeilingMs(p, attempt + 1);
        expect(after).toBeGreaterThanOrEqual(now);
        expect(after).toBeLessThanOrEqual(p.capMs);
        expect(now).toBeGreaterThanOrEqual(p.baseMs);
      }),
    );
  });

  it('Backoff.next is max(jittered delay of the current attempt, retryAfter capped at the cap)', () => {
    fc.assert(
      fc.property(
        policyArb,
        fc.array(fc.tuple(randomArb, fc.integer({ min: 0, max: 1_000_000 })), { minLength: 1, maxLength: 40 }),
        (p, steps) => {
          const draws = steps.map(([r]) => r);
          const backoff = new Backoff(p, sequence(draws));
          steps.forEach(([r, retryAfter], attempt) => {
            expect(backoff.next(retryAfter)).toBe(Math.max(Math.floor(r * backoffCeilingMs(p, attempt)), Math.min(retryAfter, p.capMs)));
          });
          expect(backoff.attempts).toBe(steps.length);
        },
      ),
    );
  });

  it('never returns more than the cap, whatever retryAfter the hub sends', () => {
    fc.assert(
      fc.property(
        policyArb,
        randomArb,
        fc.oneof(fc.double(), fc.integer(), fc.constantFrom(2 ** 31, 2 ** 53, Infinity, Number.NaN, -1)),
        (p, r, retryAfter) => {
          const delay = new Backoff(p, () => r).next(retryAfter);
          expect(delay).toBeGreaterThanOrEqual(0);
          expect(delay).toBeLessThanOrEqual(p.capMs);
          expect(Number.isInteger(delay)).toBe(true);
        },
      ),
    );
  });

  it('caps a retry-after over the timer limit at the backoff cap (default 5 min)', () => {
    expect(new Backoff(defaultBackoffPolicy, () => 0).next(2 ** 31)).toBe(defaultBackoffPolicy.capMs);
  });
});
