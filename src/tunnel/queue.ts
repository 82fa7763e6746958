import type { Clock, TimerHandle } from './clock.js';

/**
 * An async queue for inbound frames: producers push, one consumer iterates.
 * Bounded: beyond `limit` items the producer is told to pause.
 */
export class FrameQueue<T> {
  private items: T[] = [];
  private waiter: ((r: IteratorResult<T>) => void) | undefined;
  private ended = false;

  constructor(
    private readonly limit = 256,
    private readonly onRoom: () => void = () => {},
  ) {}

  /** Returns false when the queue is over its limit (producer should pause). */
  push(item: T): boolean {
    if (this.ended) return false;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value: item, done: false });
      return true;
    }
    this.items.push(item);
    return this.items.length < this.limit;
  }

  end(): void {
    this.ended = true;
    if (this.waiter && this.items.length === 0) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value: undefined, done: true });
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      if (this.items.length > 0) {
        const wasFull = this.items.length >= this.limit;
        const item = this.items.shift()!;
        if (wasFull) this.onRoom();
        yield item;
        continue;
      }
      if (this.ended) return;
      const r = await new Promise<IteratorResult<T>>((resolve) => (this.waiter = resolve));
      if (r.done) return;
      yield r.value;
    }
  }
}

/**
 * How a frame waits for the link. `urgent` frames (heartbeats and their acks:
 * the lease) go to the transport at once, never behind anything queued here;
 * `normal` ones (control: acks, announcements) wait only behind each other;
 * `bulk` ones (sync data, reports) go when nothing else waits.
 */
export type SendPriority = 'urgent' | 'normal' | 'bulk';

interface Waiting<T> {
  frame: T;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export interface PacingOptions {
  /**
   * A bulk frame of at least this many bytes holds the next one back until an
   * urgent frame sent after it is acknowledged (urgentAcked): the peer has it,
   * so it no longer sits in the socket or the link ahead of the next urgent
   * frame. Without it bulk frames are paced by the transport alone.
   */
  paceBytes: number;
  /** Bytes the transport has taken so far (a frame's size is the difference). */
  bytesOut(): number;
}

/**
 * Bulk frames wait while the link is busy with something that matters more:
 * until `quietMs` after the last frame `busy` names went out (e.g. the sync
 * acks of a transfer: a report sent in the middle of one delays its acks and
 * is stale by its end anyway).
 */
export interface QuietOptions<T> {
  busy(frame: T): boolean;
  /** The bulk frames that wait (e.g. large ones only). */
  holds(frame: T): boolean;
  quietMs: number;
  clock: Clock;
}

/**
 * A priority send queue over one frame stream. Non-urgent frames go to the
 * transport one at a time, each once the one before was taken (the transport's
 * send waits for drain), so what is queued stays here, where an urgent or
 * control frame can still overtake it, and not in the transport's buffer.
 * Within a priority, frames keep their order; a queued bulk frame that a newer
 * one supersedes (`supersedes`, e.g. a report replaced by a later one) is
 * dropped, its send resolved.
 */
export class PrioritySender<T> {
  private readonly waiting: Record<'normal' | 'bulk', Array<Waiting<T>>> = { normal: [], bulk: [] };
  private busy = false;
  private closedWith: unknown;
  private urgentSent = 0;
  private urgentAcks = 0;
  /** Bulk waits until this many urgent frames are acknowledged. */
  private holdUntilAcks = 0;
  private lastBusyAt = Number.NEGATIVE_INFINITY;
  private quietTimer: TimerHandle | undefined;

  constructor(
    private readonly transmit: (frame: T) => Promise<void>,
    private readonly classify: (frame: T) => SendPriority,
    private readonly options: { pacing?: PacingOptions; quiet?: QuietOptions<T>; supersedes?: (older: T, newer: T) => boolean } = {},
  ) {}

  /** Resolves once the transport took the frame; rejects as the transport's send does, or once closed. */
  send(frame: T): Promise<void> {
    if (this.closedWith !== undefined) return Promise.reject(this.closedWith);
    const priority = this.classify(frame);
    if (priority === 'urgent') {
      this.urgentSent++;
      return this.transmit(frame);
    }
    return new Promise<void>((resolve, reject) => {
      const queue = this.waiting[priority];
      if (priority === 'bulk' && this.options.supersedes) {
        const at = queue.findIndex((w) => this.options.supersedes!(w.frame, frame));
        if (at >= 0) queue.splice(at, 1)[0]!.resolve();
      }
      queue.push({ frame, resolve, reject });
      this.pump();
    });
  }

  /** The peer acknowledged the oldest urgent frame not yet acknowledged (e.g. a heartbeat ack). */
  urgentAcked(): void {
    this.urgentAcks++;
    this.pump();
  }

  /** Fails every frame still queued, and every later send. */
  close(error: unknown): void {
    this.closedWith = error;
    this.quietTimer?.cancel();
    for (const w of [...this.waiting.normal.splice(0), ...this.waiting.bulk.splice(0)]) w.reject(error);
  }

  /** Frames waiting here now (tests). */
  get queued(): number {
    return this.waiting.normal.length + this.waiting.bulk.length;
  }

  /** The link has been quiet long enough for bulk; otherwise a timer pumps again when it will be. */
  private quiet(frame: T): boolean {
    const q = this.options.quiet;
    if (!q || !q.holds(frame)) return true;
    const waitMs = this.lastBusyAt + q.quietMs - q.clock.now();
    if (waitMs <= 0) return true;
    this.quietTimer?.cancel();
    this.quietTimer = q.clock.setTimeout(() => {
      this.quietTimer = undefined;
      if (this.closedWith === undefined) this.pump();
    }, waitMs);
    return false;
  }

  private pump(): void {
    if (this.busy) return;
    let next = this.waiting.normal.shift();
    let bulk = false;
    if (!next && this.urgentAcks >= this.holdUntilAcks && this.waiting.bulk.length > 0 && this.quiet(this.waiting.bulk[0]!.frame)) {
      next = this.waiting.bulk.shift();
      bulk = next !== undefined;
    }
    if (!next) return;
    if (this.options.quiet?.busy(next.frame)) this.lastBusyAt = this.options.quiet.clock.now();
    const taken = next;
    this.busy = true;
    const before = this.options.pacing?.bytesOut() ?? 0;
    this.transmit(taken.frame).then(
      () => {
        const pacing = this.options.pacing;
        if (bulk && pacing && pacing.bytesOut() - before >= pacing.paceBytes) this.holdUntilAcks = this.urgentSent + 1;
        taken.resolve();
        this.busy = false;
        this.pump();
      },
      (error: unknown) => {
        taken.reject(error);
        this.busy = false;
        this.pump();
      },
    );
  }
}

type FrameCase = { frame?: { $case: string } | undefined };

/** The hub's frames by priority: heartbeat acks first, sync data last. */
export function hubFramePriority(frame: FrameCase): SendPriority {
  const kind = frame.frame?.$case;
  if (kind === 'heartbeatAck') return 'urgent';
  // confirmPrune keeps its place among the sync frames it follows.
  if (kind === 'syncBegin' || kind === 'syncObject' || kind === 'syncEnd' || kind === 'syncCompressed' || kind === 'confirmPrune') return 'bulk';
  return 'normal';
}

/** The agent's frames by priority: heartbeats (lease renewals) first, apply reports last; sync acks are control (they clock the hub's sending). */
export function agentFramePriority(frame: FrameCase): SendPriority {
  const kind = frame.frame?.$case;
  if (kind === 'heartbeat') return 'urgent';
  if (kind === 'applyReport') return 'bulk';
  return 'normal';
}
