import { type Clock, systemClock, type TimerHandle } from '../tunnel/index.js';

// Runs reconcile passes: one now, then one every intervalMs after the last
// ended, and one as soon as possible when triggered (a new desired set, a
// watch event). Never two passes at once; triggers during a pass coalesce
// into one more pass. The clock is injected, so tests move time by hand.

export interface ReconcileLoopOptions {
  /** Pause between the end of one pass and the start of the next. */
  intervalMs: number;
  /** One pass, e.g. read the cached desired set and engine.reconcile() it. The signal aborts on stop(). */
  run: (signal: AbortSignal) => Promise<void>;
  /** A pass that threw; the loop goes on at the next interval. */
  onError?: (err: unknown) => void;
  clock?: Clock;
}

export class ReconcileLoop {
  private readonly clock: Clock;
  private timer: TimerHandle | undefined;
  private current: Promise<void> | undefined;
  private again = false;
  private stopped = true;
  private abort = new AbortController();
  private completed = 0;

  constructor(private readonly options: ReconcileLoopOptions) {
    if (!(options.intervalMs > 0)) throw new RangeError(`ReconcileLoop: intervalMs must be positive, got ${options.intervalMs}`);
    this.clock = options.clock ?? systemClock;
  }

  /** Passes finished so far (successful or not). */
  get passes(): number {
    return this.completed;
  }

  get running(): boolean {
    return this.current !== undefined;
  }

  /** Starts the loop with a pass now. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.abort = new AbortController();
    this.kick();
  }

  /** A pass as soon as possible: now when idle, right after the running one otherwise. */
  trigger(): void {
    if (this.stopped) return;
    if (this.current) {
      this.again = true;
      return;
    }
    this.kick();
  }

  /** Stops the timer, aborts a running pass and waits for it to end. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    this.abort.abort();
    await this.current;
  }

  private kick(): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.current = this.runPasses();
  }

  private async runPasses(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.options.run(this.abort.signal);
      } catch (err) {
        if (!this.stopped) this.options.onError?.(err);
      }
      this.completed++;
    } while (this.again && !this.stopped);
    this.current = undefined;
    if (!this.stopped) this.timer = this.clock.setTimeout(() => this.kick(), this.options.intervalMs);
  }
}
