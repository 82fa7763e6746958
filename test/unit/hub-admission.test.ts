import { describe, expect, it } from 'vitest';
import { type Admitted, HandshakeAdmission, type HandshakeAdmissionOptions, handshakeAdmissionFor } from '../../src/hub/admission.js';
import { ConcurrencyLimit, type ConcurrencyLimitOptions } from '../../src/hub/concurrency-limit.js';
import { ManualClock } from '../../src/tunnel/clock.js';

// Time is a ManualClock and randomness a constant: every figure below is exact.

const limitOptions: ConcurrencyLimitOptions = { min: 2, max: 10, initial: 4, tolerance: 2, slackMs: 0, decreaseRatio: 0.5, floorWindowMs: 10_000 };

describe('ConcurrencyLimit', () => {
  it('grows by one per completion near the floor while the limit is used, then halves once per round when latency climbs', () => {
    const limit = new ConcurrencyLimit(limitOptions);
    limit.sample(0, 0, 10, 4); // the floor: 10 ms
    expect(limit.limit).toBe(5);
    limit.sample(10, 0, 20, 5); // 2 × floor is still fine
    expect(limit.limit).toBe(6);
    limit.sample(30, 0, 21, 6); // over 2 × floor: congestion
    expect(limit.limit).toBe(3);
    // Started before the cut: the same congested round, no second cut.
    limit.sample(40, 25, 500, 3);
    expect(limit.limit).toBe(3);
    // Started after it: a new round that is still slow cuts again, down to min at most.
    limit.sample(100, 50, 50, 3);
    expect(limit.limit).toBe(2);
    limit.sample(200, 150, 50, 2);
    expect(limit.limit).toBe(2);
  });

  it('after the first cut grows by one per limit of completions (additive), and only while used', () => {
    const limit = new ConcurrencyLimit({ ...limitOptions, initial: 8 });
    limit.sample(0, 0, 10, 8);
    limit.sample(1, 0, 100, 9); // cut: 9 * 0.5 = 4.5
    expect(limit.limit).toBe(4);
    limit.sample(2, 2, 10, 2); // not used up: no growth
    expect(limit.limit).toBe(4);
    for (let i = 0; i < 2; i++) limit.sample(3 + i, 3, 10, 4);
    // 4.5 + 1/4.5 + 1/4.72 = 4.93: still 4, where slow start would be at 6.
    expect(limit.limit).toBe(4);
    limit.sample(5, 5, 10, 4);
    expect(limit.limit).toBe(5);
  });

  it('never grows past max', () => {
    const limit = new ConcurrencyLimit(limitOptions);
    for (let i = 0; i < 20; i++) limit.sample(i, i, 10, 10);
    expect(limit.limit).toBe(10);
  });

  it('forgets a floor two windows old, so a hub whose handshakes got slower for good grows again', () => {
    const limit = new ConcurrencyLimit({ ...limitOptions, initial: 4 });
    limit.sample(0, 0, 1, 4);
    expect(limit.floorMs).toBe(1);
    limit.sample(10_000, 9_950, 50, 5); // new window; the old floor still counts
    expect(limit.floorMs).toBe(1);
    limit.sample(20_000, 19_950, 50, 4); // the 1 ms window is two windows old now
    expect(limit.floorMs).toBe(50);
    const before = limit.limit;
    limit.sample(20_100, 20_050, 60, limit.limit);
    expect(limit.limit).toBe(before + 1);
  });

  it('refuses a bad configuration', () => {
    for (const bad of [{ min: 0 }, { min: 1.5 }, { max: 1 }, { initial: 11 }, { tolerance: 0.5 }, { slackMs: -1 }, { decreaseRatio: 1 }, { floorWindowMs: 0 }]) {
      expect(() => new ConcurrencyLimit({ ...limitOptions, ...bad })).toThrow(RangeError);
    }
  });
});

const admissionOptions: HandshakeAdmissionOptions = {
  // A fixed limit of 2, so the queue and the retry-after are tested on their own.
  limit: { ...limitOptions, min: 2, max: 2, initial: 2 },
  maxQueueWaitMs: 1_000,
  retryAfterMinMs: 100,
  retryAfterMaxMs: 60_000,
  jitterRatio: 0.1,
  rateWindowMs: 2_000,
};

function admitted(a: Admitted): Extract<Admitted, { kind: 'admitted' }> {
  expect(a.kind).toBe('admitted');
  return a as Extract<Admitted, { kind: 'admitted' }>;
}

function retryAfter(a: Admitted): number {
  expect(a.kind).toBe('refused');
  return (a as Extract<Admitted, { kind: 'refused' }>).retryAfterMs;
}

/** Runs `count` handshakes of `eachMs` one pair at a time: the hub's measured rate becomes 2 per eachMs. */
async function warmUp(admission: HandshakeAdmission, clock: ManualClock, count: number, eachMs: number): Promise<void> {
  for (let i = 0; i < count; i += 2) {
    const a = admitted(await admission.enter());
    const b = admitted(await admission.enter());
    clock.advance(eachMs);
    a.release();
    b.release();
  }
}

describe('HandshakeAdmission', () => {
  it('admits up to the limit, queues the next while a slot is due soon, and hands slots over first come first served', async () => {
    const clock = new ManualClock(0);
    const admission = new HandshakeAdmission(admissionOptions, clock, () => 0.5);
    await warmUp(admission, clock, 20, 200); // 20 in 2 s: 10/s
    expect(admission.completionRatePerSec()).toBe(10);
    const slots = [admitted(await admission.enter()), admitted(await admission.enter())];
    // 10/s: a queue of 10 is 1 s of waiting, the bound.
    const queued = Array.from({ length: 10 }, () => admission.enter());
    expect(admission.queued).toBe(10);
    const order: number[] = [];
    queued.forEach((p, i) => void p.then(() => order.push(i)));
    clock.advance(50);
    slots[0]!.release();
    slots[0]!.release(); // idempotent: one slot, not two
    const first = admitted(await queued[0]!);
    expect(first.queuedMs).toBe(50);
    expect(admission.active).toBe(2);
    expect(admission.queued).toBe(9);
    slots[1]!.release();
    first.release();
    await Promise.all(queued.slice(0, 3));
    expect(order).toEqual([0, 1, 2]);
  });

  it('refuses past the queue with a retry-after that books each refused hello one completion later, from when the queue is half drained', async () => {
    const clock = new ManualClock(0);
    const admission = new HandshakeAdmission(admissionOptions, clock, () => 0.5);
    await warmUp(admission, clock, 20, 200);
    await admission.enter();
    await admission.enter();
    for (let i = 0; i < 10; i++) void admission.enter();
    // 10 queued at 10/s drain in 1 s; one completion after half the bound (500 ms) before that
    // is 600 ms from now; then one per 100 ms.
    const waits = [];
    for (let i = 0; i < 4; i++) waits.push(retryAfter(await admission.enter()));
    expect(waits).toEqual([600, 700, 800, 900]);
    // Time passes with nothing finishing: the book goes on from the last place (900 ms from then), never earlier.
    clock.advance(150);
    expect(retryAfter(await admission.enter())).toBe(850);
  });

  it('books a dial refused elsewhere (too many streams not yet welcomed) in the same book as refused hellos', async () => {
    const clock = new ManualClock(0);
    const admission = new HandshakeAdmission(admissionOptions, clock, () => 0.5);
    await warmUp(admission, clock, 20, 200);
    await admission.enter();
    await admission.enter();
    for (let i = 0; i < 10; i++) void admission.enter();
    expect(admission.bookRetryAfterMs()).toBe(600);
    expect(retryAfter(await admission.enter())).toBe(700);
  });

  it('re-spaces the places still ahead when the rate turns out higher than when they were booked', async () => {
    const clock = new ManualClock(0);
    const options = { ...admissionOptions, maxQueueWaitMs: 0, retryAfterMinMs: 10 };
    const admission = new HandshakeAdmission(options, clock, () => 0.5);
    await warmUp(admission, clock, 2, 1_000); // 2 slots at 1 s each: 2/s
    const busy = [admitted(await admission.enter()), admitted(await admission.enter())];
    // One completion (500 ms) from now, then one more.
    expect([retryAfter(await admission.enter()), retryAfter(await admission.enter())]).toEqual([500, 1_000]);
    // Both in progress finish in 20 ms: the hub is faster than it looked (4 done in 1.02 s).
    clock.advance(20);
    for (const slot of busy) slot.release();
    await admission.enter();
    await admission.enter();
    const rate = admission.completionRatePerSec();
    expect(rate).toBeCloseTo(4_000 / 1_020, 6);
    // The next place: one completion for the slots, the two places still ahead, then its own,
    // at today's rate (1020 ms), not one completion after the last place booked at 2/s (1235 ms).
    expect(retryAfter(await admission.enter())).toBe(Math.round(4_000 / rate));
  });

  it('jitters the retry-after by ±jitterRatio', async () => {
    for (const [r, expected] of [
      [0, 540],
      [0.999_999, 660],
    ] as const) {
      const clock = new ManualClock(0);
      const admission = new HandshakeAdmission(admissionOptions, clock, () => r);
      await warmUp(admission, clock, 20, 200);
      await admission.enter();
      await admission.enter();
      for (let i = 0; i < 10; i++) void admission.enter();
      expect(retryAfter(await admission.enter())).toBe(expected);
    }
  });

  it('asks for less once the queue is shorter: the retry-after follows the queue, not a fixed window', async () => {
    const clock = new ManualClock(0);
    const options = { ...admissionOptions, maxQueueWaitMs: 0, retryAfterMinMs: 10 };
    const admission = new HandshakeAdmission(options, clock, () => 0.5);
    await warmUp(admission, clock, 20, 200);
    await admission.enter();
    await admission.enter();
    // No queue allowed: a refusal waits one completion's time at the measured rate (100 ms at 10/s).
    expect(retryAfter(await admission.enter())).toBe(100);
    // The hub slows to 1/s (2 completions in the last 2 s): the next refused waits far longer.
    clock.advance(2_000);
    const slow = new HandshakeAdmission(options, clock, () => 0.5);
    await warmUp(slow, clock, 2, 1_000);
    clock.advance(1_000);
    await slow.enter();
    await slow.enter();
    // 1 finished per second counted, but 2 slots at 1 s each can finish 2/s (Little's law): the more.
    expect(slow.completionRatePerSec()).toBe(2);
    expect(retryAfter(await slow.enter())).toBe(500);
  });

  it("takes the rate the limit allows at the recent latency when fewer finished (a hub that waited for agents, not for CPU)", async () => {
    const clock = new ManualClock(0);
    const admission = new HandshakeAdmission(admissionOptions, clock, () => 0.5);
    const a = admitted(await admission.enter());
    clock.advance(50);
    a.release();
    clock.advance(1_950);
    // One finished in 2 s (0.5/s counted), in 50 ms: 2 slots at 50 ms can finish 40/s.
    expect(admission.completionRatePerSec()).toBe(40);
  });

  it('a hello whose stream closes while queued leaves the queue', async () => {
    const clock = new ManualClock(0);
    const admission = new HandshakeAdmission(admissionOptions, clock, () => 0.5);
    await warmUp(admission, clock, 20, 200);
    const a = admitted(await admission.enter());
    await admission.enter();
    const gone = new AbortController();
    const waiting = admission.enter(gone.signal);
    const next = admission.enter();
    gone.abort();
    expect(await waiting).toEqual({ kind: 'abandoned' });
    expect(admission.queued).toBe(1);
    a.release();
    expect((await next).kind).toBe('admitted');
    const closed = new AbortController();
    closed.abort();
    expect(await admission.enter(closed.signal)).toEqual({ kind: 'abandoned' });
  });

  it('shrinks its limit when handshakes slow down and grows it while they stay fast', async () => {
    const clock = new ManualClock(0);
    const admission = new HandshakeAdmission({ ...admissionOptions, limit: { ...limitOptions, initial: 4 } }, clock, () => 0.5);
    const fast = await Promise.all(Array.from({ length: 4 }, () => admission.enter()));
    clock.advance(10);
    for (const s of fast) admitted(s).release();
    expect(admission.limit).toBe(5); // the first sample sets the floor; later ones were used up only while 4 held slots
    const slow = await Promise.all(Array.from({ length: 5 }, () => admission.enter()));
    clock.advance(100);
    for (const s of slow) admitted(s).release();
    expect(admission.limit).toBe(2);
  });

  it('takes the operator bounds; equal bounds make a fixed limit', () => {
    const fixed = handshakeAdmissionFor(64, 64);
    expect(fixed.limit).toMatchObject({ min: 64, max: 64, initial: 64 });
    expect(handshakeAdmissionFor(1, 8).limit).toMatchObject({ min: 1, max: 8, initial: 8 });
    expect(() => handshakeAdmissionFor(8, 4)).toThrow(RangeError);
  });

  it('refuses a bad configuration', () => {
    const clock = new ManualClock(0);
    for (const bad of [{ maxQueueWaitMs: -1 }, { retryAfterMinMs: 0 }, { retryAfterMaxMs: 99 }, { jitterRatio: 1 }, { rateWindowMs: 0 }]) {
      expect(() => new HandshakeAdmission({ ...admissionOptions, ...bad }, clock)).toThrow(RangeError);
    }
  });
});
