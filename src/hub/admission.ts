import type { Clock } from '../tunnel/index.js';
import { ConcurrencyLimit, type ConcurrencyLimitOptions, defaultConcurrencyLimitOptions } from './concurrency-limit.js';

// Admission control for handshakes: a hub killed and restarted sees every
// agent redial within seconds. Registering costs the hub (signature check,
// store reads and writes); a heartbeat of an agent already connected does
// not pass through here, so it is never shed.
//
// - Handshakes in progress are bounded by a limit that follows their measured
//   latency (ConcurrencyLimit): it grows while they finish near the fastest
//   seen lately and shrinks when they slow down.
// - A hello past the limit waits for a slot, first come first served, while
//   the expected wait (its place in the queue ÷ the measured completion rate)
//   is within maxQueueWaitMs: by the time a hello arrives its TLS handshake is
//   paid, and refusing it would only make the agent pay again.
// - Past that it is refused with a retry-after that books it a later place:
//   refused hellos are spaced at the completion rate (measured, or what the
//   limit allows at the recent latency, whichever is more), starting once the queue
//   has drained to half its bound, jittered by ±jitterRatio (a retry-after that
//   follows the queue: short while it drains, long behind a big one). So the herd comes
//   back about as fast as the hub can take it, and is refused about once.

export interface HandshakeAdmissionOptions {
  /** The adaptive bound on handshakes (hello to welcome, or to the pending notice) in progress. */
  limit: ConcurrencyLimitOptions;
  /** A hello waits for a slot while its expected wait is within this; past it, HAWSER_HUB_BUSY. */
  maxQueueWaitMs: number;
  /** The retry-after a refused hello gets is clamped to [minMs, maxMs]. */
  retryAfterMinMs: number;
  retryAfterMaxMs: number;
  /** The retry-after is spread by a factor uniform in [1 - jitter, 1 + jitter). */
  jitterRatio: number;
  /** Completions are counted over this window to measure the rate. */
  rateWindowMs: number;
}

export const defaultHandshakeAdmission: HandshakeAdmissionOptions = {
  limit: defaultConcurrencyLimitOptions,
  // A third of the agent's 30 s register timeout: room for a wrong rate estimate. A waiting hello
  // costs memory only; a refused one costs its TLS handshake and HTTP/2 call again (4 ms of
  // hub CPU against 0.2 ms for a dial refused before TLS: bench/reconnect --mode refusal-cost).
  maxQueueWaitMs: 10_000,
  retryAfterMinMs: 500,
  retryAfterMaxMs: 60_000,
  jitterRatio: 0.1,
  rateWindowMs: 2_000,
};

export type Admitted =
  | { kind: 'admitted'; release(): void; queuedMs: number }
  | { kind: 'refused'; retryAfterMs: number; inProgress: number; queued: number; limit: number }
  /** The caller's signal ended the wait (the stream closed). */
  | { kind: 'abandoned' };

interface Waiter {
  enqueuedAt: number;
  resolve(admitted: Admitted): void;
}

export class HandshakeAdmission {
  private readonly limiter: ConcurrencyLimit;
  private inProgress = 0;
  private readonly queue: Waiter[] = [];
  /** Completion times within the rate window, oldest first. */
  private readonly completions: number[] = [];
  private readonly startedAt: number;
  /** Recent handshake latency, smoothed (undefined before the first). */
  private latencyEwmaMs: number | undefined;
  /** When the last refused hello was told to come back. */
  private lastBookedAt = -Infinity;
  /** Places booked and not yet due, in order. */
  private readonly booked: number[] = [];

  constructor(
    readonly options: HandshakeAdmissionOptions,
    private readonly clock: Clock,
    private readonly random: () => number = Math.random,
  ) {
    const { maxQueueWaitMs, retryAfterMinMs, retryAfterMaxMs, jitterRatio, rateWindowMs } = options;
    this.limiter = new ConcurrencyLimit(options.limit);
    if (!(maxQueueWaitMs >= 0)) throw new RangeError(`handshake maxQueueWaitMs must be >= 0, got ${maxQueueWaitMs}`);
    if (!(retryAfterMinMs > 0 && retryAfterMaxMs >= retryAfterMinMs)) {
      throw new RangeError(`handshake retry-after needs 0 < min (${retryAfterMinMs}) <= max (${retryAfterMaxMs})`);
    }
    if (!(jitterRatio >= 0 && jitterRatio < 1)) throw new RangeError(`handshake jitterRatio must be in [0, 1), got ${jitterRatio}`);
    if (!(rateWindowMs > 0)) throw new RangeError(`handshake rateWindowMs must be > 0, got ${rateWindowMs}`);
    this.startedAt = clock.now();
  }

  /** Handshakes in progress now. */
  get active(): number {
    return this.inProgress;
  }

  /** Hellos waiting for a slot now. */
  get queued(): number {
    return this.queue.length;
  }

  /** The concurrency limit now. */
  get limit(): number {
    return this.limiter.limit;
  }

  /**
   * Handshakes the hub can finish per second: what it finished over the rate
   * window, or what the limit allows at the handshakes' recent latency
   * (Little's law), whichever is more. The count alone undercounts a hub that
   * was waiting for agents rather than busy (measured: 60 agents of 200 booked
   * up to 2 minutes out while the hub sat at 5 % of a core).
   */
  completionRatePerSec(): number {
    const now = this.clock.now();
    this.forgetCompletions(now);
    const byLatency = this.latencyEwmaMs === undefined ? this.limiter.limit : (this.limiter.limit * 1000) / Math.max(1, this.latencyEwmaMs);
    if (this.completions.length === 0) return byLatency;
    // Over the window, or since the start when the hub is younger than it.
    const spanMs = Math.max(100, Math.min(this.options.rateWindowMs, now - this.startedAt));
    return Math.max(byLatency, (this.completions.length * 1000) / spanMs);
  }

  /**
   * A slot now, a slot after waiting in the queue, or a refusal with the
   * time to come back. The signal ends a wait in the queue (the stream
   * closed). release() is idempotent.
   */
  enter(signal?: AbortSignal): Promise<Admitted> {
    if (signal?.aborted) return Promise.resolve({ kind: 'abandoned' });
    if (this.queue.length === 0 && this.inProgress < this.limiter.limit) return Promise.resolve(this.take(0));
    const rate = this.completionRatePerSec();
    const expectedWaitMs = ((this.queue.length + 1) * 1000) / rate;
    if (expectedWaitMs > this.options.maxQueueWaitMs) return Promise.resolve(this.refuse(rate));
    return new Promise<Admitted>((resolve) => {
      const waiter: Waiter = {
        enqueuedAt: this.clock.now(),
        resolve: (admitted) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(admitted);
        },
      };
      const onAbort = () => {
        const i = this.queue.indexOf(waiter);
        if (i >= 0) this.queue.splice(i, 1);
        waiter.resolve({ kind: 'abandoned' });
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(waiter);
    });
  }

  private take(queuedMs: number): Admitted {
    this.inProgress++;
    const startedAt = this.clock.now();
    let released = false;
    return {
      kind: 'admitted',
      queuedMs,
      release: () => {
        if (released) return;
        released = true;
        const now = this.clock.now();
        this.limiter.sample(now, startedAt, now - startedAt, this.inProgress);
        this.latencyEwmaMs = this.latencyEwmaMs === undefined ? now - startedAt : 0.8 * this.latencyEwmaMs + 0.2 * (now - startedAt);
        this.inProgress--;
        this.completions.push(now);
        this.forgetCompletions(now);
        this.admitWaiting();
      },
    };
  }

  /** Hands free slots to the queue, oldest first. */
  private admitWaiting(): void {
    while (this.queue.length > 0 && this.inProgress < this.limiter.limit) {
      const waiter = this.queue.shift()!;
      waiter.resolve(this.take(this.clock.now() - waiter.enqueuedAt));
    }
  }

  private forgetCompletions(now: number): void {
    const from = now - this.options.rateWindowMs;
    let drop = 0;
    while (drop < this.completions.length && this.completions[drop]! <= from) drop++;
    if (drop > 0) this.completions.splice(0, drop);
  }

  /**
   * A retry-after for a dial refused elsewhere for the same reason (too many
   * streams not yet welcomed): booked like a refused hello's.
   */
  bookRetryAfterMs(): number {
    return (this.refuse(this.completionRatePerSec()) as Extract<Admitted, { kind: 'refused' }>).retryAfterMs;
  }

  /**
   * Books the refused hello a place: one completion's time after the last
   * one booked, and no sooner than one after the queue has drained to half its bound.
   */
  private refuse(ratePerSec: number): Admitted {
    const { maxQueueWaitMs, retryAfterMinMs, retryAfterMaxMs, jitterRatio } = this.options;
    const now = this.clock.now();
    const slotMs = 1000 / ratePerSec;
    // One completion after the queue ahead has drained to half its bound.
    const drainedAt = now + Math.max(0, ((this.queue.length + 1) * 1000) / ratePerSec - maxQueueWaitMs / 2);
    // Places still ahead, re-spaced at today's rate: a book made while the rate looked low
    // does not push every later refusal out as far.
    while (this.booked.length > 0 && this.booked[0]! <= now) this.booked.shift();
    const lastAhead = Math.min(this.lastBookedAt, drainedAt + this.booked.length * slotMs);
    // Never booked past what a retry-after can say: a flood does not push the book out for ever.
    const bookedAt = Math.min(now + retryAfterMaxMs, Math.max(drainedAt, lastAhead + slotMs));
    this.lastBookedAt = bookedAt;
    this.booked.push(bookedAt);
    this.booked.sort((a, b) => a - b);
    const r = this.random();
    if (!(r >= 0 && r < 1)) throw new RangeError(`random() must return a number in [0, 1), got ${r}`);
    const jittered = (bookedAt - now) * (1 - jitterRatio + 2 * jitterRatio * r);
    const retryAfterMs = Math.round(Math.min(retryAfterMaxMs, Math.max(retryAfterMinMs, jittered)));
    return { kind: 'refused', retryAfterMs, inProgress: this.inProgress, queued: this.queue.length, limit: this.limiter.limit };
  }
}

/** The default admission with the limit's bounds an operator gave (min = max: a fixed limit). */
export function handshakeAdmissionFor(min: number, max: number): HandshakeAdmissionOptions {
  if (!(Number.isInteger(min) && min >= 1 && Number.isInteger(max) && max >= min)) {
    throw new RangeError(`concurrent handshakes need integers 1 <= min (${min}) <= max (${max})`);
  }
  const { limit } = defaultHandshakeAdmission;
  return { ...defaultHandshakeAdmission, limit: { ...limit, min, max, initial: Math.min(max, Math.max(min, limit.initial)) } };
}
