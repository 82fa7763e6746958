import type { Clock } from '../tunnel/index.js';

// Admission control for handshakes: a hub killed and restarted sees every
// agent redial within seconds. Registering costs the hub (signature check,
// store reads and writes); a heartbeat of an agent already connected does
// not pass through here, so it is never shed. Beyond maxConcurrent
// handshakes in progress a hello is refused with a retry-after that spreads
// the refused herd: uniform over a window that widens with the refusals of
// the last second, from [min, min] for a stray one to [min, max) once as many
// were refused as may be in progress at once.

export interface HandshakeAdmissionOptions {
  /** Handshakes (hello to welcome, or to the pending notice) in progress at most. */
  maxConcurrent: number;
  /** The retry-after a refused hello gets lies in [minMs, maxMs). */
  retryAfterMinMs: number;
  retryAfterMaxMs: number;
}

export const defaultHandshakeAdmission: HandshakeAdmissionOptions = {
  // A handshake costs a few ms of CPU (Ed25519 verify, a store write): 64 keep 2 cores busy, not swamped.
  maxConcurrent: 64,
  retryAfterMinMs: 1_000,
  retryAfterMaxMs: 5_000,
};

export type Admitted = { admitted: true; release(): void } | { admitted: false; retryAfterMs: number; inProgress: number };

/** Refusals are counted over this window to size the spread. */
const refusalWindowMs = 1_000;

export class HandshakeAdmission {
  private inProgress = 0;
  private windowStart = -Infinity;
  private refusedInWindow = 0;

  constructor(
    readonly options: HandshakeAdmissionOptions,
    private readonly clock: Clock,
    private readonly random: () => number = Math.random,
  ) {
    const { maxConcurrent, retryAfterMinMs, retryAfterMaxMs } = options;
    if (!(Number.isInteger(maxConcurrent) && maxConcurrent >= 1)) throw new RangeError(`maxConcurrent handshakes must be an integer >= 1, got ${maxConcurrent}`);
    if (!(retryAfterMinMs > 0 && retryAfterMaxMs >= retryAfterMinMs)) {
      throw new RangeError(`handshake retry-after needs 0 < min (${retryAfterMinMs}) <= max (${retryAfterMaxMs})`);
    }
  }

  /** Handshakes in progress now. */
  get active(): number {
    return this.inProgress;
  }

  /** Takes a slot, or says how long the refused peer should wait. release() is idempotent. */
  tryEnter(): Admitted {
    if (this.inProgress < this.options.maxConcurrent) {
      this.inProgress++;
      let released = false;
      return {
        admitted: true,
        release: () => {
          if (released) return;
          released = true;
          this.inProgress--;
        },
      };
    }
    const now = this.clock.now();
    if (now - this.windowStart >= refusalWindowMs) {
      this.windowStart = now;
      this.refusedInWindow = 0;
    }
    this.refusedInWindow++;
    return { admitted: false, retryAfterMs: this.retryAfterMs(), inProgress: this.inProgress };
  }

  private retryAfterMs(): number {
    const { maxConcurrent, retryAfterMinMs: min, retryAfterMaxMs: max } = this.options;
    const load = Math.min(1, this.refusedInWindow / maxConcurrent);
    const r = this.random();
    if (!(r >= 0 && r < 1)) throw new RangeError(`random() must return a number in [0, 1), got ${r}`);
    return min + Math.floor(r * (max - min) * load);
  }
}
