import { describe, expect, it } from 'vitest';
import { HandshakeAdmission } from '../../src/hub/admission.js';
import { ManualClock } from '../../src/tunnel/clock.js';

const options = { maxConcurrent: 4, retryAfterMinMs: 1_000, retryAfterMaxMs: 5_000 };

describe('HandshakeAdmission', () => {
  it('admits up to maxConcurrent, frees a slot on release (once), and refuses past it', () => {
    const admission = new HandshakeAdmission(options, new ManualClock(0), () => 0.5);
    const slots = Array.from({ length: 4 }, () => admission.tryEnter());
    expect(slots.every((s) => s.admitted)).toBe(true);
    expect(admission.tryEnter().admitted).toBe(false);
    const first = slots[0]!;
    if (!first.admitted) throw new Error('unreachable');
    first.release();
    first.release(); // idempotent: frees one slot, not two
    expect(admission.active).toBe(3);
    expect(admission.tryEnter().admitted).toBe(true);
    expect(admission.tryEnter().admitted).toBe(false);
  });

  it('spreads refusals over [min, max), the window widening with the refusals of the last second', () => {
    const clock = new ManualClock(0);
    const admission = new HandshakeAdmission(options, clock, () => 0.999_999);
    for (let i = 0; i < 4; i++) admission.tryEnter();
    const waits = Array.from({ length: 8 }, () => {
      const r = admission.tryEnter();
      if (r.admitted) throw new Error('admitted past the bound');
      return r.retryAfterMs;
    });
    // Refusal n of the second may wait up to min + (max - min) * n / maxConcurrent, capped at max.
    expect(waits).toEqual([1_999, 2_999, 3_999, 4_999, 4_999, 4_999, 4_999, 4_999]);
    clock.advance(1_000); // a new second: a stray refusal again waits little
    const later = admission.tryEnter();
    expect(later.admitted === false && later.retryAfterMs).toBe(1_999);
  });

  it('asks for min exactly when the draw is 0', () => {
    const admission = new HandshakeAdmission({ ...options, maxConcurrent: 1 }, new ManualClock(0), () => 0);
    admission.tryEnter();
    const r = admission.tryEnter();
    expect(r.admitted === false && r.retryAfterMs).toBe(1_000);
  });

  it('refuses a bad configuration', () => {
    const clock = new ManualClock(0);
    expect(() => new HandshakeAdmission({ ...options, maxConcurrent: 0 }, clock)).toThrow(RangeError);
    expect(() => new HandshakeAdmission({ ...options, maxConcurrent: 1.5 }, clock)).toThrow(RangeError);
    expect(() => new HandshakeAdmission({ ...options, retryAfterMinMs: 0 }, clock)).toThrow(RangeError);
    expect(() => new HandshakeAdmission({ ...options, retryAfterMaxMs: 999 }, clock)).toThrow(RangeError);
  });
});
